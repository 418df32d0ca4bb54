#!/bin/bash
# Fourth session, calls 3-4 (after the prefetch and the y-from-backward change): 
#   bash scripts/gpu/s4b.sh sweep   the kernel build detached; scripts/bench_scan.py --impl lanes;
#                                   the mixer's tests compiled with the lanes kernels; waits for
#                                   the build (sent first, on a fresh machine)
#   SCAN='{"impl": "lanes"}' bash scripts/gpu/s4.sh bench    (sent right after, same machine)
source scripts/gpu/e2e_env.sh
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
(MAX_JOBS=10 setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 &)
stamp "build started"
run lanes_sweep 240 $PY scripts/bench_scan.py --impl lanes --out $OUT
grep -E "^B|check|mamba" $LOGS/lanes_sweep.log | tail -n 30
MAMBALAB_SCAN_CONFIG='{"impl": "lanes"}' run mixer_tests 150 $PY -m pytest -q tests/ops/test_triton_mamba_inner.py -m "gpu or not gpu"
tail -n 3 $LOGS/mixer_tests.log
for i in $(seq 90); do [ -f /tmp/kernels_done ] && break; sleep 5; done
cat /tmp/kernels_done 2>/dev/null || stamp "kernel build not finished"
cp $LOGS/*.log $OUT/ 2>/dev/null
stamp done
