#!/bin/bash
# Seventeenth session (2026-12-03): the Gluon scan backward's dB/dC sums deferred to the chunk's
# end and its per-chunk work split between a channel's two threads; the full benchmark with
# mamba-ssm built. One H200.
#   bash scripts/gpu/s18.sh check [TIMEOUT] [gluon_bwd_check.py arguments]   # then the Gluon GPU tests
#   bash scripts/gpu/s18.sh ab      # the mamba-ssm build detached; GPU tests; training A/B; waits for the build
#   bash scripts/gpu/s18.sh bench   # (right after ab, same machine) the full benchmark
#   bash scripts/gpu/s18.sh samerun # build and benchmark in one call (what call 4 lacked): the
#     kernels built in the foreground (or installed from carried .kw/ wheels), their wheels copied
#     to $OUT/kw for later sessions to carry, then mambalab[triton] and mamba_ssm in one run
source scripts/gpu/common.sh
LOGS=$OUT/logs; mkdir -p $LOGS
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
gluon_tests() {
  stamp "GPU tests: the Gluon backward (both configurations)"
  timeout -k 10 ${1:-240} python3 -m pytest -m gpu -q -p no:cacheprovider tests/ops/test_gluon_scan_bwd.py \
    > $LOGS/tests_gluon.log 2>&1
  stamp "rc=$?"; grep -E "passed|failed|^E |Error" $LOGS/tests_gluon.log | head -12
}
if [ "$1" = check ]; then
  stamp "gluon backward: check and times"
  timeout -k 10 ${2:-300} python3 scripts/gluon_bwd_check.py --out $OUT "${@:3}" > $LOGS/gluon_check.log 2>&1
  stamp "rc=$?"; grep -v "^\s*$" $LOGS/gluon_check.log | tail -40
  [ -n "$NO_TESTS" ] || gluon_tests 240
  stamp done
fi
# `bench NAME GLUON_CONFIG BATCHES [GRAPHS]`: mambalab[triton] alone, MAMBALAB_GLUON_BWD_CONFIG set
bench() {
  stamp "bench $1 (gluon config $2, batches $3, graphs ${4:-true})"
  MAMBALAB_GLUON_BWD_CONFIG="$2" timeout -k 10 170 python3 -m mambalab.bench \
    'bench.implementations=[mambalab]' 'bench.kernels=[triton]' "bench.batch_sizes=$3" \
    "bench.cuda_graphs=[${4:-true}]" bench.steps=20 bench.out=$OUT/bench_$1.json > $LOGS/bench_$1.log 2>&1
  stamp "rc=$?"; grep -E "^\| mambalab|mambalab\[" $LOGS/bench_$1.log | grep -E "x2048" | head -4
  grep -E "Error|error" $LOGS/bench_$1.log | head -3
}
if [ "$1" = ab ]; then
  (MAX_JOBS=12 setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 &)
  stamp "kernel build started"
  gluon_tests 240
  timeout -k 10 150 python3 -m pytest -m gpu -q -p no:cacheprovider tests/ops/test_triton_mamba_inner.py \
    > $LOGS/tests_mixer.log 2>&1
  stamp "mixer GPU tests rc=$?"; grep -E "passed|failed|^E " $LOGS/tests_mixer.log | head -8
  bench new '{}' '[8,32]'
  bench s16 '{"defer_dbc": false, "split_chunk": false}' '[8,32]'
  for i in $(seq 100); do [ -f /tmp/kernels_done ] && break; [ $(( $(date +%s) - T0 )) -gt 560 ] && break; sleep 5; done
  cat /tmp/kernels_done 2>/dev/null || { stamp "kernel build not finished"; tail -n 3 /tmp/build.log; }
  stamp done
fi
if [ "$1" = bench ]; then
  source scripts/gpu/e2e_env.sh
  wait_kernels
  full_bench 500
  tar czf $OUT/s18_bench_logs.tgz -C $LOGS . 2>/dev/null
  stamp done
fi
if [ "$1" = samerun ]; then
  MAX_JOBS=16 bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1
  cat /tmp/kernels_done 2>/dev/null || { stamp "kernel build failed"; tail -n 5 /tmp/build.log; }
  mkdir -p $OUT/kw && cp /root/kernel-wheels/*.whl $OUT/kw/ 2>/dev/null
  stamp "benchmark: mambalab[triton] and mamba_ssm, one run"
  timeout -k 10 $(( 590 - ($(date +%s) - T0) )) python3 -m mambalab.bench \
    'bench.implementations=[mambalab,mamba_ssm]' 'bench.kernels=[triton]' \
    bench.out=$OUT/bench_samerun.json > $LOGS/bench_samerun.log 2>&1
  stamp "rc=$?"; grep -E "x2048|Error" $LOGS/bench_samerun.log | head -12
  stamp done
fi
