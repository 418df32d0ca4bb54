"""Settings of the fused linear cross-entropy on CUDA (A/B runs override them per process).

cuda_impl: what ``impl="auto"`` takes on a GPU: "triton" (mambalab's row kernel,
    triton_fused.py) or "liger" (liger-kernel's fused loss; needs liger-kernel). The measured
    step times that chose the default are in docs/performance.md.
chunk_mem_const: the budget for one chunk's logits, in units of the chunk's (rows x hidden)
    input, for both drivers. At liger's default, 1, a vocabulary V over hidden size H makes
    about V / H chunks whatever the batch (64 for Mamba-130M: 50,280 / 768, so 256 rows a chunk
    at 8 x 2048), and each chunk's weight-gradient addmm reads and writes the whole fp32 (V, H)
    gradient: 64 x 309 MB a step, which held that matmul to 450 TFLOP/s where the head's other
    two ran at 670-740 on an H200 (seventh session's profile, docs/performance.md). 4: about 16
    chunks, 412 MB of transient logits at 32 x 2048, 103 MB at 8 x 2048; measured there with
    liger, the training step at 32 x 2048 went from 255.5 to 249.9 ms with the same peak memory
    (8: 250.1). Ignored by a liger without the argument.
block, warps: the row kernel's columns per iteration and warps per row (cross_entropy.py). On an
    H200 (scripts/bench_loss.py, one 4,096 x 50,280 bf16 chunk, 0.82 GB read and written):
    8,192 / 32 took 0.252 ms (3.3 TB/s), 16,384 / 32 0.255, 8,192 / 16 0.318, 4,096 / 8 0.366,
    4,096 / 4 0.375, liger's kernel 0.529. With fewer rows in flight a row read by the first
    pass is still in L2 for the second (at 8 warps a row, 8 rows an SM: 105 MB in flight, twice
    the L2).
"""
from __future__ import annotations

from mambalab.ops.triton import config_from_env

CONFIG = {"cuda_impl": "triton", "chunk_mem_const": 4, "block": 8192, "warps": 32}
# MAMBALAB_LOSS_CONFIG='{"cuda_impl": "liger"}' (JSON) overrides CONFIG keys for a process.
config_from_env(CONFIG, "MAMBALAB_LOSS_CONFIG")
