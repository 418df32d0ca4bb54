#!/bin/bash
# Eleventh session (2026-12-02): what the fused mixer keeps (delta, y), the dB/dC partial sum in
# one Triton kernel, and the conv's time kernels with several groups a thread, on one H200.
# Calls: explore (a fresh machine), then final1 and final2 back to back on one machine (the
# kernel build final1 starts must survive for final2's benchmark; a machine stays warm 30 s):
#   bash scripts/gpu/s12.sh explore 2>&1 | tee $OUT/s12_explore.log
#   bash scripts/gpu/s12.sh final1 2>&1 | tee $OUT/s12_final1.log
#   bash scripts/gpu/s12.sh final2 2>&1 | tee $OUT/s12_final2.log
# explore: the new kernels' GPU tests; the conv's kernels per layer (scripts/bench_conv.py, with
#   the groups-a-thread variants) and the dB/dC sum against torch's (scripts/bench_dbc.py);
#   training, mambalab[triton] alone at 8 and 32 x 2048, one process per setting: nothing kept
#   (the tenth session's mixer), delta and y kept (today's default), then the conv variants;
#   a full-kernel-list profile (bench.profile_top=300) of today's default at 32 x 2048.
# final1: the mamba-ssm build detached; the GPU tests the changes touch; training A/B (the tenth
#   session's mixer and conv against today's defaults, each change alone); then waits for the
#   build.
# final2: the full benchmark (every implementation, ops table, profile) in one process.
# CONV: the conv setting final1's A/B and final2 run (MAMBALAB_CONV_CONFIG JSON; default: the code's).
source scripts/gpu/e2e_env.sh
step=${1:?usage: s12.sh explore|final1|final2}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
summary() { $PY scripts/gpu/summary.py "$1"; }  # a bench JSON's training rows, one line each
TB="bench.implementations=[mambalab] bench.kernels=[triton] bench.print_tables=false"
ab() {  # name, mixer config JSON, conv config JSON, batch sizes
  MAMBALAB_MIXER_CONFIG="$2" MAMBALAB_CONV_CONFIG="$3" \
    run "$1" 150 $PY -m mambalab.bench $TB "bench.batch_sizes=$4" bench.out=$OUT/ab_$1.json
  summary $OUT/ab_$1.json
}
NOKEEP='{"keep_delta": false, "keep_y": false}'
if [ "$step" = explore ]; then
  tests new_gpu 150 -m gpu tests/ops/test_triton_dbc_sum.py tests/ops/test_triton_causal_conv1d.py -k "dbc or time_kernels_full"
  run bench_conv 200 $PY scripts/bench_conv.py --out $OUT
  grep -E "^B|vs tile" $LOGS/bench_conv.log
  run bench_dbc 100 $PY scripts/bench_dbc.py --out $OUT
  cat $LOGS/bench_dbc.log
  ab nokeep "$NOKEEP" '{}' '[8,32]'
  ab keep '{}' '{}' '[8,32]'
  ab keep_g2w4 '{}' '{"time_fwd_groups": 2, "time_bwd_groups": 2, "time_warps": 4}' '[32]'
  ab keep_g2w8 '{}' '{"time_fwd_groups": 2, "time_bwd_groups": 2, "time_warps": 8}' '[32]'
  ab nokeep2 "$NOKEEP" '{}' '[32]'
  ab keep2 '{}' '{}' '[32]'
  run profile 150 $PY -m mambalab.bench $TB 'bench.batch_sizes=[32]' bench.profile=true bench.profile_top=300 bench.out=$OUT/profile.json
  $PY - $OUT/profile.json <<'PYEOF'
import json, sys
p = json.load(open(sys.argv[1]))["profile"]
print("kernel ms a step", round(p["kernel_ms_per_step"], 2))
for g in p["groups"]:
    print(f"  {g['group']:10s} {g['ms_per_step']:8.2f}")
for k in p["top_kernels"]:
    if k["group"] in ("other", "matmuls", "norm", "conv", "loss"):
        print(f"  {k['group']:8s} {k['ms_per_step']:7.3f} {k['calls_per_step']:4d}  {k['kernel'][:100]}")
PYEOF
  stamp done
fi
if [ "$step" = final1 ]; then
  (MAX_JOBS=12 setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 &)
  stamp "build started"
  tests new_gpu 200 -m gpu tests/ops/test_triton_dbc_sum.py tests/ops/test_triton_causal_conv1d.py tests/ops/test_triton_mamba_inner.py -k "dbc or time_kernels_full or full_size_gpu_matches"
  # the tenth session's mixer and conv (nothing kept, 1 group a thread in 8 warps) against
  # today's defaults; then each change alone at 32 x 2048
  OLDCONV='{"time_bwd_groups": 1, "time_bwd_warps": null}'
  ab f_old "$NOKEEP" "$OLDCONV" '[8,16,32]'
  ab f_new '{}' "${CONV:-{\}}" '[8,16,32]'
  ab f_keep_only '{}' "$OLDCONV" '[32]'
  ab f_conv_only "$NOKEEP" '{}' '[32]'
  ab f_new2 '{}' "${CONV:-{\}}" '[32]'
  tests gpu_rest 100 -m gpu tests/models/test_mamba_lm_gpu.py tests/test_bench.py -k "not generation_speed and not cuda and not mamba_ssm"
  for i in $(seq 100); do [ -f /tmp/kernels_done ] && break; [ $(( $(date +%s) - T0 )) -gt 530 ] && break; sleep 5; done
  cat /tmp/kernels_done 2>/dev/null || { stamp "kernel build not finished"; tail -n 3 /tmp/build.log; }
  stamp done
fi
if [ "$step" = final2 ]; then
  wait_kernels
  MAMBALAB_CONV_CONFIG="${CONV:-{\}}" full_bench 480
  tar czf $OUT/s12_final2_logs.tgz -C $LOGS . 2>/dev/null
  stamp done
fi
