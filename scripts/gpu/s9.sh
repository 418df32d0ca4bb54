#!/bin/bash
# Eighth session (2026-12-02): the lanes scan in 4-step chunks with fp16 saved states
# (selective_scan.CONFIG lanes_chunk, lanes_states). As run, the calls named configurations
# (lanes_states_dn, K8_f16, ...) of the code of their commits; after the session the layout
# follows from the dtype (fp16: (D, N)) and the variants are the defaults, K4 and fp32 (logs:
# docs/bench/h200-2026-12-02-s8-calls.log). Two calls back to back on one machine (the
# kernel build started by the first must survive for the second):
#   bash scripts/gpu/s9.sh ab 2>&1 | tee $OUT/s9_ab.log
#   bash scripts/gpu/s9.sh bench 2>&1 | tee $OUT/s9_bench.log
# ab: the mamba-ssm build detached; mambalab[triton] alone at 8 and 32 x 2048, one process per
# scan configuration (default, K=4, K=4 with fp32 states, default again); the full-size scan
# test compiled with K=4.
# bench: the scan per layer (bench_scan.py lanes-variants) at B=8 and 32; the cuda tests; the full
# benchmark (every implementation, ops table, profile) with SCAN (a JSON of CONFIG keys, default
# none) as MAMBALAB_SCAN_CONFIG.
# ab2 (a third call, fresh machine, no build): the scan per layer at B=8 and 32, and training at 8
# and 32 x 2048, for the defaults and the fp32 states and partials; the full-size scan test and
# the mixer's GPU tests compiled.
#   bash scripts/gpu/s9.sh ab2 2>&1 | tee $OUT/s9_ab2.log
# final (fresh machine, under 5 minutes of device time): the new defaults (fp16 states with the
# overflow watch, bf16 partials) trained at 8 and 32 x 2048, then the old ones (fp32 states and
# partials), then the scan's GPU tests (full size, batch parts, the overflow fallback) compiled.
#   bash scripts/gpu/s9.sh final 2>&1 | tee $OUT/s9_final.log
source scripts/gpu/e2e_env.sh
step=${1:?usage: s9.sh ab|bench|ab2|final}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
TB="bench.implementations=[mambalab] bench.kernels=[triton] bench.batch_sizes=[8,32] bench.print_tables=true"
if [ "$step" = ab ]; then
  (MAX_JOBS=8 setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 &)
  stamp "build started"
  ab() {  # name, scan config JSON
    MAMBALAB_SCAN_CONFIG="$2" run "$1" 150 $PY -m mambalab.bench $TB bench.out=$OUT/ab_$1.json
    grep -E "mambalab" $LOGS/$1.log | head -n 3
  }
  ab default '{}'
  ab k4f16 '{"lanes_chunk": 4}'
  ab k4f32 '{"lanes_chunk": 4, "lanes_states": "float32"}'
  ab default2 '{}'
  MAMBALAB_SCAN_CONFIG='{"lanes_chunk": 4}' run scan_gpu 150 \
    $PY -m pytest -q tests/ops/test_triton_selective_scan.py -k "gpu_full_size and lanes"
  tail -n 30 $LOGS/scan_gpu.log | grep -E "^E |passed|failed" | head -n 20
  cat /tmp/kernels_done 2>/dev/null || stamp "kernel build not finished"
  tar czf $OUT/s9_ab_logs.tgz -C $LOGS . 2>/dev/null
  stamp done
fi
if [ "$step" = bench ]; then
  wait_kernels
  export MAMBALAB_SCAN_CONFIG=${SCAN:-'{}'}
  echo "MAMBALAB_SCAN_CONFIG=$MAMBALAB_SCAN_CONFIG"
  full_bench 420
  VARIANTS_ONLY=bwd_pipe1,K4,fp32 VARIANT_BATCHES=8,32 run scan 150 $PY scripts/bench_scan.py --impl lanes-variants --out $OUT
  grep -E "^B|best" $LOGS/scan.log
  stamp done
fi
if [ "$step" = ab2 ]; then
  VARIANTS_ONLY=bwd_pipe1,fp32 VARIANT_BATCHES=8,32 run scan 150 $PY scripts/bench_scan.py --impl lanes-variants --out $OUT
  grep -E "^B|best" $LOGS/scan.log
  ab() {  # name, scan config JSON
    MAMBALAB_SCAN_CONFIG="$2" run "$1" 150 $PY -m mambalab.bench $TB bench.out=$OUT/ab2_$1.json
  }
  ab default '{}'
  ab fp32 '{"lanes_states": "float32", "lanes_dbc_16bit": false}'
  ab default2 '{}'
  run scan_gpu 120 $PY -m pytest -q tests/ops/test_triton_selective_scan.py -k "gpu_full_size and lanes or batch_parts"
  tail -n 30 $LOGS/scan_gpu.log | grep -E "^E |passed|failed" | head -n 20
  run mixer_gpu 150 $PY -m pytest -q tests/ops/test_triton_mamba_inner.py -k "gpu or kept_or_recomputed"
  tail -n 30 $LOGS/mixer_gpu.log | grep -E "^E |passed|failed" | head -n 20
  tar czf $OUT/s9_ab2_logs.tgz -C $LOGS . 2>/dev/null
  stamp done
fi
if [ "$step" = final ]; then
  run new 120 $PY -m mambalab.bench $TB bench.out=$OUT/final_new.json
  MAMBALAB_SCAN_CONFIG='{"lanes_states": "float32", "lanes_dbc_16bit": false}' run old 100 $PY -m mambalab.bench $TB bench.out=$OUT/final_old.json
  run scan_gpu 150 $PY -m pytest -q tests/ops/test_triton_selective_scan.py -k "gpu_full_size and lanes or batch_parts or overflow"
  tail -n 30 $LOGS/scan_gpu.log | grep -E "^E |passed|failed" | head -n 20
  tar czf $OUT/s9_final_logs.tgz -C $LOGS . 2>/dev/null
  stamp done
fi
