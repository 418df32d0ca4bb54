#!/bin/bash
# Sixth session (2026-12-02): the state-passes lanes backward (selective_scan_lanes_bwd_passes.py,
# measured slower by the check call and removed: `git checkout 37fb4c8` to run that call again),
# then the ops table's timing (ops, ops2). The check and bench calls, back to back on one machine:
#   bash scripts/gpu/s7.sh check 2>&1 | tee $OUT/s7_check.log
#   bash scripts/gpu/s7.sh bench 2>&1 | tee $OUT/s7_bench.log
# check: the kernel build detached; the lanes backward variants (one pass against 2 or 4 state
# passes, with ptxas's register cap or not) at B = 8, 16, 32 as the mixer runs them, the fastest
# (per batch row) checked at full size against an fp32 loop and written to best_scan.json; the
# scan's lanes tests compiled on the GPU (the passes cases among them) and the fused mixer's GPU
# tests with that config; mambalab[triton] alone at 32 x 2048 with the default and the best.
# bench: the full benchmark (every implementation, ops table, profile) with the best config.
source scripts/gpu/e2e_env.sh
step=${1:?usage: s7.sh check|bench}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
if [ "$step" = check ]; then
  (MAX_JOBS=10 setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 &)
  stamp "build started"
  VARIANTS_ONLY=bwd_pipe1,p2,p2_r168,p4,p4_r168,p4_r128 run variants 300 $PY scripts/bench_scan.py --impl lanes-variants --out $OUT
  grep -E "^B|best|check|rror" $LOGS/variants.log
  cp $OUT/best_scan.json /tmp/best_scan.json 2>/dev/null
  export MAMBALAB_SCAN_CONFIG=$(cat /tmp/best_scan.json 2>/dev/null); echo "best: $MAMBALAB_SCAN_CONFIG"
  TB="bench.implementations=[mambalab] bench.kernels=[triton] bench.batch_sizes=[32] bench.print_tables=true"
  run bench_best 80 $PY -m mambalab.bench $TB bench.out=$OUT/bench_best32.json
  grep -E "mambalab|tokens" $LOGS/bench_best.log | head -n 5
  MAMBALAB_SCAN_CONFIG= run bench_default 80 $PY -m mambalab.bench $TB bench.out=$OUT/bench_default32.json
  grep -E "mambalab|tokens" $LOGS/bench_default.log | head -n 5
  run scan_tests 90 $PY -m pytest -q tests/ops/test_triton_selective_scan.py -k "lanes_matches"
  tail -n 30 $LOGS/scan_tests.log | grep -E "^E |passed|failed" | head -n 20
  run mixer_gpu 90 $PY -m pytest -q tests/ops/test_triton_mamba_inner.py -m gpu
  tail -n 30 $LOGS/mixer_gpu.log | grep -E "^E |passed|failed" | head -n 20
  cat /tmp/kernels_done 2>/dev/null || stamp "kernel build not finished yet"
  tar czf $OUT/s7_check_logs.tgz -C $LOGS . 2>/dev/null
  stamp done
fi
if [ "$step" = bench ]; then
  export MAMBALAB_SCAN_CONFIG=$(cat /tmp/best_scan.json 2>/dev/null); echo "scan: $MAMBALAB_SCAN_CONFIG"
  $PY -c "import mamba_ssm, causal_conv1d; print('mamba_ssm', mamba_ssm.__version__)" || tail -n 5 /tmp/build.log
  full_bench 570
  stamp done
fi
if [ "$step" = ops ]; then
  # (a short call, no kernel build: NO_KERNELS=1) why the ops table's conv row is 5x the
  # kernels' time: scripts/profile_op_cases.py (the host's, it showed)
  run ops 240 $PY scripts/profile_op_cases.py --batch 8 --out $OUT/profile_op_cases.json
  cat $LOGS/ops.log | tail -n 20
  stamp done
fi
if [ "$step" = ops2 ]; then
  # the ops table with device times (timing.time_device), mambalab's Triton rows at full size;
  # the benchmark's GPU smoke test; where the host's time goes in a conv and a scan call
  run ops2 200 $PY -m mambalab.bench bench.implementations=[mambalab] 'bench.kernels=[triton]' bench.batch_sizes=[8] bench.ops=true bench.out=$OUT/bench_ops.json
  grep -E "│|┃" $LOGS/ops2.log | head -n 30
  run smoke 150 $PY -m pytest -q tests/test_bench.py -m gpu
  tail -n 20 $LOGS/smoke.log | grep -E "^E |passed|failed" | head
  run cprof 120 $PY scripts/profile_op_cases.py --batch 8 --cprofile
  grep -E "ncalls|^ +[0-9]|triton|conv" $LOGS/cprof.log | head -n 60
  cp $LOGS/cprof.log $OUT/ 2>/dev/null
  stamp done
fi
if [ "$step" = parts ]; then
  # the lanes backward launched in parts of at most one wave (batch_parts) against one launch:
  # the scan alone at B = 16 .. 64, then mambalab[triton] training at 32 x 2048 both ways; the
  # batch-parts test compiled; the ops table with the final timing (host over 3 calls)
  run parts 200 $PY scripts/bench_scan.py --impl lanes-parts --out $OUT
  grep -E "^B" $LOGS/parts.log
  TB="bench.implementations=[mambalab] bench.kernels=[triton] bench.batch_sizes=[32] bench.print_tables=true"
  run bench_parts 80 $PY -m mambalab.bench $TB bench.out=$OUT/bench_parts32.json
  grep -E "mambalab" $LOGS/bench_parts.log | head -n 3
  MAMBALAB_SCAN_CONFIG='{"lanes_bwd_wave_warps_per_sm": null}' run bench_one 80 $PY -m mambalab.bench $TB bench.out=$OUT/bench_one_launch32.json
  grep -E "mambalab" $LOGS/bench_one.log | head -n 3
  run parts_test 90 $PY -m pytest -q tests/ops/test_triton_selective_scan.py -k batch_parts
  tail -n 20 $LOGS/parts_test.log | grep -E "^E |passed|failed" | head
  run ops3 170 $PY -m mambalab.bench bench.implementations=[mambalab] 'bench.kernels=[triton]' bench.batch_sizes=[8] bench.ops=true bench.out=$OUT/bench_ops.json
  grep -E "│|┃" $LOGS/ops3.log | head -n 30
  stamp done
fi
if [ "$step" = parts6 ]; then
  # parts of at most 6 warps an SM (B=64: 4 x 16 rows, B=20: 2 x 10) against one launch
  PARTS_BATCHES=20,64 PARTS_WAVE=6 run parts6 150 $PY scripts/bench_scan.py --impl lanes-parts --out $OUT
  grep -E "^B" $LOGS/parts6.log
  stamp done
fi
if [ "$step" = b48 ]; then
  # batch_parts' final rule at B=64 and 48 (scan alone), then training at 48 x 2048
  PARTS_BATCHES=48,64 run parts_rule 100 $PY scripts/bench_scan.py --impl lanes-parts --out $OUT
  grep -E "^B" $LOGS/parts_rule.log
  run bench48 90 $PY -m mambalab.bench bench.implementations=[mambalab] 'bench.kernels=[triton]' bench.batch_sizes=[48] bench.out=$OUT/bench48.json
  grep -E "mambalab" $LOGS/bench48.log | head -n 3
  stamp done
fi
