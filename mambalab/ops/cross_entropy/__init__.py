"""Cross-entropy of a linear head without materialising the fp32 logits.

On CUDA (reduction mean|sum): mambalab's Triton row kernel (triton_fused.py) or liger-kernel's
fused loss, as ``CONFIG["cuda_impl"]`` says (config.py); else a chunked PyTorch version.
"""
from __future__ import annotations

import torch

from mambalab.ops.cross_entropy.chunked import chunked_linear_cross_entropy
from mambalab.ops.cross_entropy.config import CONFIG
from mambalab.ops.cross_entropy.liger import liger_linear_cross_entropy, liger_unavailable_reason
from mambalab.ops.cross_entropy.triton_fused import triton_linear_cross_entropy

IMPLS = ("auto", "triton", "liger", "chunked")


def _triton_unavailable_reason(device: torch.device) -> str | None:
    from mambalab.ops.triton import unavailable_reason

    return unavailable_reason(device)


def resolve_cross_entropy(device: torch.device | str, reduction: str = "mean") -> str:
    """On CUDA with reduction mean|sum: CONFIG["cuda_impl"] where it runs, else the other fused
    one where that runs; else "chunked"."""
    device = torch.device(device)
    if device.type != "cuda" or reduction not in ("mean", "sum"):
        return "chunked"
    runs = {"triton": _triton_unavailable_reason(device) is None,
            "liger": liger_unavailable_reason() is None}
    first = CONFIG["cuda_impl"]
    if first not in runs:
        raise ValueError(f"cross-entropy CONFIG['cuda_impl'] must be triton|liger, got {first!r}")
    for impl in (first, *(k for k in runs if k != first)):
        if runs[impl]:
            return impl
    return "chunked"


def fused_linear_cross_entropy(
    hidden: torch.Tensor,      # (N, d)
    weight: torch.Tensor,      # (V, d)
    targets: torch.Tensor,     # (N,) int64
    reduction: str = "mean",   # "mean" | "sum" | "none" ((N,) fp32, 0 where ignored)
    ignore_index: int = -100,
    impl: str = "auto",        # "auto" | "triton" | "liger" | "chunked"
) -> torch.Tensor:
    if impl == "auto":
        impl = resolve_cross_entropy(hidden.device, reduction)
    if impl == "triton":
        return triton_linear_cross_entropy(hidden, weight, targets, reduction, ignore_index)
    if impl == "liger":
        return liger_linear_cross_entropy(hidden, weight, targets, reduction, ignore_index)
    if impl == "chunked":
        return chunked_linear_cross_entropy(hidden, weight, targets, reduction, ignore_index)
    raise ValueError(f"cross-entropy impl must be one of {'|'.join(IMPLS)}, got {impl!r}")


__all__ = ["IMPLS", "chunked_linear_cross_entropy", "fused_linear_cross_entropy",
           "resolve_cross_entropy", "triton_linear_cross_entropy"]
