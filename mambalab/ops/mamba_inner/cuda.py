"""mamba_ssm's fused mixer (mamba_inner_fn): one autograd node that recomputes in backward."""
from __future__ import annotations


def mamba_inner_cuda(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight,
                     out_proj_weight, out_proj_bias, A, D, delta_bias, doc_starts=None):
    """mamba_ssm.ops.selective_scan_interface.mamba_inner_fn; shapes as mamba_inner_ref."""
    if doc_starts is not None:
        raise ValueError(
            "mamba_inner impl=cuda (mamba_ssm) cannot reset state at document starts: its Mamba-1 "
            "kernels have no such input. Use model.kernels=reference or triton, or a data "
            "config without document boundaries (data.doc_boundaries=false)")
    from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn

    conv1d_weight = conv1d_weight.reshape(conv1d_weight.shape[0], 1, conv1d_weight.shape[-1])
    return mamba_inner_fn(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight,
                          out_proj_weight, out_proj_bias, A, None, None, D,
                          delta_bias=delta_bias, delta_softplus=True)
