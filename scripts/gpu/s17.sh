#!/bin/bash
# Sixteenth session (2026-12-02): the Gluon scan backward (selective_scan_gluon_bwd.py) checked and
# timed against the Triton lanes backward. One H200, no kernel build (the Triton path).
#   bash scripts/gpu/s17.sh check [TIMEOUT] [--variants default,...] [--batches 8,32]
#   bash scripts/gpu/s17.sh verify   # GPU tests, then training graphed, Gluon on and off
#   bash scripts/gpu/s17.sh final    # the Gluon GPU tests, the ops tables on and off
#   bash scripts/gpu/s17.sh eager    # training eager, on and off
source scripts/gpu/common.sh
LOGS=$OUT/logs; mkdir -p $LOGS
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
if [ "$1" = check ]; then
  stamp "gluon backward: check and times"
  timeout -k 10 ${2:-400} python3 scripts/gluon_bwd_check.py --out $OUT "${@:3}" > $LOGS/gluon_check.log 2>&1
  stamp "rc=$?"; cat $LOGS/gluon_check.log | grep -v "^\s*$" | tail -40
  stamp done
fi
# `bench NAME GLUON BATCHES`: mambalab[triton] alone, graphed, lanes_bwd_gluon = GLUON
bench() {
  stamp "bench $1 (lanes_bwd_gluon=$2, batches $3)"
  MAMBALAB_SCAN_CONFIG="{\"lanes_bwd_gluon\": $2}" timeout -k 10 ${4:-170} python3 -m mambalab.bench \
    'bench.implementations=[mambalab]' 'bench.kernels=[triton]' "bench.batch_sizes=$3" \
    'bench.cuda_graphs=[true]' bench.steps=20 bench.out=$OUT/bench_$1.json > $LOGS/bench_$1.log 2>&1
  stamp "rc=$?"; grep -E "^\| mambalab" $LOGS/bench_$1.log | head -4; grep -E "Error|error" $LOGS/bench_$1.log | head -3
}
if [ "$1" = verify ]; then
  stamp "GPU tests: the Gluon backward, the scan and the fused mixer at full size (Gluon on by default)"
  timeout -k 10 260 python3 -m pytest -m gpu -q -p no:cacheprovider tests/ops/test_gluon_scan_bwd.py \
    > $LOGS/tests_gluon.log 2>&1
  stamp "rc=$?"; grep -E "passed|failed|^E |Error" $LOGS/tests_gluon.log | head -12
  timeout -k 10 200 python3 -m pytest -m gpu -q -p no:cacheprovider tests/ops/test_triton_selective_scan.py \
    -k "full_size and lanes" > $LOGS/tests_scan.log 2>&1
  stamp "rc=$?"; grep -E "passed|failed|^E " $LOGS/tests_scan.log | head -8
  timeout -k 10 200 python3 -m pytest -m gpu -q -p no:cacheprovider tests/ops/test_triton_mamba_inner.py \
    > $LOGS/tests_mixer.log 2>&1
  stamp "rc=$?"; grep -E "passed|failed|^E " $LOGS/tests_mixer.log | head -8
  bench on true '[8,32]'
  bench off false '[8,32]'
  stamp done
fi
if [ "$1" = final ]; then
  stamp "GPU tests: the Gluon backward"
  timeout -k 10 200 python3 -m pytest -m gpu -q -p no:cacheprovider tests/ops/test_gluon_scan_bwd.py \
    > $LOGS/tests_gluon2.log 2>&1
  stamp "rc=$?"; grep -E "passed|failed|^E |Error" $LOGS/tests_gluon2.log | head -12
  for g in true false; do
    stamp "ops table, lanes_bwd_gluon=$g"
    MAMBALAB_SCAN_CONFIG="{\"lanes_bwd_gluon\": $g}" timeout -k 10 150 python3 -m mambalab.bench \
      'bench.implementations=[mambalab]' 'bench.kernels=[triton]' 'bench.batch_sizes=[8]' \
      bench.ops=true bench.out=$OUT/bench_ops_$g.json > $LOGS/bench_ops_$g.log 2>&1
    stamp "rc=$?"; grep -iE "scan|mixer|mamba_inner" $LOGS/bench_ops_$g.log | head -8
  done
  stamp done
fi
if [ "$1" = eager ]; then  # the eager step (no CUDA graph: DDP, FSDP, trainer.cuda_graphs=false)
  for g in true false; do
    stamp "eager bench, lanes_bwd_gluon=$g"
    MAMBALAB_SCAN_CONFIG="{\"lanes_bwd_gluon\": $g}" timeout -k 10 150 python3 -m mambalab.bench \
      'bench.implementations=[mambalab]' 'bench.kernels=[triton]' 'bench.batch_sizes=[8,32]' \
      'bench.cuda_graphs=[false]' bench.steps=20 bench.out=$OUT/bench_eager_$g.json > $LOGS/bench_eager_$g.log 2>&1
    stamp "rc=$?"; grep -E "mambalab\[triton\]" $LOGS/bench_eager_$g.log | grep "│" | head -3
  done
  stamp done
fi
