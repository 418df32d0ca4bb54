#!/bin/bash
# Third session (2026-12-01, one H200): three calls on one warm machine, each sent as soon as the
# one before returns (the kernel build lives only while the machine is warm).
#   bash scripts/gpu/s3.sh kernels 2>&1 | tee $OUT/s3_kernels.log
#       the mamba-ssm / causal-conv1d build detached; on the GPU meanwhile: the scan's full-size
#       tests, scripts/bench_scan.py --impl seg (the step kernels with time segments against the
#       tile kernels, as the mixer runs them; writes $OUT/step_best.json), and the end-to-end A/B
#       of the two scan implementations (scripts/ab_scan_impl.py); then waits for the build.
#   SCAN='{"impl": ...}' bash scripts/gpu/s3.sh cmp 2>&1 | tee $OUT/s3_cmp.log
#       issue 8's seed comparison on this card: the seed's settings (HF MambaForCausalLM on
#       mamba-ssm's kernels, gradient checkpointing, 4 x 2048 x 8, lr 5e-4) and ours (16 x 2048,
#       lr 1e-3, kernels=triton with $SCAN as the scan's CONFIG), 150 s of training each, same
#       data, then compare.png.
#   SCAN='{"impl": ...}' bash scripts/gpu/s3.sh bench 2>&1 | tee $OUT/s3_bench.log
#       python -m mambalab.bench, every implementation, B=8 and 16, ops and profile.
#   bash scripts/gpu/s3.sh induction 2>&1 | tee $OUT/s3_induction.log   (a fresh machine is fine)
#       induction heads trained ~7x longer than on 2026-11-28 (270 s of steps), then accuracy at
#       lengths 2^6 to 2^20 (streaming, fp32), for the paper's extrapolation.
source scripts/gpu/e2e_env.sh
step=${1:?usage: s3.sh kernels|cmp|bench|induction|seg2}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
if [ "$step" = seg2 ]; then  # the step kernels after the layout fix, in ~3.5 minutes
  SEG_QUICK=1 run seg_sweep 200 $PY scripts/bench_scan.py --impl seg --out $OUT
  grep -E "^B|best|check" $LOGS/seg_sweep.log | tail -n 30
  run ab 75 $PY scripts/ab_scan_impl.py --batch 16 --rounds 1 --variants tile:dbl step:dbl --step-config $OUT/step_best.json --out $OUT
  grep variant $LOGS/ab.log; cp $LOGS/*.log $OUT/ 2>/dev/null
  stamp done; exit 0
fi
if [ "$step" = induction ]; then
  IH=$OUTS/induction_long
  run induction 330 $PY -m mambalab.train experiment=induction_heads trainer.max_steps=30000 \
    trainer.max_time_s=270 trainer.progress_bar=false logger=[jsonl] hydra.run.dir=$IH
  grep '"validation"' $IH/metrics.jsonl | cut -c1-100 | tail -n 8; tail -n 3 $LOGS/induction.log
  run induction_eval 200 $PY -m mambalab.evaluate "ckpt='$IH'" precision=fp32 max_batches=4 \
    "eval_lengths=[64,128,256,512,1024,2048,4096,8192,16384,65536,262144,1048576]" out=$IH/eval
  tail -n 25 $LOGS/induction_eval.log
  cp $IH/metrics.jsonl $OUT/induction_metrics.jsonl; cp $IH/eval/*.json $OUT/ 2>/dev/null
  cp $LOGS/induction*.log $OUT/
  stamp done; exit 0
fi
if [ "$step" = kernels ]; then
  (MAX_JOBS=10 setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 &)
  stamp "build started"
  run scan_tests 200 $PY -m pytest -q -x tests/ops/test_triton_selective_scan.py tests/ops/test_triton_mamba_inner.py -m "gpu or not gpu"
  tail -n 3 $LOGS/scan_tests.log
  run seg_sweep 330 $PY scripts/bench_scan.py --impl seg --out $OUT
  grep -E "^B|best|check" $LOGS/seg_sweep.log | tail -n 60
  run ab 200 $PY scripts/ab_scan_impl.py --batch 16 8 --rounds 1 --variants tile:dbl step:dbl --step-config $OUT/step_best.json --out $OUT
  grep variant $LOGS/ab.log
  cat /tmp/kernels_done 2>/dev/null || stamp "kernel build not finished yet"
  cp $LOGS/*.log $OUT/ 2>/dev/null
  stamp done; exit 0
fi
wait_kernels() {  # the build of call 1
  for i in $(seq 80); do [ -f /tmp/kernels_done ] && break; sleep 5; done
  cat /tmp/kernels_done 2>/dev/null || stamp "kernel build not finished"
  $PY -c "import torch, selective_scan_cuda, causal_conv1d_cuda, mamba_ssm, causal_conv1d; print('kernels: mamba_ssm', mamba_ssm.__version__, 'causal_conv1d', causal_conv1d.__version__)" \
    || { tail -c 1500 /tmp/build-cc.log /tmp/build-ms.log; }
}
export MAMBALAB_SCAN_CONFIG=${SCAN:-}
if [ "$step" = cmp ]; then
  CMP="$BASE scheduler=constant trainer.max_steps=$CMP_STEPS trainer.max_time_s=$CMP_TIME trainer.eval_max_batches=$EVALB trainer.checkpoint_every=null"
  OURS=$OUTS/e2e_cmp_ours; SEED=$OUTS/e2e_cmp_seed
  run cmp_ours 280 $PY -m mambalab.train $CMP $M130 data.batch_size=$B optimizer.lr=1e-3 \
    scheduler.warmup_steps=30 trainer.eval_every=$CMP_EVAL_OURS name=e2e_cmp_ours hydra.run.dir=$OURS
  tail -n 4 $LOGS/cmp_ours.log
  wait_kernels
  run cmp_seed 280 $PY -m mambalab.train $CMP $MHF data.batch_size=$BSEED trainer.grad_accum_steps=8 \
    optimizer.lr=5e-4 scheduler.warmup_steps=15 trainer.eval_every=$CMP_EVAL_SEED name=e2e_cmp_seed hydra.run.dir=$SEED
  tail -n 4 $LOGS/cmp_seed.log
  $PY -m mambalab.eval.compare $SEED $OURS \
    --labels "seed: HF MambaForCausalLM 4x2048x8 lr 5e-4 + checkpointing,ours: mambalab 16x2048 lr 1e-3" \
    --title "Mamba-130M, ${CMP_TIME} s of training each, same data, one H200" \
    --out "$OUT/compare.png" | tee "$OUT/compare.md"
  tar czf "$OUT/cmp_runs.tgz" -C "$ROOT" $LOGS $(find $OUTS/e2e_cmp_* \( -name metrics.jsonl -o -name summary.json -o -name config.yaml -o -name train.log \) 2>/dev/null)
  stamp done; exit 0
fi
if [ "$step" = bench ]; then
  wait_kernels
  run bench 560 $PY -m mambalab.bench bench.ops=true bench.profile=true 'bench.kernels=[triton,cuda,auto]' bench.out=$OUT/bench.json
  tail -n 40 $LOGS/bench.log
  $PY -m mambalab.benchmarks.markdown $OUT/bench.json > $OUT/bench.md 2>&1; cat $OUT/bench.md
  stamp done
fi
