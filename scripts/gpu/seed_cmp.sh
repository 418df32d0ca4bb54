#!/bin/bash
# Issue 8's last run, in two calls on one H100, the second sent as soon as the first returns (the
# machine keeps the build only while it is warm):
#   bash scripts/gpu/seed_cmp.sh build   # ~7 min: mamba-ssm and causal-conv1d (transformers' fast
#                                        # path for MambaForCausalLM needs both), waited for
#   bash scripts/gpu/seed_cmp.sh run     # ~5 min: the seed's settings for 150 s of training on the
#       same data as docs/results/e2e_cmp_ours (ours, 2026-11-28: the same command with
#       model=mamba_130m kernels=triton 16 x 2048 lr 1e-3), both curves side by side, then the
#       benchmark's mambalab[auto] row beside triton, cuda and mamba_ssm.
# Each as: bash scripts/gpu/seed_cmp.sh STEP 2>&1 | tee $OUT/seed_cmp_STEP.log
# E2E_DRY=1 ... run: rehearse the second on a CPU (tiny HF model, no benchmark).
source scripts/gpu/e2e_env.sh
step=${1:?usage: seed_cmp.sh build|run}
if [ "$step" = build ]; then
  stamp "building the kernels (about 7 minutes)"
  MAX_JOBS=16 bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1
  cat /tmp/kernels_done; cp /tmp/build-cc.log /tmp/build-ms.log "$OUT/" 2>/dev/null
fi
if [ -z "$E2E_DRY" ]; then
  $PY -c "import torch, selective_scan_cuda, causal_conv1d_cuda, mamba_ssm, causal_conv1d; print('HF fast path: mamba_ssm', mamba_ssm.__version__, 'causal_conv1d', causal_conv1d.__version__)" \
    || { tail -c 2000 /tmp/build-cc.log /tmp/build-ms.log; exit 1; }
fi
[ "$step" = build ] && { stamp "built; send the run step now"; exit 0; }
SEED=$OUTS/e2e_cmp_seed
CMP="$BASE scheduler=constant trainer.max_steps=$CMP_STEPS trainer.max_time_s=$CMP_TIME trainer.eval_max_batches=$EVALB trainer.checkpoint_every=null"
run cmp_seed 260 $PY -m mambalab.train $CMP $MHF data.batch_size=$BSEED trainer.grad_accum_steps=8 \
  optimizer.lr=5e-4 scheduler.warmup_steps=15 trainer.eval_every=$CMP_EVAL_SEED name=e2e_cmp_seed hydra.run.dir=$SEED
$PY -m mambalab.eval.compare $SEED docs/results/e2e_cmp_ours \
  --labels "seed: HF MambaForCausalLM 4x2048x8 lr 5e-4 + checkpointing,ours: mambalab 16x2048 lr 1e-3" \
  --title "Mamba-130M, ${CMP_TIME} s of training each, same data (Wikipedia sample; wiki.valid.raw)" \
  --out "$OUT/compare.png" | tee "$OUT/compare_stdout.md"
tar czf "$OUT/seed_run.tgz" -C "$ROOT" $(cd "$ROOT" && find outputs/e2e_cmp_seed \( -name metrics.jsonl -o -name summary.json -o -name config.yaml -o -name train.log \) 2>/dev/null)
[ -n "$E2E_DRY" ] && { stamp "done (dry)"; exit 0; }
run bench_auto 120 $PY -m mambalab.bench bench.batch_sizes=[16] 'bench.implementations=[mambalab,mamba_ssm]' 'bench.kernels=[auto,triton,cuda]' bench.out=$OUT/bench_auto.json
$PY -m mambalab.benchmarks.markdown $OUT/bench_auto.json 2>&1 | head -12
stamp "done"
