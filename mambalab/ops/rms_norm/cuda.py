"""mamba_ssm's fused add + RMSNorm (layer_norm_fn, a Triton kernel shipped by mamba_ssm)."""
from __future__ import annotations


def rms_norm_cuda(x, weight, eps=1e-5, residual=None, prenorm=False, residual_in_fp32=True):
    """mamba_ssm.ops.triton.layer_norm.layer_norm_fn with is_rms_norm; shapes as rms_norm_ref."""
    from mamba_ssm.ops.triton.layer_norm import layer_norm_fn

    return layer_norm_fn(x, weight, None, residual=residual, eps=eps, prenorm=prenorm,
                         residual_in_fp32=residual_in_fp32, is_rms_norm=True)
