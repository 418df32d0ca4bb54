#!/bin/bash
# GPU 0 during e2e call B (issues 2 and 7), once mamba-ssm and causal-conv1d are built: the cuda
# path against the reference and against mamba_ssm's MambaLMHeadModel, generation speed; then
# `python -m mambalab.bench` (every implementation, ops, profile). Writes $OUT/k_b.tgz.
# Run as: CUDA_VISIBLE_DEVICES=0 bash scripts/gpu/kernels_b.sh > $OUT/kernels_b.log 2>&1
source scripts/gpu/common.sh
K=/tmp/k_b; mkdir -p $K
for i in $(seq 60); do [ -f /tmp/kernels_done ] && break; sleep 5; done
cat /tmp/kernels_done; cp /tmp/build-ms.log /tmp/build-cc.log $K/ 2>/dev/null
python3 -c "import torch, selective_scan_cuda, causal_conv1d_cuda, mamba_ssm, causal_conv1d; print('mamba_ssm', mamba_ssm.__version__, 'causal_conv1d', causal_conv1d.__version__)"
stamp "GPU tests: cuda path, models"
timeout 200 python3 -m pytest -q -s -m gpu -p no:cacheprovider tests/ops/test_ops_cuda_gpu.py tests/models > $K/tests_b.log 2>&1; stamp "tests rc=$? $(tail -1 $K/tests_b.log)"
grep -E "generation|tokens/s|PASS|FAIL|Error|skipped" $K/tests_b.log | head -20
stamp "bench"
timeout 330 python3 -m mambalab.bench bench.ops=true bench.profile=true bench.out=$K/bench.json > $K/bench.log 2>&1; stamp "bench rc=$?"
python3 -m mambalab.benchmarks.markdown $K/bench.json > $K/bench.md 2>&1; head -40 $K/bench.md
tar czf $OUT/k_b.tgz -C /tmp k_b
