#!/bin/bash
# GPU call 3 (2 H100s): DDP and FSDP runs that resume, and a 2-job joblib sweep, one GPU each.
source scripts/gpu/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/card3.txt
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
stamp "2-GPU DDP/FSDP tests"
timeout 280 python3 -m pytest -q -s -m gpu -p no:cacheprovider tests/training/test_train_gpu.py -k two_gpu > $OUT/tests3.log 2>&1; stamp "tests3 rc=$? $(tail -1 $OUT/tests3.log)"; grep -E "losses|passed|failed|Error" $OUT/tests3.log | head
stamp "joblib sweep"
S=gpu_joblib_check; rm -rf multirun/$S
python3 -m mambalab.train -m '~experiment' name=$S tokenizer=byte model=mamba_130m data=synthetic data.seq_len=1024 data.batch_size=8 trainer.max_steps=100 trainer.eval_every=50 trainer.log_every=10 trainer.progress_bar=false 'optimizer.lr=3e-4,1e-3' hydra/launcher=joblib hydra.launcher.n_jobs=2 > $OUT/sweep.log 2>&1 & P=$!
while kill -0 $P 2>/dev/null; do nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader >> $OUT/nvidia_smi.csv; sleep 2; done; wait $P; stamp "sweep exit: $?"
cat multirun/$S/gpu_assignment.jsonl; grep -h "runs on CUDA_VISIBLE_DEVICES" multirun/$S/*/train.log; sort -u $OUT/nvidia_smi.csv | head
python3 -m mambalab.sweep multirun/$S | tail -12; cp multirun/$S/summary.csv multirun/$S/summary.png $OUT/ 2>/dev/null
timeout 100 python3 -m pytest -q -m gpu -p no:cacheprovider tests/sweep > $OUT/tests3s.log 2>&1; stamp "sweep gpu tests rc=$? $(tail -1 $OUT/tests3s.log)"
