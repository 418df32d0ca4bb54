#!/bin/bash
# Issue 8's last run, for one call on one H100 (about 10 minutes): build mamba-ssm and
# causal-conv1d (transformers' fast path for MambaForCausalLM needs both), wait for them, then the
# seed's settings for 150 s of training on the same data as docs/results/e2e_cmp_ours (ours, run
# on 2026-11-28 with the same command but model=mamba_130m kernels=triton 16 x 2048 lr 1e-3),
# and the two curves side by side. Then, with the time left, the benchmark's mambalab[auto] row.
# Run as: bash scripts/gpu/seed_cmp.sh 2>&1 | tee $OUT/seed_cmp.log
source scripts/gpu/e2e_env.sh
if [ -z "$E2E_DRY" ]; then  # E2E_DRY=1: rehearse on a CPU (no build, tiny HF model, no benchmark)
  stamp "building the kernels (about 7 minutes)"
  MAX_JOBS=16 bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1
  cat /tmp/kernels_done
  $PY -c "import torch, selective_scan_cuda, causal_conv1d_cuda, mamba_ssm, causal_conv1d; print('HF fast path: mamba_ssm', mamba_ssm.__version__, 'causal_conv1d', causal_conv1d.__version__)" \
    || { tail -c 2000 /tmp/build-cc.log /tmp/build-ms.log; exit 1; }
fi
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
