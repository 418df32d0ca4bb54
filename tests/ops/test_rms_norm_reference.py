"""The reference RMSNorm with fused residual add, against the plain formula and mamba_ssm's rules."""
from __future__ import annotations

import torch

from mambalab.ops.rms_norm import rms_norm
from mambalab.ops.rms_norm.reference import rms_norm_ref


def test_plain_norm_matches_formula_and_gradients():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, dtype=torch.float64, requires_grad=True)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w
    torch.testing.assert_close(rms_norm_ref(x, w, 1e-5), expected)
    assert torch.autograd.gradcheck(lambda a, b: rms_norm_ref(a, b, 1e-5), (x, w))


def test_prenorm_returns_the_residual_stream_in_fp32():
    torch.manual_seed(1)
    x = torch.randn(2, 4, 8).bfloat16()
    res = torch.randn(2, 4, 8)
    w = torch.rand(8)
    y, stream = rms_norm_ref(x, w, 1e-5, residual=res, prenorm=True, residual_in_fp32=True)
    total = x.float() + res
    assert y.dtype == torch.bfloat16 and stream.dtype == torch.float32
    torch.testing.assert_close(stream, total)
    torch.testing.assert_close(y.float(), rms_norm_ref(total, w, 1e-5), rtol=1e-2, atol=1e-2)
    _, stream = rms_norm_ref(x, w, 1e-5, prenorm=True, residual_in_fp32=False)
    assert stream.dtype == torch.bfloat16
    torch.testing.assert_close(rms_norm(x.float(), w, 1e-5), rms_norm_ref(x.float(), w, 1e-5))
