#!/bin/bash
# GPU call 2 (the same warm H100): with mamba-ssm built, the cuda path against the reference and
# mamba_ssm, the benchmark (all implementations, ops, profile), LM segment 2 (resumed), its eval.
source scripts/gpu/common.sh
for i in $(seq 60); do [ -f /tmp/kernels_done ] && break; sleep 5; done
cat /tmp/kernels_done; cp /tmp/build-ms.log /tmp/build-cc.log $OUT/ 2>/dev/null
python3 -c "import torch, selective_scan_cuda, causal_conv1d_cuda, mamba_ssm; print('mamba_ssm', mamba_ssm.__version__)"
stamp "GPU tests, cuda path"
timeout 150 python3 -m pytest -q -s -m gpu -p no:cacheprovider tests/ops/test_ops_cuda_gpu.py tests/models tests/training -k 'not induction and not two_gpu' > $OUT/tests2.log 2>&1; stamp "tests2 rc=$? $(tail -1 $OUT/tests2.log)"; grep -E "generation|tokens/s|FAILED|Error" $OUT/tests2.log | head -12
stamp "130M through the loop with the mamba-ssm kernels"
timeout 100 python3 -m mambalab.train name=loop_cuda '~experiment' model=mamba_130m model.kernels=cuda data=synthetic data.seq_len=2048 data.batch_size=16 tokenizer=byte trainer.max_steps=40 trainer.log_every=10 trainer.eval_every=null trainer.eval_max_batches=2 trainer.checkpoint_every=null trainer.progress_bar=false logger=[jsonl] > $OUT/loop_cuda.log 2>&1; stamp "loop cuda rc=$?"; grep -E "tok/s|kernels" $OUT/loop_cuda.log | tail -4
stamp "bench"
timeout 260 python3 -m mambalab.bench bench.ops=true bench.profile=true bench.out=$OUT/bench.json > $OUT/bench.log 2>&1; stamp "bench rc=$?"; python3 -m mambalab.benchmarks.markdown $OUT/bench.json > $OUT/bench.md 2>&1; head -30 $OUT/bench.md
stamp "LM segment 2 (resume)"
timeout 130 python3 -m mambalab.train $LM > $OUT/lm_seg2.log 2>&1; stamp "lm seg2 rc=$?"; grep -E "resum|validation|tok/s|Error" $OUT/lm_seg2.log | tail -6
RUN=$(dirname "$(find outputs/wiki130m -name summary.json | head -1)")
timeout 60 python3 -m mambalab.evaluate "ckpt='$RUN'" mode=streaming seq_len=32768 batch_size=8 out=$OUT/eval_stream2 > $OUT/eval2.log 2>&1; stamp "eval rc=$?"; tail -12 $OUT/eval2.log
tar czf $OUT/runs2.tgz $(find outputs -name metrics.jsonl -o -name summary.json -o -name metrics.json | tr '\n' ' ') 2>/dev/null
