#!/bin/bash
# Fifteenth session (2026-12-02): the lanes forward with B and C by uniform loads
# (selective_scan CONFIG["lanes_fwd_bc"]). One H200, no kernel build (the Triton path).
# Runs only at commit 83a0278: the loads were 1.6-4.1x slower and the option was removed after it
# (docs/kernels/selective_scan.md, fifteenth session; log docs/bench/h200-2026-12-02-s15-calls.log).
#   bash scripts/gpu/s16.sh bc 2>&1 | tee $OUT/s16_bc.log
source scripts/gpu/common.sh
LOGS=$OUT/logs; mkdir -p $LOGS
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
# `bench NAME MODE BATCHES`: mambalab[triton] alone, graphed, with lanes_fwd_bc = MODE
bench() {
  stamp "bench $1 (lanes_fwd_bc=$2, batches $3)"
  MAMBALAB_SCAN_CONFIG="{\"lanes_fwd_bc\": \"$2\"}" timeout -k 10 ${4:-170} python3 -m mambalab.bench \
    'bench.implementations=[mambalab]' 'bench.kernels=[triton]' "bench.batch_sizes=$3" \
    'bench.cuda_graphs=[true]' bench.steps=20 bench.out=$OUT/bench_$1.json > $LOGS/bench_$1.log 2>&1
  stamp "rc=$?"; grep -E "^\| mambalab" $LOGS/bench_$1.log | head -4; grep -E "Error|error" $LOGS/bench_$1.log | head -3
}
if [ "$1" = bc ]; then
  stamp "scan: B/C shuffles against loads"
  timeout -k 10 200 python3 scripts/bench_scan.py --impl lanes-bc --out $OUT > $LOGS/scan_bc.log 2>&1
  stamp "rc=$?"; cat $LOGS/scan_bc.log
  stamp "GPU scan tests with the loads"
  MAMBALAB_SCAN_CONFIG='{"lanes_fwd_bc": "loads"}' timeout -k 10 120 python3 -m pytest -q -p no:cacheprovider \
    tests/ops/test_triton_selective_scan.py -k "uniform or full_size" > $LOGS/tests_bc.log 2>&1
  stamp "rc=$?"; grep -E "passed|failed|^E " $LOGS/tests_bc.log | head -8
  bench s1 shuffles '[8,32]'
  bench l1 loads '[8,32]'
  bench s2 shuffles '[32]' 100
  bench l2 loads '[32]' 100
  stamp done
fi
