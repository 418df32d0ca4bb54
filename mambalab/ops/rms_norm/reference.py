"""RMSNorm with the optional fused residual add of mamba_ssm's layer_norm_fn, in plain PyTorch."""
from __future__ import annotations

import torch


def rms_norm_ref(
    x: torch.Tensor,                      # (..., d)
    weight: torch.Tensor,                 # (d,)
    eps: float = 1e-5,
    residual: torch.Tensor | None = None,  # (..., d): added to x before the norm
    prenorm: bool = False,
    residual_in_fp32: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """y = (x + residual) / rms(x + residual) * weight, computed in fp32, returned in x's dtype.

    With ``prenorm`` also returns the sum x + residual (the residual stream for the next block),
    in fp32 when ``residual_in_fp32``, else in the residual's (or x's) dtype, as mamba_ssm does.
    """
    compute = torch.promote_types(x.dtype, torch.float32)
    h = x.to(compute)
    if residual is not None:
        h = h + residual.to(compute)
    y = h * torch.rsqrt(h.square().mean(dim=-1, keepdim=True) + eps) * weight.to(compute)
    y = y.to(x.dtype)
    if not prenorm:
        return y
    stream_dtype = compute if residual_in_fp32 else (
        residual.dtype if residual is not None else x.dtype)
    return y, h.to(stream_dtype)
