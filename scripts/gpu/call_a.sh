#!/bin/bash
# The coordinator's GPU call A on one 4-H100 machine (issues 2, 7, 8):
#   CPU: mamba-ssm and causal-conv1d built detached (build_kernels.sh; call B uses them).
#   GPU 0: kernels_a.sh (scan variants, mixer layouts A/B), while GPUs 1-3 run a 3-job learning-
#          rate sweep of Mamba-130M on the Wikipedia sample (joblib, one GPU per job);
#   then all four: DDP scaling, the same run on 1 GPU and on 4 (e2e_a.sh's step 1-2 settings).
# Run as: bash scripts/gpu/call_a.sh 2>&1 | tee $OUT/call_a.log
source scripts/gpu/e2e_env.sh
MAX_JOBS=20 setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 < /dev/null &
stamp "kernel build started (detached)"
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee "$LOGS/cards_a.txt"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
(CUDA_VISIBLE_DEVICES=0 bash scripts/gpu/kernels_a.sh > $OUT/kernels_a.log 2>&1) & P_K=$!

S=e2e_lr_sweep
SWEEP="$BASE $M130 data.batch_size=$B name=$S scheduler=cosine scheduler.warmup_steps=30 trainer.max_steps=$SWEEP_STEPS trainer.max_time_s=$SWEEP_CAP trainer.eval_every=100 trainer.eval_max_batches=$EVALB trainer.checkpoint_every=null"
(while sleep 15; do nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader >> "$LOGS/sweep_nvidia_smi.csv"; done) & W=$!
CUDA_VISIBLE_DEVICES=1,2,3 run lr_sweep 280 $PY -m mambalab.train -m $SWEEP 'optimizer.lr=3e-4,1e-3,2e-3' hydra/launcher=joblib hydra.launcher.n_jobs=3 hydra.sweep.dir=$MR/$S
kill $W 2>/dev/null
cat $MR/$S/gpu_assignment.jsonl 2>/dev/null
$PY -m mambalab.sweep $MR/$S 2>&1 | tail -14 | tee "$LOGS/lr_sweep.txt"
cp $MR/$S/summary.png "$OUT/lr_sweep.png" 2>/dev/null; cp $MR/$S/summary.csv "$LOGS/lr_sweep.csv" 2>/dev/null
wait $P_K; stamp "kernels_a done"; grep -E "rc=|tokens_per_s" $OUT/kernels_a.log | cut -c1-220

SCALE="$BASE $M130 data.batch_size=$B optimizer.lr=1e-3 scheduler.warmup_steps=10 trainer.max_steps=$SCALE_STEPS trainer.eval_every=null trainer.eval_at_end=false trainer.checkpoint_every=null"
CUDA_VISIBLE_DEVICES=0 run scale1 120 $PY -m mambalab.train $SCALE name=e2e_scale1 hydra.run.dir=$OUTS/e2e_scale1
run scale4 120 $PY -m mambalab.train $SCALE name=e2e_scale4 trainer.num_processes=4 hydra.run.dir=$OUTS/e2e_scale4
$PY scripts/gpu/scaling.py $OUTS/e2e_scale1 $OUTS/e2e_scale4 --skip-steps $SCALE_SKIP --out "$LOGS/scaling.json" | tee "$LOGS/scaling.md"
cat /tmp/kernels_done 2>/dev/null || stamp "kernel build still running: $(tail -c 300 /tmp/build-ms.log /tmp/build-cc.log 2>/dev/null | tr '\n' ' ')"
tar czf "$OUT/e2e_a.tgz" -C "$ROOT" e2e_logs $(cd "$ROOT" && find outputs/e2e_scale1 outputs/e2e_scale4 multirun/$S \
  \( -name metrics.jsonl -o -name summary.json -o -name config.yaml -o -name 'summary.*' -o -name train.log -o -name gpu_assignment.jsonl \) 2>/dev/null)
ls -la "$OUT"; stamp "call A done"
