"""liger-kernel's fused linear cross-entropy (Triton, CUDA only) with explicit dtypes."""
from __future__ import annotations

import functools
import inspect

import torch


@functools.cache
def liger_unavailable_reason() -> str | None:
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss  # noqa: F401
    except Exception as exc:
        return f"liger-kernel does not import ({type(exc).__name__}: {exc}); pip install liger-kernel"
    return None


def liger_linear_cross_entropy(hidden, weight, targets, reduction="mean", ignore_index=-100):
    """Same contract as chunked_linear_cross_entropy for reduction mean|sum, on CUDA tensors."""
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    if reduction not in ("mean", "sum"):
        raise ValueError(f"the liger path supports reduction mean|sum, got {reduction!r}")
    # Liger's Function is not autocast-aware: cast both operands to the autocast dtype here and
    # run it with autocast off, so its matmuls see one dtype (it upcasts to fp32 for softmax).
    if torch.is_autocast_enabled("cuda"):
        dtype = torch.get_autocast_dtype("cuda")
        hidden, weight = hidden.to(dtype), weight.to(dtype)
    elif hidden.dtype != weight.dtype:
        hidden = hidden.to(weight.dtype)
    kwargs = dict(ignore_index=ignore_index, reduction=reduction)
    if "accum_dtype" in inspect.signature(LigerFusedLinearCrossEntropyLoss).parameters:
        # Sum the weight gradient over row chunks in fp32, not in the bf16 of the operands.
        kwargs["accum_dtype"] = torch.float32
    loss_fn = LigerFusedLinearCrossEntropyLoss(**kwargs)
    with torch.autocast("cuda", enabled=False):
        return loss_fn(weight, hidden.contiguous(), targets.contiguous()).float()
