"""The Mamba-1 mixer between in_proj and out_proj, composed from the ops (no fusion)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def mamba_inner_ref(
    xz: torch.Tensor,                     # (B, 2 * D, L): in_proj output, x then z
    conv1d_weight: torch.Tensor,          # (D, 1, W) or (D, W)
    conv1d_bias: torch.Tensor | None,     # (D,)
    x_proj_weight: torch.Tensor,          # (R + 2N, D)
    delta_proj_weight: torch.Tensor,      # (D, R)
    out_proj_weight: torch.Tensor,        # (d_model, D)
    out_proj_bias: torch.Tensor | None,   # (d_model,)
    A: torch.Tensor,                      # (D, N) = -exp(A_log)
    D: torch.Tensor | None,               # (D,)
    delta_bias: torch.Tensor | None,      # (D,)
    doc_starts: torch.Tensor | None = None,  # (B, L) bool
    conv_impl: str = "reference",
    scan_impl: str = "reference",
) -> torch.Tensor:                        # (B, L, d_model)
    """conv -> x_proj -> dt_proj -> selective scan (gated by z) -> out_proj.

    ``conv_impl`` and ``scan_impl`` pick the implementations of the two inner ops, so that this
    composition also serves as the fallback when only some fast kernels exist.
    """
    from mambalab.ops.causal_conv1d import causal_conv1d
    from mambalab.ops.selective_scan import selective_scan

    n_state = A.shape[1]
    rank = delta_proj_weight.shape[1]
    x, z = xz.chunk(2, dim=1)                                            # (B, D, L) each
    x = causal_conv1d(x, conv1d_weight, conv1d_bias, activation="silu", doc_starts=doc_starts,
                      impl=conv_impl)
    x_dbl = F.linear(x.transpose(1, 2), x_proj_weight)                  # (B, L, R + 2N)
    dt, B, C = torch.split(x_dbl, [rank, n_state, n_state], dim=-1)
    delta = F.linear(dt, delta_proj_weight).transpose(1, 2)             # (B, D, L)
    y = selective_scan(x, delta, A, B.transpose(1, 2), C.transpose(1, 2), D=D, z=z,
                       delta_bias=delta_bias, delta_softplus=True, doc_starts=doc_starts,
                       impl=scan_impl)                                   # (B, D, L)
    return F.linear(y.transpose(1, 2), out_proj_weight, out_proj_bias)  # (B, L, d_model)
