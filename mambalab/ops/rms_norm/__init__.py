"""RMSNorm with fused residual add: reference, mamba_ssm and Triton behind one call."""
from __future__ import annotations

import torch

from mambalab.ops.dispatch import resolve_op
from mambalab.ops.rms_norm.reference import rms_norm_ref


def rms_norm(
    x: torch.Tensor,                      # (..., d)
    weight: torch.Tensor,                 # (d,)
    eps: float = 1e-5,
    residual: torch.Tensor | None = None,  # (..., d)
    prenorm: bool = False,
    residual_in_fp32: bool = True,
    impl: str = "auto",
):
    """Run RMSNorm with ``impl`` (auto|triton|cuda|reference); see ``rms_norm_ref``."""
    if impl == "auto":
        impl = resolve_op("rms_norm", "auto", x.device)
    kwargs = dict(residual=residual, prenorm=prenorm, residual_in_fp32=residual_in_fp32)
    if impl == "reference":
        return rms_norm_ref(x, weight, eps, **kwargs)
    if impl == "cuda":
        from mambalab.ops.rms_norm.cuda import rms_norm_cuda

        return rms_norm_cuda(x, weight, eps, **kwargs)
    if impl == "triton":
        from mambalab.ops import triton as triton_ops

        return triton_ops.rms_norm_triton(x, weight, eps, **kwargs)
    raise ValueError(f"rms_norm: unknown impl={impl!r} (auto|triton|cuda|reference)")


__all__ = ["rms_norm", "rms_norm_ref"]
