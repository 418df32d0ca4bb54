#!/bin/bash
# Fourth session (2026-12-01, one H200): the lanes scan kernels. Two calls on one warm machine,
# the second sent as soon as the first returns (the kernel build lives only while it is warm).
#   bash scripts/gpu/s4.sh lanes 2>&1 | tee $OUT/s4_lanes.log
#       the mamba-ssm / causal-conv1d build detached; on the GPU meanwhile: the scan's and the
#       mixer's tests compiled (the mixer's with the lanes kernels too), and
#       scripts/bench_scan.py --impl lanes (lanes against tile as the mixer runs them, B=8 and 16).
#   SCAN='{"impl": "lanes"}' bash scripts/gpu/s4.sh bench 2>&1 | tee $OUT/s4_bench.log
#       python -m mambalab.bench, every implementation, B=8 and 16, ops and profile.
source scripts/gpu/e2e_env.sh
step=${1:?usage: s4.sh lanes|bench}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
wait_kernels() {
  for i in $(seq 80); do [ -f /tmp/kernels_done ] && break; sleep 5; done
  cat /tmp/kernels_done 2>/dev/null || stamp "kernel build not finished"
  $PY -c "import torch, selective_scan_cuda, causal_conv1d_cuda, mamba_ssm, causal_conv1d; print('kernels: mamba_ssm', mamba_ssm.__version__, 'causal_conv1d', causal_conv1d.__version__)" \
    || { tail -c 1500 /tmp/build-cc.log /tmp/build-ms.log; }
}
if [ "$step" = lanes ]; then
  (MAX_JOBS=10 setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 &)
  stamp "build started"
  run scan_tests 240 $PY -m pytest -q -x tests/ops/test_triton_selective_scan.py -m "gpu or not gpu"
  tail -n 3 $LOGS/scan_tests.log
  MAMBALAB_SCAN_CONFIG='{"impl": "lanes"}' run mixer_tests 150 $PY -m pytest -q -x tests/ops/test_triton_mamba_inner.py -m "gpu or not gpu"
  tail -n 3 $LOGS/mixer_tests.log
  run lanes_sweep 300 $PY scripts/bench_scan.py --impl lanes --out $OUT
  grep -E "^B|check|mamba" $LOGS/lanes_sweep.log | tail -n 30
  cat /tmp/kernels_done 2>/dev/null || stamp "kernel build not finished yet"
  cp $LOGS/*.log $OUT/ 2>/dev/null
  stamp done; exit 0
fi
export MAMBALAB_SCAN_CONFIG=${SCAN:-}
if [ "$step" = bench ]; then
  wait_kernels
  run bench 560 $PY -m mambalab.bench bench.ops=true bench.profile=true 'bench.kernels=[triton,cuda,auto]' bench.out=$OUT/bench.json
  tail -n 40 $LOGS/bench.log
  $PY -m mambalab.benchmarks.markdown $OUT/bench.json > $OUT/bench.md 2>&1; cat $OUT/bench.md
  cp $LOGS/*.log $OUT/ 2>/dev/null
  stamp done
fi
