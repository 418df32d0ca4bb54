#!/bin/bash
# GPU call B of issue 8's last runs (the same 4-H100 machine as call A, ~6 of 9 minutes), on GPUs
# 1-3 only: the coordinator's own work has GPU 0. Run as
#   (CUDA_VISIBLE_DEVICES=0 <coordinator's work> ...) & bash scripts/gpu/e2e_b.sh 2>&1 | tee $OUT/e2e_b.log; wait
#   GPU 1: the seed's settings: model=hf_mamba_130m (transformers' MambaForCausalLM on mamba-ssm's
#          kernels, gradient checkpointing), batch 4 x 2048 x accumulation 8, lr 5e-4;
#   GPU 2: ours: model=mamba_130m kernels=triton, batch 16 x 2048, lr 1e-3;
#          both for trainer.max_time_s=150 s of training on the same data, the whole validation
#          split every ~1.6M tokens, then `python -m mambalab.eval.compare` (curves against tokens
#          and against training seconds, side by side: compare.png + compare.md);
#   GPU 3: selective copying (experiment=selective_copying: length 4096, 16 data tokens, 2 x 64
#          Mamba, batch 64, lr 1e-3, cosine over 12k steps) for at most 300 s of training, then
#          `python -m mambalab.evaluate` on its checkpoint.
# $OUT gets: e2e_b.log (through tee), e2e_b.tgz (logs, metrics, summaries, tables), compare.png.
source scripts/gpu/e2e_env.sh
[ -z "$E2E_DRY" ] && nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee "$LOGS/cards_b.txt"

# Selective copying first: it needs nothing from the kernel build and runs longest.
SCRUN=$OUTS/e2e_selective_copying
(CUDA_VISIBLE_DEVICES=3 run selective_copying 370 $PY -m mambalab.train experiment=selective_copying $SC \
   trainer.progress_bar=false logger=[jsonl] name=e2e_selective_copying hydra.run.dir=$SCRUN
 CUDA_VISIBLE_DEVICES=3 run selective_copying_eval 90 $PY -m mambalab.evaluate "ckpt='$SCRUN'" $SC_EVAL out=$SCRUN/eval
 grep -E '"validation"' $SCRUN/metrics.jsonl | cut -c1-110 | tail -4; tail -n 6 "$LOGS/selective_copying_eval.log") &
P_SC=$!

# Ours: the LM run of docs/results.md, constant lr after warm-up (the time budget, not a step
# count, ends it, so a decaying schedule would depend on a guess of the steps).
CMP="$BASE scheduler=constant trainer.max_steps=$CMP_STEPS trainer.max_time_s=$CMP_TIME trainer.eval_max_batches=$EVALB trainer.checkpoint_every=null"
OURS=$OUTS/e2e_cmp_ours
(CUDA_VISIBLE_DEVICES=2 run cmp_ours 330 $PY -m mambalab.train $CMP $M130 data.batch_size=$B optimizer.lr=1e-3 \
   scheduler.warmup_steps=30 trainer.eval_every=$CMP_EVAL_OURS name=e2e_cmp_ours hydra.run.dir=$OURS) &
P_OURS=$!

# The seed's run needs the kernels built during call A (HF's fast path: mamba-ssm AND
# causal-conv1d). Without them HF falls back to its parallel scan in PyTorch (use_mambapy).
HFX=""
if [ -z "$E2E_DRY" ]; then
  for i in $(seq 24); do [ -f /tmp/kernels_done ] && break; sleep 5; done
  cat /tmp/kernels_done 2>/dev/null || stamp "kernel build not finished"
  cp /tmp/build-ms.log /tmp/build-cc.log "$LOGS/" 2>/dev/null
  $PY -c "import torch, selective_scan_cuda, causal_conv1d_cuda, mamba_ssm, causal_conv1d; print('HF fast path: mamba_ssm', mamba_ssm.__version__, 'causal_conv1d', causal_conv1d.__version__)" \
    || { HFX="model.use_mambapy=true"; stamp "mamba-ssm/causal-conv1d not importable: the seed's run uses HF's mambapy path (slower; say so in the results)"; }
fi
SEED=$OUTS/e2e_cmp_seed
(CUDA_VISIBLE_DEVICES=1 run cmp_seed 330 $PY -m mambalab.train $CMP $MHF $HFX data.batch_size=$BSEED \
   trainer.grad_accum_steps=8 optimizer.lr=5e-4 scheduler.warmup_steps=15 trainer.eval_every=$CMP_EVAL_SEED \
   name=e2e_cmp_seed hydra.run.dir=$SEED) &
P_SEED=$!

wait $P_OURS $P_SEED
for r in $SEED $OURS; do $PY -c "import json,sys; s=json.load(open(sys.argv[1])); print(sys.argv[1], {k: s.get(k) for k in ('status','stopped_by','step','tokens','train_time_s','wall_time_s','kernels')})" $r/summary.json; done
$PY -m mambalab.eval.compare $SEED $OURS --labels "seed: HF MambaForCausalLM 4x2048x8 lr 5e-4,ours: mambalab 16x2048 lr 1e-3" \
  --title "Mamba-130M, ${CMP_TIME} s of training each, same data (Wikipedia sample; wiki.valid.raw)" \
  --out "$LOGS/compare.png" | tee "$LOGS/compare_stdout.md"
cp "$LOGS/compare.png" "$OUT/compare.png" 2>/dev/null
wait $P_SC

stamp "packing"
tar czf "$OUT/e2e_b.tgz" -C "$ROOT" e2e_logs $(cd "$ROOT" && find outputs/e2e_cmp_seed outputs/e2e_cmp_ours outputs/e2e_selective_copying \
  \( -name metrics.jsonl -o -name summary.json -o -name config.yaml -o -name metrics.json -o -name train.log \) 2>/dev/null)
ls -la "$OUT"; stamp "call B done"
