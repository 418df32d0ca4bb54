#!/bin/bash
# Twenty-third session (2026-12-03). Log: docs/bench/h200-2026-12-03-s23-calls.log.
# The modes mma and ncu measure a backward (selective_scan_mma_bwd.py, scripts/mma_bwd_check.py,
# the scan CONFIG's lanes_bwd_mma) that is at commit 4f39c6f and was removed after it
# (docs/kernels/selective_scan.md, twenty-third session): run them from that commit; ablate from
# 8af544b (below); cap runs from here.
#   LIMIT=400 bash scripts/gpu/s23.sh mma  # the backward with its sums on the tensor cores
#     (selective_scan_mma_bwd.py): agreement with the Triton and Gluon backwards, then times
source scripts/gpu/common.sh
LOGS=$OUT/logs; mkdir -p $LOGS
card
if [ "$1" = mma ]; then
  stamp "mma backward: checks and times"
  timeout -k 5 $(( $(left) - 5 )) python3 scripts/mma_bwd_check.py --out $OUT ${VARIANTS:+--variants "$VARIANTS"} 2>&1 | tee $LOGS/mma.log | grep -v "^\s*$" | tail -40
  stamp "rc=${PIPESTATUS[0]}"
fi
#   LIMIT=420 bash scripts/gpu/s23.sh ncu  # Nsight Compute's per-instruction stall samples of the
#     mma backward and the Gluon one at B=32 (and B=8), digested (scripts/ncu_source_digest.py)
if [ "$1" = ncu ]; then
  for b in ${BATCHES:-32 8}; do
    for k in mma gluon; do
      [ $k = mma ] && export MAMBALAB_SCAN_CONFIG='{"lanes_bwd_mma": true}' || unset MAMBALAB_SCAN_CONFIG
      timeout -k 10 120 python3 scripts/ncu_kernels.py --parts scan --batch $b > $LOGS/src_warm_${k}_b$b.log 2>&1
      stamp "ncu source counters $k B=$b ($(left)s)"
      timeout -k 10 $(( $(left) - 40 )) ncu --clock-control none --section SourceCounters \
        --section WarpStateStats -k "regex:_${k}_bwd" -o $OUT/src_${k}_b$b \
        python3 scripts/ncu_kernels.py --parts scan --batch $b > $LOGS/src_${k}_b$b.log 2>&1
      stamp "rc=$?"; tail -n 2 $LOGS/src_${k}_b$b.log
      timeout -k 10 30 ncu -i $OUT/src_${k}_b$b.ncu-rep --page source --print-source sass --csv \
        > $OUT/src_${k}_b$b.csv 2> $LOGS/src_csv_${k}_b$b.log
      timeout -k 10 30 ncu -i $OUT/src_${k}_b$b.ncu-rep --page details > $LOGS/details_${k}_b$b.txt 2>&1
      rm -f $OUT/src_${k}_b$b.ncu-rep
      python3 scripts/ncu_source_digest.py $OUT/src_${k}_b$b.csv 12 | head -40
      [ $(left) -lt 60 ] && break 2
    done
  done
  stamp done
fi
#   LIMIT=300 bash scripts/gpu/s23.sh ablate  # the Gluon backward with parts of its work left out
#     (scripts/gluon_ablate.py): which parts its time follows. Run from commit 8af544b (the
#     switch and the script were removed after it)
if [ "$1" = ablate ]; then
  stamp "Gluon backward ablations"
  timeout -k 5 $(( $(left) - 5 )) python3 scripts/gluon_ablate.py --out $OUT 2>&1 | tee $LOGS/ablate.log | tail -30
  stamp "rc=${PIPESTATUS[0]}"
fi
#   CAPS="default,maxnreg 200" LIMIT=260 bash scripts/gpu/s23.sh cap  # the Gluon backward under a
#     register cap that lets 10 warps an SM in (the ablations freed registers and gained most at
#     B=32): checks and times (scripts/gluon_bwd_check.py), then training at 32 x 2048 with the
#     default and the 200 cap
if [ "$1" = cap ]; then
  stamp "Gluon backward under register caps"
  timeout -k 5 $(( $(left) - 110 )) python3 scripts/gluon_bwd_check.py --out $OUT \
    --variants "${CAPS:-default,maxnreg 200,maxnreg 168}" --batches 8,32 > $LOGS/cap.log 2>&1
  stamp "rc=$?"; grep -E "^check|^time|Error" $LOGS/cap.log | cut -c1-160
  k=2
  for cfg in '{}' '{"maxnreg": 200}'; do
    [ $(left) -lt 60 ] && { stamp "no time left for training with $cfg"; break; }
    n=$(echo "$cfg" | tr -dc 'a-z0-9'); n=${n:-default}
    stamp "training 32 x 2048, Gluon backward $cfg ($(left)s)"
    MAMBALAB_GLUON_BWD_CONFIG="$cfg" timeout -k 5 $(( ($(left) - 5) / k )) python3 -m mambalab.bench \
      'bench.implementations=[mambalab]' 'bench.kernels=[triton]' 'bench.batch_sizes=[32]' \
      bench.steps=20 bench.out=$OUT/train_$n.json > $LOGS/train_$n.log 2>&1
    stamp "rc=$?"; grep -E "mambalab\[" $LOGS/train_$n.log | grep -v INFO | head -3
    k=1
  done
  stamp done
fi
