"""The causal depthwise convolution of Mamba in plain PyTorch, with carried state and resets."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d_ref(
    x: torch.Tensor,                           # (B, D, L)
    weight: torch.Tensor,                      # (D, W) or (D, 1, W) as nn.Conv1d stores it
    bias: torch.Tensor | None = None,          # (D,)
    activation: str | None = "silu",           # "silu" or None
    initial_state: torch.Tensor | None = None,  # (B, D, W - 1): the inputs before x[..., 0]
    doc_starts: torch.Tensor | None = None,    # (B, L) bool: the window restarts at that token
    return_final_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """out_t = act(bias + sum_j weight[:, j] * x_{t - (W - 1) + j}), one loop over the W taps.

    Inputs before a document start (and before t = 0 when no initial_state) count as zeros.
    Returns out (B, D, L) in x's dtype, and with ``return_final_state`` the last W - 1 inputs
    (B, D, W - 1), zeroed where they lie before the last document start.
    """
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"causal_conv1d: activation must be 'silu' or None, got {activation!r}")
    weight = weight.reshape(weight.shape[0], weight.shape[-1])           # (D, W)
    batch, dim, seq_len = x.shape
    width = weight.shape[1]
    compute = torch.promote_types(x.dtype, torch.float32)
    if initial_state is None:
        initial_state = x.new_zeros(batch, dim, width - 1)
    xx = torch.cat([initial_state.to(compute), x.to(compute)], dim=-1)  # (B, D, W - 1 + L)
    segment = None
    if doc_starts is not None:
        # Document index of every position of xx; the prefix (initial state) is document 0.
        seg = torch.cumsum(doc_starts.long(), dim=-1)                    # (B, L)
        segment = torch.cat([seg.new_zeros(batch, width - 1), seg], dim=-1)  # (B, W - 1 + L)
    out = x.new_zeros(batch, dim, seq_len, dtype=compute)
    if bias is not None:
        out = out + bias.to(compute)[None, :, None]
    for j in range(width):
        tap = xx[:, :, j:j + seq_len]                                    # x_{t - (W - 1) + j}
        if segment is not None:
            same_doc = segment[:, j:j + seq_len] == segment[:, width - 1:]   # (B, L)
            tap = tap * same_doc[:, None, :].to(compute)
        out = out + weight[:, j].to(compute)[None, :, None] * tap
    if activation is not None:
        out = F.silu(out)
    out = out.to(x.dtype)
    if not return_final_state:
        return out
    final = xx[:, :, xx.shape[-1] - (width - 1):]                        # (B, D, W - 1)
    if segment is not None:
        final = final * (segment[:, -(width - 1):] == segment[:, -1:])[:, None, :].to(compute)
    return out, final.to(x.dtype)
