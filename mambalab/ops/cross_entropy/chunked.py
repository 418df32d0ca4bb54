"""Fused linear cross-entropy in plain PyTorch: the (N, V) fp32 logits never exist at once.

Rows are cut into chunks; each chunk's logits are made, reduced to its per-row loss and dropped,
and torch.utils.checkpoint makes them again, one chunk at a time, in backward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

# About 64M fp32 logits (256 MiB) per chunk: small next to a model's activations.
DEFAULT_CHUNK_ELEMENTS = 1 << 26


def _chunk_nll(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
               ignore_index: int) -> torch.Tensor:
    logits = F.linear(hidden, weight)                                    # (n, V)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # fp32 (fp64 stays)
    return F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="none")


def chunked_linear_cross_entropy(
    hidden: torch.Tensor,      # (N, d)
    weight: torch.Tensor,      # (V, d)
    targets: torch.Tensor,     # (N,) int64, ignore_index = not scored
    reduction: str = "mean",
    ignore_index: int = -100,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Cross-entropy of ``hidden @ weight.T`` against ``targets``: as F.cross_entropy would give.

    reduction "mean" (over scored rows), "sum", or "none" ((N,) fp32, 0 where not scored).
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    n_rows = hidden.shape[0]
    if chunk_rows is None:
        chunk_rows = max(1, DEFAULT_CHUNK_ELEMENTS // weight.shape[0])
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    pieces = []
    for start in range(0, n_rows, chunk_rows):
        h, t = hidden[start:start + chunk_rows], targets[start:start + chunk_rows]
        if needs_grad:
            pieces.append(checkpoint(_chunk_nll, h, weight, t, ignore_index, use_reentrant=False))
        else:
            pieces.append(_chunk_nll(h, weight, t, ignore_index))
    nll = torch.cat(pieces) if pieces else hidden.new_zeros(0, dtype=torch.float32)   # (N,)
    if reduction == "none":
        return nll
    if reduction == "sum":
        return nll.sum()
    return nll.sum() / (targets != ignore_index).sum()
