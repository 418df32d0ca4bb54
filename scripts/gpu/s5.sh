#!/bin/bash
# For the next session (written 2026-12-01, not run yet): what the fourth session could not
# measure, in two calls on one warm machine (send the second right after the first returns).
#   bash scripts/gpu/s5.sh check 2>&1 | tee $OUT/s5_check.log      (fresh machine, ~8 min)
#       the kernel build detached; the full-size mixer test with the lanes scan (it failed in the
#       fourth session before its last change); the rows conv against the tile conv
#       (scripts/bench_conv.py: decides causal_conv1d.CONFIG's default); the lanes scan against
#       the tile scan with its fp32-loop check (LANES_QUICK); waits for the build.
#   SCAN='{}' CONV=rows bash scripts/gpu/s5.sh bench 2>&1 | tee $OUT/s5_bench.log   (same machine)
#       python -m mambalab.bench, every implementation, with the conv CONFIG the first call chose.
source scripts/gpu/e2e_env.sh
step=${1:?usage: s5.sh check|bench}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
if [ "$step" = check ]; then
  (MAX_JOBS=10 setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 &)
  stamp "build started"
  run mixer_full 200 $PY -m pytest -q -x tests/ops/test_triton_mamba_inner.py -m gpu
  tail -n 30 $LOGS/mixer_full.log | grep -E "^E |passed|failed" | head -n 20
  run conv 150 $PY scripts/bench_conv.py --out $OUT
  cat $LOGS/conv.log
  LANES_QUICK=1 run lanes 200 $PY scripts/bench_scan.py --impl lanes --out $OUT
  grep -E "^B|check|mamba" $LOGS/lanes.log
  for i in $(seq 90); do [ -f /tmp/kernels_done ] && break; sleep 5; done
  cat /tmp/kernels_done 2>/dev/null || stamp "kernel build not finished"
  cp $LOGS/*.log $OUT/ 2>/dev/null
  stamp done; exit 0
fi
export MAMBALAB_SCAN_CONFIG=${SCAN:-}
if [ "$step" = bench ]; then
  # the conv implementation for this run (rows only if bench_conv.py showed it faster)
  export MAMBALAB_CONV_CONFIG="{\"impl\": \"${CONV:-tile}\"}"; echo "conv: $MAMBALAB_CONV_CONFIG"
  run bench 560 $PY -m mambalab.bench bench.ops=true bench.profile=true 'bench.kernels=[triton,cuda,auto]' bench.out=$OUT/bench.json
  tail -n 40 $LOGS/bench.log
  $PY -m mambalab.benchmarks.markdown $OUT/bench.json > $OUT/bench.md 2>&1; cat $OUT/bench.md
  cp $LOGS/*.log $OUT/ 2>/dev/null
  stamp done
fi
