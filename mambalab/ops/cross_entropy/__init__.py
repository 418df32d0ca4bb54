"""Cross-entropy of a linear head without materialising the fp32 logits.

liger-kernel's fused kernel on CUDA (reduction mean|sum), else a chunked PyTorch version.
"""
from __future__ import annotations

import torch

from mambalab.ops.cross_entropy.chunked import chunked_linear_cross_entropy
from mambalab.ops.cross_entropy.liger import liger_linear_cross_entropy, liger_unavailable_reason


def resolve_cross_entropy(device: torch.device | str, reduction: str = "mean") -> str:
    """"liger" where it runs (CUDA, liger importable, mean or sum), else "chunked"."""
    device = torch.device(device)
    if device.type == "cuda" and reduction in ("mean", "sum") and liger_unavailable_reason() is None:
        return "liger"
    return "chunked"


def fused_linear_cross_entropy(
    hidden: torch.Tensor,      # (N, d)
    weight: torch.Tensor,      # (V, d)
    targets: torch.Tensor,     # (N,) int64
    reduction: str = "mean",   # "mean" | "sum" | "none" ((N,) fp32, 0 where ignored)
    ignore_index: int = -100,
    impl: str = "auto",        # "auto" | "liger" | "chunked"
) -> torch.Tensor:
    if impl == "auto":
        impl = resolve_cross_entropy(hidden.device, reduction)
    if impl == "liger":
        return liger_linear_cross_entropy(hidden, weight, targets, reduction, ignore_index)
    if impl == "chunked":
        return chunked_linear_cross_entropy(hidden, weight, targets, reduction, ignore_index)
    raise ValueError(f"cross-entropy impl must be auto|liger|chunked, got {impl!r}")


__all__ = ["chunked_linear_cross_entropy", "fused_linear_cross_entropy", "resolve_cross_entropy"]
