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
block, warps: the row kernel's columns per iteration and warps per row (cross_entropy.py).
"""
from __future__ import annotations

from mambalab.ops.triton import config_from_env

CONFIG = {"cuda_impl": "triton", "chunk_mem_const": 4, "block": 4096, "warps": 8}
# MAMBALAB_LOSS_CONFIG='{"cuda_impl": "liger"}' (JSON) overrides CONFIG keys for a process.
config_from_env(CONFIG, "MAMBALAB_LOSS_CONFIG")
