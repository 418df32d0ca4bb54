#!/bin/bash
# Twentieth session (2026-12-03): the scan forward in Gluon (one thread a channel, B and C from
# shared memory: selective_scan_gluon_fwd.py), the Triton forward's loads two chunks ahead
# (ptxas places the one-chunk-ahead loads at 78% of the loop, offline SASS), and which
# instructions the scan kernels wait at. One H200. Run: fwd and train (code at commit b4cde98),
# final (code at d54fd42); log docs/bench/h200-2026-12-03-s20-calls.log. What they measured and
# was slower was removed after: the Gluon forward, its test file and the loads two chunks ahead
# (at b4cde98), both Gluon kernels' cp.async loads (at d54fd42); check those out to rerun.
#   bash scripts/gpu/s20.sh fwd     # the Gluon forward's GPU tests; forward variants
#     (scripts/lanes_fwd_check.py) at B=8 and 32; the Gluon backward's GPU tests (its document
#     starts now enter the decay's exponent)
#   bash scripts/gpu/s20.sh train   # training with each forward (8 and 32 x 2048, ops at B=8);
#     Nsight Compute source counters (per-instruction stall samples, SASS) of the Gluon forward
#     and backward at B=32, as time allows; CSVs and JSON to $OUT
#   LIMIT=420 bash scripts/gpu/s20.sh final   # both Gluon kernels' loads ahead as cp.async
#     copies (CONFIG "async"): the Gluon forward's GPU tests, forward variants, the backward
#     against the Triton one and timed with and without, training with each choice
#   LIMIT=200 bash scripts/gpu/s20.sh check   # the final defaults: the forward with ptxas's own
#     registers against "auto", and the benchmark at 32 x 2048 with the ops table
source scripts/gpu/common.sh
LOGS=$OUT/logs; mkdir -p $LOGS
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
LIMIT=${LIMIT:-585}
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
src() {  # $1: batch; the scan kernels as MAMBALAB_SCAN_CONFIG picks them
  timeout -k 10 120 python3 scripts/ncu_kernels.py --parts scan --batch $1 > $LOGS/src_warm_b$1.log 2>&1
  stamp "ncu source counters B=$1"
  timeout -k 10 $(( $(left) - 40 )) ncu --clock-control none --section SourceCounters \
    --section WarpStateStats -k 'regex:_lanes_fwd_kernel|_gluon_' -o $OUT/src_b$1 \
    python3 scripts/ncu_kernels.py --parts scan --batch $1 > $LOGS/src_b$1.log 2>&1
  stamp "rc=$?"; tail -n 3 $LOGS/src_b$1.log
  timeout -k 10 30 ncu -i $OUT/src_b$1.ncu-rep --page source --print-source sass --csv \
    > $OUT/src_b$1.csv 2> $LOGS/src_csv_b$1.log
  stamp "csv rc=$? $(wc -l < $OUT/src_b$1.csv) lines"; head -c 300 $OUT/src_b$1.csv; echo
  rm -f $OUT/src_b$1.ncu-rep
}
if [ "$1" = fwd ]; then
  stamp "GPU tests: the Gluon forward"
  timeout -k 10 200 python3 -m pytest -m gpu -q -p no:cacheprovider tests/ops/test_gluon_scan_fwd.py \
    > $LOGS/tests_gluon_fwd.log 2>&1
  stamp "rc=$?"; grep -E "passed|failed|^E |Error" $LOGS/tests_gluon_fwd.log | head -12
  stamp "forward variants"
  timeout -k 10 180 python3 scripts/lanes_fwd_check.py --out $OUT --variants \
    "pipe=1;gluon=1;gluon=1 segments=1;gluon=1 segments=4;pipe=2;maxnreg=168" > $LOGS/fwd_variants.log 2>&1
  stamp "rc=$?"; cat $LOGS/fwd_variants.log
  stamp "GPU tests: the Gluon backward, default configuration"
  timeout -k 10 $(( $(left) - 10 )) python3 -m pytest -m gpu -q -p no:cacheprovider \
    tests/ops/test_gluon_scan_bwd.py -k "default or autograd" > $LOGS/tests_gluon_bwd.log 2>&1
  stamp "rc=$?"; grep -E "passed|failed|^E |Error" $LOGS/tests_gluon_bwd.log | head -12
  stamp done
fi
if [ "$1" = train ]; then
  for cfg in '{"lanes_fwd_gluon": true}' '{}'; do
    [ $(left) -lt 150 ] && { stamp "no time left for training with $cfg"; break; }
    n=$(echo "$cfg" | tr -dc 'a-z0-9'); n=${n:-default}
    stamp "training 8 and 32 x 2048 with $cfg, ops ($(left)s)"
    MAMBALAB_SCAN_CONFIG="$cfg" timeout -k 10 $(( $(left) - 100 )) python3 -m mambalab.bench \
      'bench.implementations=[mambalab]' 'bench.kernels=[triton]' 'bench.batch_sizes=[8,32]' \
      bench.steps=20 bench.ops=true bench.out=$OUT/train_$n.json > $LOGS/train_$n.log 2>&1
    stamp "rc=$?"; grep -E "mambalab\[|selective_scan .*triton|mamba_inner.*triton" $LOGS/train_$n.log | grep -v INFO | head -5
  done
  if [ $(left) -gt 120 ]; then
    MAMBALAB_SCAN_CONFIG='{"lanes_fwd_gluon": true}' src 32
  else stamp "no time left for the source counters ($(left)s)"; fi
  stamp done
fi
if [ "$1" = final ]; then
  stamp "GPU tests: the Gluon forward (cp.async loads and register loads)"
  timeout -k 10 120 python3 -m pytest -m gpu -q -p no:cacheprovider tests/ops/test_gluon_scan_fwd.py \
    > $LOGS/tests_gluon_fwd2.log 2>&1
  stamp "rc=$?"; grep -E "passed|failed|^E |Error" $LOGS/tests_gluon_fwd2.log | head -12
  stamp "forward variants"
  timeout -k 10 100 python3 scripts/lanes_fwd_check.py --out $OUT --variants \
    "pipe=1;maxnreg=168;gluon=1" > $LOGS/fwd_variants2.log 2>&1
  stamp "rc=$?"; grep -E "check|time" $LOGS/fwd_variants2.log
  stamp "Gluon backward: cp.async loads against register loads, against the Triton backward"
  timeout -k 10 $(( $(left) - 110 )) python3 scripts/gluon_bwd_check.py --out $OUT \
    --variants "default,no async" > $LOGS/gluon_bwd2.log 2>&1
  stamp "rc=$?"; grep -E "check|time" $LOGS/gluon_bwd2.log
  for pair in 'new|{"lanes_fwd_gluon": true}|{}' 'r168|{"lanes_fwd_maxnreg": 168}|{}' \
              'old|{}|{"async": false}'; do
    IFS='|' read -r n scfg gcfg <<< "$pair"
    [ $(left) -lt 40 ] && { stamp "no time left for training $n"; break; }
    stamp "training 8 and 32 x 2048, $n: scan $scfg, Gluon backward $gcfg ($(left)s)"
    MAMBALAB_SCAN_CONFIG="$scfg" MAMBALAB_GLUON_BWD_CONFIG="$gcfg" timeout -k 5 $(( $(left) - 5 )) \
      python3 -m mambalab.bench 'bench.implementations=[mambalab]' 'bench.kernels=[triton]' \
      'bench.batch_sizes=[8,32]' bench.steps=20 bench.out=$OUT/train2_$n.json > $LOGS/train2_$n.log 2>&1
    stamp "rc=$?"; grep -E "mambalab\[" $LOGS/train2_$n.log | grep -v INFO | head -3
  done
  stamp done
fi
if [ "$1" = check ]; then  # LIMIT=200: the final defaults (the forward's "auto" register cap)
  stamp "forward: ptxas's own registers against auto"
  timeout -k 5 100 python3 scripts/lanes_fwd_check.py --out $OUT --variants "maxnreg=0;maxnreg=auto" \
    > $LOGS/fwd_auto.log 2>&1
  stamp "rc=$?"; grep -E "check|time" $LOGS/fwd_auto.log
  stamp "benchmark 32 x 2048 with the ops table, defaults ($(left)s)"
  timeout -k 5 $(( $(left) - 5 )) python3 -m mambalab.bench 'bench.implementations=[mambalab]' \
    'bench.kernels=[triton]' 'bench.batch_sizes=[32]' bench.ops=true bench.out=$OUT/bench_final.json \
    > $LOGS/bench_final.log 2>&1
  stamp "rc=$?"; grep -E "mambalab\[|selective_scan .*triton|mamba_inner.*triton" $LOGS/bench_final.log | grep -v INFO | head -4
  stamp done
fi
