#!/bin/bash
# GPU call C (one 4-H100 machine): what calls A and B could not finish.
#   CPU: mamba-ssm and causal-conv1d built from /tmp (build_kernels.sh).
#   GPU 2: selective copying, wider (d_model 128) and longer (420 s, 14k cosine steps).
#   Once built -- GPU 0: the cuda path tests (issue 2), then the benchmark's rows that need the
#   kernels (mambalab[cuda], mamba_ssm fused, HF with and without checkpointing) beside
#   mambalab[triton], at 16 x 2048; GPU 1: the seed's settings (HF MambaForCausalLM on mamba-ssm's
#   kernels, 4 x 2048 x 8, checkpointing) for 120 s of training, to compare with call B's run of ours.
# Run as: bash scripts/gpu/call_c.sh 2>&1 | tee $OUT/call_c.log
source scripts/gpu/e2e_env.sh
MAX_JOBS=24 setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 < /dev/null &
stamp "kernel build started"
SCRUN=$OUTS/e2e_selective_copying_w128
(CUDA_VISIBLE_DEVICES=2 run selective_copying 470 $PY -m mambalab.train experiment=selective_copying model.d_model=128 \
   trainer.max_steps=14000 trainer.max_time_s=420 trainer.checkpoint_every=null trainer.progress_bar=false logger=[jsonl] \
   name=e2e_selective_copying_w128 hydra.run.dir=$SCRUN
 CUDA_VISIBLE_DEVICES=2 run selective_copying_eval 60 $PY -m mambalab.evaluate "ckpt='$SCRUN'" max_batches=null out=$SCRUN/eval
 grep -E '"validation"' $SCRUN/metrics.jsonl | cut -c1-110 | tail -5; tail -n 6 "$LOGS/selective_copying_eval.log") &
P_SC=$!
for i in $(seq 78); do [ -f /tmp/kernels_done ] && break; sleep 5; done
cat /tmp/kernels_done 2>/dev/null || { stamp "build not done"; tail -c 1500 /tmp/build-cc.log; }
cp /tmp/build-ms.log /tmp/build-cc.log "$LOGS/" 2>/dev/null
$PY -c "import torch, selective_scan_cuda, causal_conv1d_cuda, mamba_ssm, causal_conv1d; print('mamba_ssm', mamba_ssm.__version__, 'causal_conv1d', causal_conv1d.__version__)"
SEED=$OUTS/e2e_cmp_seed
CMP="$BASE scheduler=constant trainer.max_steps=$CMP_STEPS trainer.max_time_s=120 trainer.eval_max_batches=$EVALB trainer.checkpoint_every=null"
(CUDA_VISIBLE_DEVICES=1 run cmp_seed 190 $PY -m mambalab.train $CMP $MHF data.batch_size=$BSEED \
   trainer.grad_accum_steps=8 optimizer.lr=5e-4 scheduler.warmup_steps=15 trainer.eval_every=$CMP_EVAL_SEED \
   name=e2e_cmp_seed hydra.run.dir=$SEED) &
P_SEED=$!
(export CUDA_VISIBLE_DEVICES=0
 run tests_cuda 100 $PY -m pytest -q -s -m gpu -p no:cacheprovider tests/ops/test_ops_cuda_gpu.py tests/models
 grep -E "passed|failed|FAILED|generation" "$LOGS/tests_cuda.log" | head
 run bench 200 $PY -m mambalab.bench bench.batch_sizes=[16] bench.kernels=[triton,cuda] bench.ops=true bench.out=$LOGS/bench_c.json
 $PY -m mambalab.benchmarks.markdown $LOGS/bench_c.json > $LOGS/bench_c.md 2>&1; head -24 $LOGS/bench_c.md) &
P_K=$!
wait $P_SEED; $PY -c "import json,sys; s=json.load(open(sys.argv[1])); print({k: s.get(k) for k in ('status','stopped_by','step','tokens','train_time_s','kernels')})" $SEED/summary.json
wait $P_K $P_SC
tar czf "$OUT/call_c.tgz" -C "$ROOT" e2e_logs $(cd "$ROOT" && find outputs/e2e_cmp_seed outputs/e2e_selective_copying_w128 \
  \( -name metrics.jsonl -o -name summary.json -o -name config.yaml -o -name metrics.json -o -name train.log \) 2>/dev/null)
ls -la $OUT; stamp "call C done"
