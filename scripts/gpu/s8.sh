#!/bin/bash
# Seventh session (2026-12-02): the fused mixer keeps its conv output for the backward
# (mamba_inner.CONFIG["keep_conv_out"]), and the same-run benchmark against mamba_ssm that the
# sixth session could not run. Two calls, back to back on one machine (the build must survive):
#   bash scripts/gpu/s8.sh check 2>&1 | tee $OUT/s8_check.log
#   bash scripts/gpu/s8.sh bench 2>&1 | tee $OUT/s8_bench.log
# check: the kernel build detached; mambalab[triton] alone at 8 and 32 x 2048 with the conv
# output kept, recomputed, kept again (one process each: the A/B and its spread); the mixer's
# GPU tests and the new keep/recompute test compiled; the lanes scan tests compiled; the
# benchmark's GPU smoke test; then it waits for the build.
# bench: the cuda-path GPU tests (they need the build), then the full benchmark (every
# implementation, ops table, profile) with today's defaults.
# tests (a third call, fresh machine, no build needed): the mixer's GPU memory test as rewritten
# after the check call (keep and recompute against the composition), the keep/recompute test,
# the full-size lanes scan test and the batch-parts test compiled.
#   bash scripts/gpu/s8.sh tests 2>&1 | tee $OUT/s8_tests.log
# loss (fresh machine, no build): liger's chunk budget (ops/cross_entropy/liger.py CONFIG
# chunk_mem_const) 4 (the new default), 1 (liger's), 8, then 4 again with the profile, each
# mambalab[triton] alone at 8 and 32 x 2048 in its own process; the liger GPU test first.
#   bash scripts/gpu/s8.sh loss 2>&1 | tee $OUT/s8_loss.log
# norm (fresh machine, no build): scripts/bench_norm.py (rms_norm.CONFIG variants at 16,384 and
# 65,536 rows), the norm tests compiled with the fastest, then mambalab[triton] at 32 x 2048
# with the fastest, the default, the fastest again (one process each).
#   bash scripts/gpu/s8.sh norm 2>&1 | tee $OUT/s8_norm.log
source scripts/gpu/e2e_env.sh
step=${1:?usage: s8.sh check|bench|tests|loss|norm}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
if [ "$step" = check ]; then
  (MAX_JOBS=10 setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 &)
  stamp "build started"
  TB="bench.implementations=[mambalab] bench.kernels=[triton] bench.batch_sizes=[8,32] bench.print_tables=true"
  run keep1 120 $PY -m mambalab.bench $TB bench.out=$OUT/bench_keep1.json
  grep -E "mambalab" $LOGS/keep1.log | head -n 4
  MAMBALAB_MIXER_CONFIG='{"keep_conv_out": false}' run recompute 120 $PY -m mambalab.bench $TB bench.out=$OUT/bench_recompute.json
  grep -E "mambalab" $LOGS/recompute.log | head -n 4
  run keep2 120 $PY -m mambalab.bench $TB bench.out=$OUT/bench_keep2.json
  grep -E "mambalab" $LOGS/keep2.log | head -n 4
  run mixer_gpu 150 $PY -m pytest -q tests/ops/test_triton_mamba_inner.py -k "gpu or kept_or_recomputed"
  tail -n 30 $LOGS/mixer_gpu.log | grep -E "^E |passed|failed" | head -n 20
  run smoke 120 $PY -m pytest -q tests/test_bench.py -m gpu
  tail -n 20 $LOGS/smoke.log | grep -E "^E |passed|failed" | head
  run scan_tests 150 $PY -m pytest -q -x tests/ops/test_triton_selective_scan.py -k "lanes"
  tail -n 30 $LOGS/scan_tests.log | grep -E "^E |passed|failed" | head -n 20
  for i in $(seq 100); do [ -f /tmp/kernels_done ] && break; sleep 5; done
  cat /tmp/kernels_done 2>/dev/null || stamp "kernel build not finished"
  # the built wheels come back (files of at most 16 MiB do): carry them as .kw/ next session and
  # build_kernels.sh installs them instead of building (6 of the 30 minutes of device time)
  cp /root/kernel-wheels/*.whl $OUT/ 2>/dev/null; ls -la /root/kernel-wheels 2>/dev/null
  tar czf $OUT/s8_check_logs.tgz -C $LOGS . 2>/dev/null
  stamp done
fi
if [ "$step" = bench ]; then
  $PY -c "import torch, mamba_ssm, causal_conv1d; print('mamba_ssm', mamba_ssm.__version__)" || tail -n 5 /tmp/build.log
  run cuda_tests 100 $PY -m pytest -q tests/ops/test_ops_cuda_gpu.py
  tail -n 20 $LOGS/cuda_tests.log | grep -E "^E |passed|failed|skipped" | head
  full_bench 480
  stamp done
fi
if [ "$step" = tests ]; then
  run mixer_gpu 200 $PY -m pytest -q tests/ops/test_triton_mamba_inner.py -k "${MIXER_K:-gpu or kept_or_recomputed}"
  tail -n 30 $LOGS/mixer_gpu.log | grep -E "^E |passed|failed" | head -n 20
  run scan_gpu 200 $PY -m pytest -q tests/ops/test_triton_selective_scan.py -k "gpu_full_size and lanes or batch_parts"
  tail -n 30 $LOGS/scan_gpu.log | grep -E "^E |passed|failed" | head -n 20
  stamp done
fi
if [ "$step" = loss ]; then
  run loss_gpu 150 $PY -m pytest -q tests/models/test_mamba_lm_gpu.py -k liger
  tail -n 20 $LOGS/loss_gpu.log | grep -E "^E |passed|failed|skipped" | head
  TB="bench.implementations=[mambalab] bench.kernels=[triton] bench.batch_sizes=[8,32] bench.print_tables=true"
  run c4 150 $PY -m mambalab.bench $TB bench.out=$OUT/loss_c4.json
  grep -E "mambalab" $LOGS/c4.log | head -n 3
  MAMBALAB_LOSS_CONFIG='{"chunk_mem_const": 1}' run c1 100 $PY -m mambalab.bench $TB bench.out=$OUT/loss_c1.json
  grep -E "mambalab" $LOGS/c1.log | head -n 3
  MAMBALAB_LOSS_CONFIG='{"chunk_mem_const": 8}' run c8 100 $PY -m mambalab.bench $TB bench.out=$OUT/loss_c8.json
  grep -E "mambalab" $LOGS/c8.log | head -n 3
  run c4b 120 $PY -m mambalab.bench $TB bench.profile=true bench.out=$OUT/loss_c4b.json
  grep -E "mambalab|│" $LOGS/c4b.log | head -n 40
  stamp done
fi
if [ "$step" = norm ]; then
  run norm 150 $PY scripts/bench_norm.py --out $OUT
  grep -E "M=|best" $LOGS/norm.log
  BEST=$(cat $OUT/best_norm.json 2>/dev/null); echo "best: $BEST"
  if [ -n "$BEST" ] && [ "$BEST" != "{}" ]; then
    MAMBALAB_NORM_CONFIG=$BEST run norm_tests 90 $PY -m pytest -q tests/ops/test_triton_rms_norm.py
    tail -n 20 $LOGS/norm_tests.log | grep -E "^E |passed|failed" | head
    TB="bench.implementations=[mambalab] bench.kernels=[triton] bench.batch_sizes=[32] bench.print_tables=true"
    MAMBALAB_NORM_CONFIG=$BEST run nbest 120 $PY -m mambalab.bench $TB bench.out=$OUT/norm_best.json
    grep -E "mambalab" $LOGS/nbest.log | head -n 2
    run ndefault 70 $PY -m mambalab.bench $TB bench.out=$OUT/norm_default.json
    grep -E "mambalab" $LOGS/ndefault.log | head -n 2
    MAMBALAB_NORM_CONFIG=$BEST run nbest2 70 $PY -m mambalab.bench $TB bench.out=$OUT/norm_best2.json
    grep -E "mambalab" $LOGS/nbest2.log | head -n 2
  fi
  stamp done
fi
