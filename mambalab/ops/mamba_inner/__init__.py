"""The fused Mamba-1 mixer: reference composition, mamba_ssm CUDA and Triton behind one call."""
from __future__ import annotations

import torch

from mambalab.ops.dispatch import resolve_op
from mambalab.ops.mamba_inner.reference import mamba_inner_ref


def mamba_inner(
    xz: torch.Tensor,                     # (B, 2 * D, L)
    conv1d_weight: torch.Tensor,          # (D, 1, W) or (D, W)
    conv1d_bias: torch.Tensor | None,     # (D,)
    x_proj_weight: torch.Tensor,          # (R + 2N, D)
    delta_proj_weight: torch.Tensor,      # (D, R)
    out_proj_weight: torch.Tensor,        # (d_model, D)
    out_proj_bias: torch.Tensor | None,   # (d_model,)
    A: torch.Tensor,                      # (D, N)
    D: torch.Tensor | None,               # (D,)
    delta_bias: torch.Tensor | None,      # (D,)
    doc_starts: torch.Tensor | None = None,  # (B, L) bool
    impl: str = "auto",
) -> torch.Tensor:                        # (B, L, d_model)
    """Run the mixer with ``impl`` (auto|triton|cuda|reference); see ``mamba_inner_ref``."""
    if impl == "auto":
        impl = resolve_op("mamba_inner", "auto", xz.device)
    args = (xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight,
            out_proj_bias, A, D, delta_bias)
    if impl == "reference":
        return mamba_inner_ref(*args, doc_starts=doc_starts)
    if impl == "cuda":
        from mambalab.ops.mamba_inner.cuda import mamba_inner_cuda

        return mamba_inner_cuda(*args, doc_starts=doc_starts)
    if impl == "triton":
        from mambalab.ops import triton as triton_ops

        return triton_ops.mamba_inner_triton(*args, doc_starts=doc_starts)
    raise ValueError(f"mamba_inner: unknown impl={impl!r} (auto|triton|cuda|reference)")


__all__ = ["mamba_inner", "mamba_inner_ref"]
