#!/bin/bash
# GPU call 1 (one H100): start the mamba-ssm build detached; meanwhile test the Triton path, train
# segment 1 of the 130M LM run, time streaming evaluation on its checkpoint, and induction heads.
source scripts/gpu/common.sh
setsid nohup bash scripts/gpu/build_kernels.sh .whl > /tmp/build.log 2>&1 < /dev/null &
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/card.txt
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)"
stamp "GPU tests, Triton path"
timeout 170 python3 -m pytest -q -m gpu -p no:cacheprovider tests/ops/test_triton_selective_scan.py tests/ops/test_triton_causal_conv1d.py tests/ops/test_triton_rms_norm.py tests/ops/test_triton_mamba_inner.py tests/eval tests/data > $OUT/tests1.log 2>&1; stamp "tests1 rc=$? $(tail -1 $OUT/tests1.log)"
stamp "LM segment 1"
timeout 170 python3 -m mambalab.train $LM trainer.interrupt_at_step=150 > $OUT/lm_seg1.log 2>&1; stamp "lm seg1 rc=$?"; grep -E "step 150|validation|tok/s|interrupt|Error" $OUT/lm_seg1.log | tail -8
RUN=$(dirname "$(find outputs/wiki130m -name summary.json | head -1)")
stamp "streaming eval of $RUN"
timeout 90 python3 -m mambalab.evaluate "ckpt='$RUN'" mode=streaming seq_len=32768 batch_size=8 out=$OUT/eval_stream1 > $OUT/eval1.log 2>&1; stamp "eval rc=$?"; tail -15 $OUT/eval1.log
stamp "induction heads"
timeout 110 python3 -m mambalab.train experiment=induction_heads trainer.max_steps=2500 trainer.progress_bar=false > $OUT/ih.log 2>&1; stamp "ih rc=$?"; grep -iE "accuracy|validation" $OUT/ih.log | tail -6
cat /tmp/kernels_done 2>/dev/null || { stamp "kernel build still running"; tail -n 2 /tmp/build-ms.log /tmp/build-cc.log; }
tar czf $OUT/runs1.tgz $(find outputs -name metrics.jsonl -o -name summary.json -o -name metrics.json | tr '\n' ' ') 2>/dev/null
