"""Mamba-1 ops: each a pure-PyTorch reference, the mamba_ssm CUDA kernel, a Triton kernel.

Note: ``mambalab.ops.selective_scan`` (and the other op names) are the dispatching functions;
their folders stay importable as modules, e.g. ``from mambalab.ops.selective_scan.reference
import selective_scan_ref``.
"""
from __future__ import annotations

from mambalab.ops.dispatch import AUTO_PREFERENCE, OPS, resolve_kernels, unavailable_reason
from mambalab.ops.causal_conv1d import causal_conv1d, causal_conv1d_ref
from mambalab.ops.cross_entropy import fused_linear_cross_entropy
from mambalab.ops.mamba_inner import mamba_inner, mamba_inner_ref
from mambalab.ops.rms_norm import rms_norm, rms_norm_ref
from mambalab.ops.selective_scan import selective_scan, selective_scan_ref

__all__ = [
    "AUTO_PREFERENCE", "OPS", "causal_conv1d", "causal_conv1d_ref", "fused_linear_cross_entropy",
    "mamba_inner", "mamba_inner_ref", "resolve_kernels", "rms_norm", "rms_norm_ref",
    "selective_scan", "selective_scan_ref", "unavailable_reason",
]
