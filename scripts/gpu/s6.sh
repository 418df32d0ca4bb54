#!/bin/bash
# Fifth session (2026-12-01). Call 1 on a fresh machine, no kernel build (NO_KERNELS: nothing
# here needs mamba-ssm): where the lanes scan and the conv lose their time.
#   bash scripts/gpu/s6.sh probe 2>&1 | tee $OUT/s6_probe.log
# Calls 2 and 3, back to back on one machine: the kernel build detached, the lanes variants
# (bench_scan.py --impl lanes-variants writes the fastest to best_scan.json), the conv, the
# mixer's GPU tests and the lanes scaling; then the benchmark with the chosen scan config.
#   bash scripts/gpu/s6.sh check 2>&1 | tee $OUT/s6_check.log
#   bash scripts/gpu/s6.sh bench 2>&1 | tee $OUT/s6_bench.log
# 1. ncu (stall reasons, occupancy, throughput) of the lanes scan and the conv kernels at B=16;
#    per-instruction stall samples of the lanes forward;
# 2. the lanes kernels' time against the batch (B = 4 .. 64): are they short of warps?
# 3. scripts/bench_conv.py: the rows conv variants against the tile conv;
# 4. mambalab[triton] alone in the training benchmark at 16 and 32 x 2048, tile and rows conv;
# 5. the full-size mixer test on the GPU (not rerun since the fourth session's last change).
source scripts/gpu/e2e_env.sh
step=${1:?usage: s6.sh probe}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
NCU="ncu --clock-control none --target-processes all"
SECS="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis"
if [ "$step" = probe ]; then
  # fill Triton's cache first, so that ncu's run is short
  run warm 150 $PY scripts/ncu_kernels.py --batch 16
  MAMBALAB_CONV_CONFIG='{"impl": "rows"}' run warm_rows 100 $PY scripts/ncu_kernels.py --parts conv
  run ncu 120 $NCU -k 'regex:_lanes|_conv' $SECS $PY scripts/ncu_kernels.py --batch 16
  cp $LOGS/ncu.log $OUT/ncu_sections.txt
  grep -E "_kernel|Duration|Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Issue Slots Busy|No Eligible|Active Warps Per" $LOGS/ncu.log | head -n 80
  MAMBALAB_CONV_CONFIG='{"impl": "rows"}' run ncu_rows 60 $NCU -k 'regex:_conv' $SECS $PY scripts/ncu_kernels.py --parts conv
  cp $LOGS/ncu_rows.log $OUT/ncu_rows.txt
  run ncu_src 120 $NCU -k 'regex:_lanes_fwd' -c 1 --section WarpStateStats --section SourceCounters --page source --print-source sass --csv $PY scripts/ncu_kernels.py --batch 16 --parts scan
  gzip -c $LOGS/ncu_src.log > $OUT/ncu_src_fwd.csv.gz
  run scaling 120 $PY scripts/bench_scan.py --impl lanes-scaling --out $OUT
  cat $LOGS/scaling.log
  run conv 150 $PY scripts/bench_conv.py --out $OUT
  cat $LOGS/conv.log
  TB="bench.implementations=[mambalab] bench.kernels=[triton] bench.batch_sizes=[16,32] bench.print_tables=true"
  run bench_tile 150 $PY -m mambalab.bench $TB bench.out=/tmp/bench_tile.json
  grep -E "mambalab|tokens" $LOGS/bench_tile.log | head
  MAMBALAB_CONV_CONFIG='{"impl": "rows", "rows_chunk": 16}' run bench_rows 150 $PY -m mambalab.bench $TB bench.out=/tmp/bench_rows.json
  grep -E "mambalab|tokens" $LOGS/bench_rows.log | head
  run mixer_full 150 $PY -m pytest -q -x tests/ops/test_triton_mamba_inner.py -m gpu -k full_size
  tail -n 30 $LOGS/mixer_full.log | grep -E "^E |passed|failed" | head -n 20
  tar czf $OUT/s6_logs.tgz -C $LOGS . 2>/dev/null
  stamp done
fi
if [ "$step" = check ]; then
  (MAX_JOBS=10 setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 &)
  stamp "build started"
  run variants 300 $PY scripts/bench_scan.py --impl lanes-variants --out $OUT
  grep -E "^B|best|check" $LOGS/variants.log
  cp $OUT/best_scan.json /tmp/best_scan.json 2>/dev/null
  export MAMBALAB_SCAN_CONFIG=$(cat /tmp/best_scan.json 2>/dev/null)
  run conv 100 $PY scripts/bench_conv.py --out $OUT
  grep -E "tile|default|K16_seg1024|vs tile" $LOGS/conv.log
  run mixer_gpu 200 $PY -m pytest -q tests/ops/test_triton_mamba_inner.py tests/ops/test_triton_causal_conv1d.py -m gpu
  tail -n 30 $LOGS/mixer_gpu.log | grep -E "^E |passed|failed" | head -n 20
  run scaling 100 $PY scripts/bench_scan.py --impl lanes-scaling --out $OUT
  grep -E "^B" $LOGS/scaling.log
  # per-instruction stall samples of the lanes backward and the rows conv (for the next session)
  run ncu_bwd 120 $NCU -k 'regex:_lanes_bwd|_conv_rows' --section WarpStateStats --section SourceCounters --page source --print-source sass --csv $PY scripts/ncu_kernels.py --batch 16
  gzip -c $LOGS/ncu_bwd.log > $OUT/ncu_src_bwd_conv.csv.gz
  run ncu_sec 90 $NCU -k 'regex:_lanes|_conv_rows' $SECS $PY scripts/ncu_kernels.py --batch 16
  cp $LOGS/ncu_sec.log $OUT/ncu_sections.txt
  for i in $(seq 100); do [ -f /tmp/kernels_done ] && break; sleep 5; done
  cat /tmp/kernels_done 2>/dev/null || stamp "kernel build not finished"
  tar czf $OUT/s6_check_logs.tgz -C $LOGS . 2>/dev/null
  stamp done
fi
if [ "$step" = bench ]; then
  export MAMBALAB_SCAN_CONFIG=$(cat /tmp/best_scan.json 2>/dev/null); echo "scan: $MAMBALAB_SCAN_CONFIG"
  $PY -c "import mamba_ssm, causal_conv1d; print('mamba_ssm', mamba_ssm.__version__)" || cat /tmp/build.log | tail -5
  run bench 570 $PY -m mambalab.bench bench.ops=true bench.profile=true 'bench.kernels=[triton,cuda,auto]' bench.out=$OUT/bench.json
  tail -n 60 $LOGS/bench.log
  $PY -m mambalab.benchmarks.markdown $OUT/bench.json > $OUT/bench.md 2>&1
  cp $LOGS/bench.log $OUT/ 2>/dev/null
  stamp done
fi
