#!/bin/bash
# Tenth session (2026-12-02): the time conv kernels and mambalab's Triton fused loss, on one H200.
# Three calls back to back on one machine (the kernel build the first starts must survive for
# the third):
#   bash scripts/gpu/s11.sh micro 2>&1 | tee $OUT/s11_micro.log
#   bash scripts/gpu/s11.sh ab 2>&1 | tee $OUT/s11_ab.log
#   bash scripts/gpu/s11.sh bench 2>&1 | tee $OUT/s11_bench.log
# micro: the mamba-ssm build detached; the new kernels' GPU tests (compiled there); the conv's
#   kernels per layer (scripts/bench_conv.py: tile, rows, time at 1-8 warps, B=8/16/32) and the
#   two fused losses (scripts/bench_loss.py).
# ab: training, mambalab[triton] alone at 8 and 32 x 2048, one process per setting: the ninth
#   session's defaults (rows conv, liger loss), each change alone, and both.
# bench: the full benchmark (every implementation, ops table, profile) in one process, then the
#   other GPU tests the changes touch.
source scripts/gpu/e2e_env.sh
step=${1:?usage: s11.sh micro|ab|bench}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
tests() {  # name, timeout, pytest arguments
  local name=$1 limit=$2; shift 2
  run "$name" "$limit" $PY -m pytest -q -p no:cacheprovider "$@"
  grep -E "^(FAILED|ERROR)|passed|failed" $LOGS/$name.log | tail -n 12
}
if [ "$step" = micro ]; then
  (MAX_JOBS=10 setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 &)
  stamp "build started"
  tests new_gpu 150 -m gpu tests/ops/test_triton_causal_conv1d.py tests/models/test_mamba_lm_gpu.py -k "time_kernels or fused_ce"
  run bench_conv 150 $PY scripts/bench_conv.py --out $OUT
  grep -E "^B|vs tile" $LOGS/bench_conv.log
  run bench_loss 120 $PY scripts/bench_loss.py --out $OUT
  cat $LOGS/bench_loss.log | tail -n 8
  stamp done
fi
if [ "$step" = ab ]; then
  run loss_rows 60 $PY scripts/bench_loss.py --rows-only --out $OUT
  tail -n 2 $LOGS/loss_rows.log
  TB="bench.implementations=[mambalab] bench.kernels=[triton] bench.batch_sizes=[8,32] bench.print_tables=false"
  ab() {  # name, conv impl, loss impl
    MAMBALAB_CONV_CONFIG="{\"impl\": \"$2\"}" MAMBALAB_LOSS_CONFIG="{\"cuda_impl\": \"$3\"}" \
      run "$1" 150 $PY -m mambalab.bench $TB bench.out=$OUT/ab_$1.json
    $PY - "$OUT/ab_$1.json" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1]))["training"]:
    print(f"  {r['implementation']:18s} {r['batch_size']:3d}x{r['seq_len']} {r.get('status')}"
          f" {r.get('tokens_per_s', 0):>10,.0f} tok/s {r.get('step_ms', 0):7.1f} ms"
          f" {r.get('peak_mem_gib', 0):5.1f} GiB")
EOF
  }
  ab old rows liger
  ab new time triton
  ab conv_only time liger
  ab loss_only rows triton
  ab new2 time triton
  stamp done
fi
if [ "$step" = bench ]; then
  wait_kernels
  full_bench 420
  tests gpu_rest 120 -m gpu tests/ops/test_triton_causal_conv1d.py tests/ops/test_triton_mamba_inner.py tests/test_bench.py
  tar czf $OUT/s11_bench_logs.tgz -C $LOGS . 2>/dev/null
  stamp done
fi
