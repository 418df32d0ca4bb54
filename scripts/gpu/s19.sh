#!/bin/bash
# Eighteenth session (2026-12-03): some of the scan's exponentials on the FMA pipe
# (ops/triton/fast_math.py), and mambalab against mamba_ssm in one run. One H200.
# Run in the nineteenth session (2026-12-03): soft, samerun, ncu, fwd2 (src: not run, no machine).
# The code `soft` and `fwd2` measured was removed after (slower): the soft variants and
# scripts/soft_exp_check.py are at commit 7977547, the two-thread forward and
# scripts/lanes_fwd_check.py at 8c2d30c; check those out to run these modes again.
#   bash scripts/gpu/s19.sh soft      # exp2_poly on the GPU; forward and Gluon backward variants;
#     the Gluon backward's GPU tests
#   bash scripts/gpu/s19.sh ncu       # Nsight Compute, every metric (--set full, raw page), of the
#     scan forward and the Gluon backward at B=8 and 32: pipe use (XU is MUFU) and stall reasons
#     (MIO throttle or issue?), to files in $OUT
#   bash scripts/gpu/s19.sh src       # Nsight Compute's per-instruction stall samples (SASS) of the
#     same two kernels at B=8 and 32: which instructions the warps wait at
#   bash scripts/gpu/s19.sh fwd2      # the forward with two threads a channel: its tests on the GPU,
#     kernel times against one thread (segments too), training with each (ops table at B=8)
#   bash scripts/gpu/s19.sh samerun   # build the kernels, then mambalab[triton] and mamba_ssm in
#     one run per batch (ops at B=8 with the first), wheels copied to $OUT/kw
source scripts/gpu/common.sh
LOGS=$OUT/logs; mkdir -p $LOGS
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
if [ "$1" = soft ]; then
  stamp "exp2_poly test on the GPU"
  timeout -k 10 120 python3 -m pytest -q -p no:cacheprovider tests/ops/test_triton_fast_math.py \
    > $LOGS/tests_fast_math.log 2>&1
  stamp "rc=$?"; grep -E "passed|failed|^E " $LOGS/tests_fast_math.log | head -8
  stamp "forward: soft exp variants"
  timeout -k 10 150 python3 scripts/lanes_fwd_check.py --out $OUT \
    --variants "soft=0;soft=4;soft=8;soft=16" > $LOGS/soft_fwd.log 2>&1
  stamp "rc=$?"; cat $LOGS/soft_fwd.log | tail -20
  stamp "Gluon backward: soft exp variants"
  timeout -k 10 240 python3 scripts/gluon_bwd_check.py --out $OUT --variants "default,soft 1,soft 2" \
    > $LOGS/soft_bwd.log 2>&1
  stamp "rc=$?"; grep -v "^\s*$" $LOGS/soft_bwd.log | tail -20
  # the default backward changed without a GPU run (one FMUL fewer a state-step)
  stamp "GPU tests: the Gluon backward (its configurations, soft_exp 2 among them)"
  timeout -k 10 240 python3 -m pytest -m gpu -q -p no:cacheprovider tests/ops/test_gluon_scan_bwd.py \
    > $LOGS/tests_gluon.log 2>&1
  stamp "rc=$?"; grep -E "passed|failed|^E |Error" $LOGS/tests_gluon.log | head -12
  stamp done
fi
if [ "$1" = ncu ]; then
  for b in 8 32; do
    stamp "warm Triton's cache, B=$b"
    timeout -k 10 120 python3 scripts/ncu_kernels.py --parts scan --batch $b > $LOGS/ncu_warm_b$b.log 2>&1
    stamp "ncu B=$b rc=$?"
    timeout -k 10 200 ncu --clock-control none --target-processes all --set full --page raw \
      -k 'regex:_lanes_fwd_kernel|_gluon_bwd' python3 scripts/ncu_kernels.py --parts scan --batch $b \
      > $OUT/ncu_raw_b$b.txt 2>&1
    stamp "rc=$?"; grep -E "_kernel|gpu__time_duration.sum|smsp__issue_active.avg.pct|pipe_xu.*pct_of_peak_sustained_active|stalled_mio_throttle_per_issue_active|stalled_short_scoreboard_per_issue_active" \
      $OUT/ncu_raw_b$b.txt | head -24
  done
  stamp done
fi
if [ "$1" = src ]; then
  for b in 32 8; do
    timeout -k 10 120 python3 scripts/ncu_kernels.py --parts scan --batch $b > $LOGS/src_warm_b$b.log 2>&1
    stamp "ncu source counters B=$b"
    timeout -k 10 200 ncu --clock-control none --section SourceCounters --section WarpStateStats \
      -k 'regex:_lanes_fwd_kernel|_gluon_bwd' -o $OUT/src_b$b python3 scripts/ncu_kernels.py \
      --parts scan --batch $b > $LOGS/src_b$b.log 2>&1
    stamp "rc=$?"; tail -n 3 $LOGS/src_b$b.log
    timeout -k 10 120 ncu -i $OUT/src_b$b.ncu-rep --page source --print-source sass --csv \
      > $OUT/src_b$b.csv 2> $LOGS/src_csv_b$b.log
    stamp "csv rc=$? $(wc -l < $OUT/src_b$b.csv) lines"; head -c 600 $OUT/src_b$b.csv; tail -n 3 $LOGS/src_csv_b$b.log
  done
  stamp done
fi
if [ "$1" = fwd2 ]; then
  stamp "lanes tests on the GPU with lanes_fwd_threads 2 (and the mixer's)"
  MAMBALAB_SCAN_CONFIG='{"lanes_fwd_threads": 2}' timeout -k 10 200 python3 -m pytest -q \
    -p no:cacheprovider tests/ops/test_triton_selective_scan.py tests/ops/test_triton_mamba_inner.py \
    -k "lanes or mamba_inner or gpu" > $LOGS/tests_fwd2.log 2>&1
  stamp "rc=$?"; grep -E "passed|failed|^E |Error" $LOGS/tests_fwd2.log | head -12
  stamp "forward variants"
  timeout -k 10 150 python3 scripts/lanes_fwd_check.py --out $OUT --variants \
    "threads=1;threads=1 segments=1;threads=2;threads=2 segments=2;threads=2 segments=4" \
    > $LOGS/fwd2_variants.log 2>&1
  stamp "rc=$?"; cat $LOGS/fwd2_variants.log
  for cfg in '{}' '{"lanes_fwd_threads": 2}' '{"lanes_fwd_threads": 2, "lanes_fwd_segments": 2}'; do
    left=$(( 575 - ($(date +%s) - T0) ))
    [ $left -lt 40 ] && { stamp "no time left for $cfg"; break; }
    n=$(echo "$cfg" | tr -dc 'a-z0-9')
    stamp "training 8 and 32 x 2048 with $cfg, ops (${left}s)"
    MAMBALAB_SCAN_CONFIG="$cfg" timeout -k 10 $left python3 -m mambalab.bench \
      'bench.implementations=[mambalab]' 'bench.kernels=[triton]' 'bench.batch_sizes=[8,32]' \
      bench.steps=20 bench.ops=true bench.out=$OUT/fwd2_$n.json > $LOGS/fwd2_$n.log 2>&1
    stamp "rc=$?"; grep -E "mambalab\[|selective_scan .*triton|mamba_inner.*triton" $LOGS/fwd2_$n.log | grep -v INFO | head -5
  done
  stamp done
fi
if [ "$1" = samerun ]; then
  MAX_JOBS=16 bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1
  cat /tmp/kernels_done 2>/dev/null || { stamp "kernel build failed"; tail -n 5 /tmp/build.log; }
  mkdir -p $OUT/kw && cp /root/kernel-wheels/*.whl $OUT/kw/ 2>/dev/null
  for b in 32 8; do
    left=$(( 590 - ($(date +%s) - T0) ))
    [ $left -lt 60 ] && { stamp "no time left for B=$b"; break; }
    ops=false; [ $b = 32 ] && ops=true
    stamp "benchmark B=$b: mambalab[triton] and mamba_ssm, one run (ops=$ops, ${left}s)"
    timeout -k 10 $left python3 -m mambalab.bench 'bench.implementations=[mambalab,mamba_ssm]' \
      'bench.kernels=[triton]' "bench.batch_sizes=[$b]" bench.ops=$ops \
      bench.out=$OUT/bench_samerun_b$b.json > $LOGS/bench_samerun_b$b.log 2>&1
    stamp "rc=$?"; grep -E "x2048|scan|Error" $LOGS/bench_samerun_b$b.log | head -16
  done
  stamp done
fi
