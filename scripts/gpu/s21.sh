#!/bin/bash
# Twenty-first session (2026-12-03): no kernel change; the final code verified on one H200 and
# measured against mamba_ssm in one run. Log: docs/bench/h200-2026-12-03-s21-calls.log.
#   bash scripts/gpu/s21.sh verify  # the kernel build detached (mamba-ssm, causal-conv1d), and
#     meanwhile every GPU-marked test (pytest -m gpu; the cuda-path ones skip until the build is in)
#   bash scripts/gpu/s21.sh bench   # send right after verify (the machine goes back 30 s after a
#     call, and the build with it): waits for the build, runs the cuda-path GPU tests, then the
#     full benchmark (every implementation, batches 8/16/32, the ops table, the profile) in one run.
#     In this session it reached a fresh machine (the warm one had gone back): no build to wait
#     for, so the cuda-path rows and tests skipped; the loop now waits only for a build running
#   LIMIT=560 bash scripts/gpu/s21.sh samerun  # one call: the build (about 390 s), then
#     mambalab[triton], mamba_ssm and HF at 32 x 2048 with the ops table, and 8 x 2048
source scripts/gpu/common.sh
LOGS=$OUT/logs; mkdir -p $LOGS
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
LIMIT=${LIMIT:-585}
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
if [ "$1" = verify ]; then
  if [ ! -f /tmp/kernels_done ]; then
    stamp "kernel build, detached"
    MAX_JOBS=12 setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 < /dev/null &
  fi
  stamp "GPU tests: pytest -m gpu ($(left)s)"
  # the build installs into /tmp/site when it ends: the tests have imported what they use by then
  timeout -k 10 $(( $(left) - 15 )) python3 -m pytest -m gpu -v -rs -p no:cacheprovider \
    --durations=12 tests > $LOGS/tests_gpu.log 2>&1
  stamp "rc=$?"; grep -E " (PASSED|FAILED|ERROR|SKIPPED)|passed|failed|^E  " $LOGS/tests_gpu.log | head -70
  grep -A14 "slowest" $LOGS/tests_gpu.log
  stamp "build: $(cat /tmp/kernels_done 2>/dev/null || echo running)"
  stamp done
fi
if [ "$1" = bench ]; then
  # wait only for a build this machine is running (a fresh machine has none: nothing to wait for)
  while [ -f /tmp/build.log ] && [ ! -f /tmp/kernels_done ] && [ $(left) -gt 300 ]; do sleep 5; done
  stamp "build: $(cat /tmp/kernels_done 2>/dev/null || { echo 'not done'; tail -n 3 /tmp/build.log; })"
  mkdir -p $OUT/kw && cp /root/kernel-wheels/*.whl $OUT/kw/ 2>/dev/null; ls -la $OUT/kw
  stamp "GPU tests on mamba_ssm's kernels"
  timeout -k 10 150 python3 -m pytest -m gpu -v -rs -p no:cacheprovider tests/ops/test_ops_cuda_gpu.py \
    tests/models/test_mamba_lm_gpu.py tests/test_bench.py > $LOGS/tests_cuda.log 2>&1
  stamp "rc=$?"; grep -E " (PASSED|FAILED|ERROR|SKIPPED)|passed|failed|^E  " $LOGS/tests_cuda.log | head -30
  stamp "full benchmark, ops, profile ($(left)s)"
  timeout -k 5 $(( $(left) - 5 )) python3 -m mambalab.bench bench.ops=true bench.profile=true \
    bench.out=$OUT/bench.json > $LOGS/bench.log 2>&1
  stamp "rc=$?"; grep -vE "INFO|^\s*$" $LOGS/bench.log | head -80
  python3 -m mambalab.benchmarks.markdown $OUT/bench.json > $OUT/bench.md 2> $LOGS/md.log
  stamp done
fi
if [ "$1" = samerun ]; then  # one call: the build, then mambalab[triton] against mamba_ssm and HF
  MAX_JOBS=16 bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1
  stamp "build: $(cat /tmp/kernels_done 2>/dev/null || { echo 'failed'; tail -n 3 /tmp/build.log; })"
  stamp "benchmark 32 x 2048 and the ops table: mambalab[triton], mamba_ssm, hf ($(left)s)"
  timeout -k 5 $(( $(left) - 35 )) python3 -m mambalab.bench 'bench.implementations=[mambalab,mamba_ssm,hf]' \
    'bench.kernels=[triton]' 'bench.batch_sizes=[32]' bench.ops=true bench.out=$OUT/samerun_b32.json \
    > $LOGS/samerun_b32.log 2>&1
  stamp "rc=$?"; grep -vE "INFO|^\s*$|^  -|Fix:" $LOGS/samerun_b32.log | head -40
  stamp "benchmark 8 x 2048: mambalab[triton], mamba_ssm ($(left)s)"
  timeout -k 5 $(( $(left) - 3 )) python3 -m mambalab.bench 'bench.implementations=[mambalab,mamba_ssm]' \
    'bench.kernels=[triton]' 'bench.batch_sizes=[8]' bench.out=$OUT/samerun_b8.json \
    > $LOGS/samerun_b8.log 2>&1
  stamp "rc=$?"; grep -E "x2048" $LOGS/samerun_b8.log | head -4
  stamp done
fi
