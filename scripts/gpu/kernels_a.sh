#!/bin/bash
# GPU 0 during e2e call A (issue 7): the tile scan on the mixer's (C, B*L) views vs channel-last
# and contiguous inputs, with and without the backward's loads first; then Mamba-130M training
# throughput with the mixer's two in_proj layouts (scripts/ab_scan_impl.py). Writes $OUT/k_a.tgz.
# Run as: CUDA_VISIBLE_DEVICES=0 bash scripts/gpu/kernels_a.sh > $OUT/kernels_a.log 2>&1
source scripts/gpu/common.sh
K=/tmp/k_a; mkdir -p $K
stamp "scan GPU tests (full size, compiled)"
timeout 150 python3 -m pytest -q -x -p no:cacheprovider tests/ops/test_triton_selective_scan.py::test_matches_reference_gpu_full_size tests/ops/test_triton_mamba_inner.py::test_full_size_gpu_matches_composed_ops > $K/scan_tests.log 2>&1; stamp "scan tests rc=$? $(tail -1 $K/scan_tests.log)"
stamp "tile scan variants"
timeout 240 python3 scripts/bench_scan.py --impl tile-variants --out $K > $K/bench_scan_tile.log 2>&1; stamp "variants rc=$?"
grep -v "^\s*$" $K/bench_scan_tile.log | cut -c1-160
stamp "model A/B: in_proj layouts"
timeout 200 python3 scripts/ab_scan_impl.py --variants tile:channel_last tile:dbl --batch 16 --rounds 1 --out $K > $K/ab.log 2>&1; stamp "ab rc=$?"
cat $K/ab.log | cut -c1-200
tar czf $OUT/k_a.tgz -C /tmp k_a
