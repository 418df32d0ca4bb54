#!/bin/bash
# Tenth session (2026-12-02): the time conv kernels and mambalab's Triton fused loss, on one H200.
# Calls: micro and ab (each found a fresh machine: one stays warm only 30 s after a call), then
# final1 and final2 back to back on one machine (the kernel build final1 starts must survive for
# final2's benchmark):
#   bash scripts/gpu/s11.sh micro 2>&1 | tee $OUT/s11_micro.log
#   bash scripts/gpu/s11.sh ab 2>&1 | tee $OUT/s11_ab.log
#   bash scripts/gpu/s11.sh final1 2>&1 | tee $OUT/s11_final1.log
#   bash scripts/gpu/s11.sh final2 2>&1 | tee $OUT/s11_final2.log
# micro: the new kernels' GPU tests (compiled there); the conv's kernels per layer
#   (scripts/bench_conv.py: tile, rows, time at 1-8 warps, B=8/16/32) and the two fused losses
#   (scripts/bench_loss.py).
# ab: the loss's row kernel at several block / warps settings; training, mambalab[triton] alone
#   at 8 and 32 x 2048, one process per setting: the ninth session's defaults (rows conv, liger
#   loss), each change alone, and both.
# final1: the mamba-ssm build detached; the new kernels' GPU tests; the conv and loss kernels again;
#   training A/B, the ninth session's defaults against today's; the other GPU tests the changes
#   touch; then waits for the build.
# final2: the full benchmark (every implementation, ops table, profile) in one process.
# As run in the session, final1 also timed the time conv with its neighbours' values taken by lane
# shuffles (a CONFIG key "time_shfl", then the default) against loads, and handed the faster at
# B=32 (loads) to final2 through MAMBALAB_CONV_CONFIG; the shuffle variant was then removed and
# loads are the code (docs/kernels/causal_conv1d.md has the figures).
source scripts/gpu/e2e_env.sh
step=${1:?usage: s11.sh micro|ab|final1|final2}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
summary() { $PY scripts/gpu/summary.py "$1"; }  # a bench JSON's training rows, one line each
if [ "$step" = micro ]; then
  tests new_gpu 150 -m gpu tests/ops/test_triton_causal_conv1d.py tests/models/test_mamba_lm_gpu.py -k "time_kernels or fused_ce"
  run bench_conv 150 $PY scripts/bench_conv.py --out $OUT
  grep -E "^B|vs tile" $LOGS/bench_conv.log
  run bench_loss 120 $PY scripts/bench_loss.py --out $OUT
  tail -n 8 $LOGS/bench_loss.log
  stamp done
fi
if [ "$step" = ab ]; then
  run loss_rows 60 $PY scripts/bench_loss.py --rows-only --out $OUT
  tail -n 2 $LOGS/loss_rows.log
  TB="bench.implementations=[mambalab] bench.kernels=[triton] bench.batch_sizes=[8,32] bench.print_tables=false"
  ab() {  # name, conv impl, loss impl
    MAMBALAB_CONV_CONFIG="{\"impl\": \"$2\"}" MAMBALAB_LOSS_CONFIG="{\"cuda_impl\": \"$3\"}" \
      run "$1" 150 $PY -m mambalab.bench $TB bench.out=$OUT/ab_$1.json
    summary $OUT/ab_$1.json
  }
  ab old rows liger
  ab new time triton
  ab conv_only time liger
  ab loss_only rows triton
  ab new2 time triton
  stamp done
fi
if [ "$step" = final1 ]; then
  (MAX_JOBS=12 setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 &)
  stamp "build started"
  tests new_gpu 150 -m gpu tests/ops/test_triton_causal_conv1d.py tests/models/test_mamba_lm_gpu.py -k "time_kernels or fused_ce"
  run bench_conv 150 $PY scripts/bench_conv.py --out $OUT
  grep -E "^B|vs tile" $LOGS/bench_conv.log
  run bench_loss 120 $PY scripts/bench_loss.py --out $OUT
  tail -n 4 $LOGS/bench_loss.log
  TB="bench.implementations=[mambalab] bench.kernels=[triton] bench.batch_sizes=[8,16,32] bench.print_tables=false"
  MAMBALAB_CONV_CONFIG='{"impl": "rows"}' MAMBALAB_LOSS_CONFIG='{"cuda_impl": "liger"}' \
    run ab_old 150 $PY -m mambalab.bench $TB bench.out=$OUT/final_ab_old.json
  summary $OUT/final_ab_old.json
  run ab_new 150 $PY -m mambalab.bench $TB bench.out=$OUT/final_ab_new.json
  summary $OUT/final_ab_new.json
  tests gpu_rest 150 -m gpu tests/ops/test_triton_mamba_inner.py tests/test_bench.py tests/ops/test_triton_rms_norm.py
  for i in $(seq 100); do [ -f /tmp/kernels_done ] && break; [ $(( $(date +%s) - T0 )) -gt 520 ] && break; sleep 5; done
  cat /tmp/kernels_done 2>/dev/null || { stamp "kernel build not finished"; tail -n 3 /tmp/build.log; }
  stamp done
fi
if [ "$step" = final2 ]; then
  wait_kernels
  full_bench 480
  tar czf $OUT/s11_final2_logs.tgz -C $LOGS . 2>/dev/null
  stamp done
fi
