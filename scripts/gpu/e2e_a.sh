#!/bin/bash
# GPU call A of issue 8's last runs (one machine, 4 H100s, ~6 min of a 9-minute call), while the
# coordinator's detached mamba-ssm/causal-conv1d build (build_kernels.sh) takes 16 of the 64 cores:
#   1. Mamba-130M (16 x 2048 per GPU, kernels=triton) on 1 GPU, 80 steps: the scaling baseline;
#      it also fills Triton's kernel cache, so the runs after it start without compiling.
#   2. The same on 4 GPUs (DDP, trainer.num_processes=4), all GPUs to itself; then the scaling
#      efficiency tok/s(4) / (4 tok/s(1)) at steady state (scripts/gpu/scaling.py).
#   3. A learning-rate sweep, 4 jobs at once (joblib, one GPU each): lr 3e-4, 6e-4, 1e-3, 2e-3,
#      250 steps (8.2M tokens) each, cosine, the whole validation split every 100 steps and at the
#      end; then `python -m mambalab.sweep` (table, summary.png).
# $OUT gets: e2e_a.log (this script's output, through tee), e2e_a.tgz (logs, metrics, summaries, tables, PNG),
# lr_sweep.png. Runs stay in outputs/e2e_scale{1,4} and multirun/e2e_lr_sweep for call B.
# Run as: bash scripts/gpu/e2e_a.sh 2>&1 | tee $OUT/e2e_a.log
source scripts/gpu/e2e_env.sh
# E2E_BUILD_KERNELS=1: start the detached kernel build here, after common.sh's install (16 cores).
if [ -n "$E2E_BUILD_KERNELS" ] && [ -z "$E2E_DRY" ]; then
  setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 < /dev/null &
  stamp "kernel build started (detached; /tmp/kernels_done when finished)"
fi
NP=4; NJOBS=4; [ -n "$E2E_DRY" ] && { NP=2; NJOBS=2; }
[ -z "$E2E_DRY" ] && nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee "$LOGS/cards_a.txt"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

# 1-2. DDP scaling: identical runs but for the number of processes (batch is per process).
SCALE="$BASE $M130 data.batch_size=$B optimizer.lr=1e-3 scheduler.warmup_steps=10 trainer.max_steps=$SCALE_STEPS trainer.eval_every=null trainer.eval_at_end=false trainer.checkpoint_every=null"
CUDA_VISIBLE_DEVICES=0 run scale1 150 $PY -m mambalab.train $SCALE name=e2e_scale1 hydra.run.dir=$OUTS/e2e_scale1
run scale4 130 $PY -m mambalab.train $SCALE name=e2e_scale4 trainer.num_processes=$NP hydra.run.dir=$OUTS/e2e_scale4
grep -h '"train"' $OUTS/e2e_scale1/metrics.jsonl $OUTS/e2e_scale4/metrics.jsonl | cut -c1-120 | tail -4
$PY scripts/gpu/scaling.py $OUTS/e2e_scale1 $OUTS/e2e_scale4 --skip-steps $SCALE_SKIP --out "$LOGS/scaling.json" | tee "$LOGS/scaling.md"

# 3. The learning-rate sweep; nvidia-smi shows one process per GPU while it runs.
S=e2e_lr_sweep
SWEEP="$BASE $M130 data.batch_size=$B name=$S scheduler=cosine scheduler.warmup_steps=30 trainer.max_steps=$SWEEP_STEPS trainer.max_time_s=$SWEEP_CAP trainer.eval_every=100 trainer.eval_max_batches=$EVALB trainer.checkpoint_every=null"
W=; if [ -z "$E2E_DRY" ]; then (while sleep 15; do nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader >> "$LOGS/sweep_nvidia_smi.csv"; done) & W=$!; fi
run lr_sweep 230 $PY -m mambalab.train -m $SWEEP 'optimizer.lr=3e-4,6e-4,1e-3,2e-3' hydra/launcher=joblib hydra.launcher.n_jobs=$NJOBS hydra.sweep.dir=$MR/$S
[ -n "$W" ] && kill $W 2>/dev/null
cat $MR/$S/gpu_assignment.jsonl 2>/dev/null
[ -z "$E2E_DRY" ] && { cat /tmp/kernels_done 2>/dev/null || stamp "kernel build still running: $(tail -c 300 /tmp/build-ms.log /tmp/build-cc.log 2>/dev/null | tr '\n' ' ')"; }
$PY -m mambalab.sweep $MR/$S 2>&1 | tail -14 | tee "$LOGS/lr_sweep.txt"
cp $MR/$S/summary.png "$OUT/lr_sweep.png" 2>/dev/null; cp $MR/$S/summary.csv "$LOGS/lr_sweep.csv" 2>/dev/null

# Small files only: the runs' metrics and summaries (no checkpoints), the logs, the tables.
stamp "packing"
tar czf "$OUT/e2e_a.tgz" -C "$ROOT" e2e_logs $(cd "$ROOT" && find outputs/e2e_scale1 outputs/e2e_scale4 multirun/$S \
  \( -name metrics.jsonl -o -name summary.json -o -name config.yaml -o -name 'summary.*' -o -name train.log -o -name gpu_assignment.jsonl \) 2>/dev/null)
ls -la "$OUT"; stamp "call A done"
