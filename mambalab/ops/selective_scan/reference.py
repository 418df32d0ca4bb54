"""The selective scan of Mamba-1 in plain PyTorch: fp32 state, one loop over time.

This is the definition the fast kernels are tested against, so it favours clarity over speed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_scan_ref(
    u: torch.Tensor,                          # (B, D, L)
    delta: torch.Tensor,                      # (B, D, L)
    A: torch.Tensor,                          # (D, N), real, negative for a stable scan
    B: torch.Tensor,                          # (B, N, L)
    C: torch.Tensor,                          # (B, N, L)
    D: torch.Tensor | None = None,            # (D,)
    z: torch.Tensor | None = None,            # (B, D, L)
    delta_bias: torch.Tensor | None = None,   # (D,)
    delta_softplus: bool = True,
    initial_state: torch.Tensor | None = None,  # (B, D, N)
    doc_starts: torch.Tensor | None = None,   # (B, L) bool: h reset to 0 before that step
    return_last_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """y_t = C_t . h_t (+ D u_t) (* silu(z_t)), h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t.

    Returns y (B, D, L) in u's dtype, and with ``return_last_state`` also h_L (B, D, N) in the
    compute dtype (fp32, or fp64 for fp64 inputs, so that gradcheck can run).
    """
    # The state's arithmetic is the point of the reference: keep autocast from making the
    # contractions below bf16.
    with torch.autocast(device_type=u.device.type, enabled=False):
        return _scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
                     doc_starts, return_last_state)


def _scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, doc_starts,
          return_last_state):
    dtype_in = u.dtype
    compute = torch.promote_types(u.dtype, torch.float32)
    u, delta, A, B, C = (t.to(compute) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, seq_len = u.shape
    h = (initial_state.to(compute) if initial_state is not None
         else u.new_zeros(batch, dim, A.shape[1]))                       # (B, D, N)
    keep = None if doc_starts is None else (~doc_starts.bool()).to(compute)  # (B, L)
    ys = []
    for t in range(seq_len):
        if keep is not None:
            h = h * keep[:, t, None, None]
        delta_t = delta[:, :, t, None]                                    # (B, D, 1)
        h = torch.exp(delta_t * A) * h + delta_t * B[:, None, :, t] * u[:, :, t, None]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, dim, 0)   # (B, D, L)
    if D is not None:
        y = y + u * D.to(compute)[None, :, None]
    if z is not None:
        y = y * F.silu(z.to(compute))
    y = y.to(dtype_in)
    return (y, h) if return_last_state else y
