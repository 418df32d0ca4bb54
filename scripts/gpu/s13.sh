#!/bin/bash
# Twelfth session (2026-12-02): the lanes backward in time segments (selective_scan_lanes_carry.py)
# on one H200. Two calls back to back on one machine (a machine stays warm 30 s; the kernel build
# call a starts must survive for call b):
#   bash scripts/gpu/s13.sh a 2>&1 | tee $OUT/s13_a.log
#   bash scripts/gpu/s13.sh b 2>&1 | tee $OUT/s13_b.log
# a: the mamba-ssm build detached; the segments' GPU tests (compiled) and the fused mixer's
#   full-size test; scripts/bench_scan.py --impl lanes-segments (forward and backward segments
#   1, 2, 4, auto at B = 1 .. 16 and at B=1, L=16384, and the fp32-loop checks); training
#   mambalab[triton] alone at 8 x 2048 and 1 x 16384 with segments off and auto; then waits for
#   the build. (The first version of this call, backward segments only, ran the scan tests
#   "segments or L32-D64 or batch_parts or saved_states" and timed out in them at 200 s.)
# b: the full benchmark (every implementation, ops table, profile) in one process;
#   SCAN (MAMBALAB_SCAN_CONFIG JSON) overrides the code's scan settings there.
source scripts/gpu/e2e_env.sh
step=${1:?usage: s13.sh a|b}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
summary() { $PY scripts/gpu/summary.py "$1"; }
TB="bench.implementations=[mambalab] bench.kernels=[triton] bench.print_tables=false"
ab() {  # name, scan config JSON, batch sizes, more bench overrides
  MAMBALAB_SCAN_CONFIG="$2" run "$1" 150 $PY -m mambalab.bench $TB "bench.batch_sizes=$3" $4 bench.out=$OUT/ab_$1.json
  summary $OUT/ab_$1.json
}
if [ "$step" = a ]; then
  (MAX_JOBS=12 setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 &)
  stamp "build started"
  tests seg_gpu 150 tests/ops/test_triton_selective_scan.py -k "segments"
  tests mixer_gpu 100 -m gpu tests/ops/test_triton_mamba_inner.py -k "full_size_gpu_matches"
  run bench_seg 240 $PY scripts/bench_scan.py --impl lanes-segments --out $OUT
  grep -E "^B|check" $LOGS/bench_seg.log
  OFF='{"lanes_fwd_segments": 1, "lanes_bwd_segments": 1}'
  ab seg1 "$OFF" '[8]'
  ab segauto '{}' '[8]'
  ab long_seg1 "$OFF" '[1]' bench.seq_len=16384
  ab long_segauto '{}' '[1]' bench.seq_len=16384
  for i in $(seq 100); do [ -f /tmp/kernels_done ] && break; [ $(( $(date +%s) - T0 )) -gt 560 ] && break; sleep 5; done
  cat /tmp/kernels_done 2>/dev/null || { stamp "kernel build not finished"; tail -n 3 /tmp/build.log; }
  tar czf $OUT/s13_a_logs.tgz -C $LOGS . 2>/dev/null
  stamp done
fi
if [ "$step" = b ]; then
  wait_kernels
  MAMBALAB_SCAN_CONFIG="${SCAN:-{\}}" full_bench 540
  tar czf $OUT/s13_b_logs.tgz -C $LOGS . 2>/dev/null
  stamp done
fi
