"""The mamba_ssm / causal-conv1d CUDA wrappers against the references: outputs and gradients.

Run on the GPU machine with mamba_ssm and causal_conv1d installed:
    PYTHONPATH=.:$PYTHONPATH pytest -q -m gpu tests/ops/test_ops_cuda_gpu.py
"""
from __future__ import annotations

import pytest
import torch

from mambalab.ops import (causal_conv1d, mamba_inner, resolve_kernels, rms_norm, selective_scan,
                          unavailable_reason)

pytestmark = pytest.mark.gpu


def need_cuda_kernels(op: str) -> None:
    reason = unavailable_reason(op, "cuda", "cuda")
    if reason is not None:
        pytest.skip(f"cuda {op} cannot run: {reason}")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def run_with_grads(fn, inputs: dict, upstream: torch.Tensor):
    # absent inputs (None: no bias, no document starts) pass through as they are
    leaves = {k: (v.detach().clone().requires_grad_(True)
                  if isinstance(v, torch.Tensor) and torch.is_floating_point(v) else v)
              for k, v in inputs.items()}
    out = fn(**leaves)
    out = out[0] if isinstance(out, tuple) else out
    (out.float() * upstream).sum().backward()
    return out, {k: v.grad for k, v in leaves.items() if getattr(v, "grad", None) is not None}


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-3), (torch.bfloat16, 3e-2)])
def test_selective_scan_cuda_matches_reference(dtype, tol):
    need_cuda_kernels("selective_scan")
    torch.manual_seed(0)
    b, d, n, length = 2, 64, 16, 127
    dev = "cuda"
    inputs = dict(u=torch.randn(b, d, length, device=dev, dtype=dtype),
                  delta=(0.5 * torch.randn(b, d, length, device=dev)).to(dtype),
                  A=-torch.rand(d, n, device=dev) - 0.5,
                  B=torch.randn(b, n, length, device=dev, dtype=dtype),
                  C=torch.randn(b, n, length, device=dev, dtype=dtype),
                  D=torch.randn(d, device=dev), z=torch.randn(b, d, length, device=dev, dtype=dtype),
                  delta_bias=0.1 * torch.randn(d, device=dev))
    up = torch.randn(b, d, length, device=dev)
    y_c, g_c = run_with_grads(lambda **k: selective_scan(**k, impl="cuda"), inputs, up)
    y_r, g_r = run_with_grads(lambda **k: selective_scan(**k, impl="reference"), inputs, up)
    assert rel_err(y_c, y_r) < tol
    for name in g_r:
        assert rel_err(g_c[name], g_r[name]) < tol, name
    _, last_c = selective_scan(**inputs, return_last_state=True, impl="cuda")
    _, last_r = selective_scan(**inputs, return_last_state=True, impl="reference")
    assert rel_err(last_c, last_r) < tol
    with pytest.raises(ValueError, match="initial_state nor doc_starts"):
        selective_scan(**inputs, initial_state=last_r, impl="cuda")


def test_causal_conv1d_cuda_matches_reference_with_state_and_doc_starts():
    need_cuda_kernels("causal_conv1d")
    torch.manual_seed(1)
    x = torch.randn(2, 64, 100, device="cuda")
    w, bias = torch.randn(64, 4, device="cuda"), torch.randn(64, device="cuda")
    up = torch.randn_like(x)
    inputs = dict(x=x, weight=w, bias=bias)
    y_c, g_c = run_with_grads(lambda **k: causal_conv1d(**k, impl="cuda"), inputs, up)
    y_r, g_r = run_with_grads(lambda **k: causal_conv1d(**k, impl="reference"), inputs, up)
    assert rel_err(y_c, y_r) < 1e-4
    for name in g_r:
        assert rel_err(g_c[name], g_r[name]) < 1e-4, name
    init = torch.randn(2, 64, 3, device="cuda")
    out_c, fin_c = causal_conv1d(x, w, bias, initial_state=init, return_final_state=True,
                                 impl="cuda")
    out_r, fin_r = causal_conv1d(x, w, bias, initial_state=init, return_final_state=True,
                                 impl="reference")
    assert rel_err(out_c, out_r) < 1e-4 and rel_err(fin_c, fin_r) < 1e-4
    starts = torch.rand(2, 100, device="cuda") < 0.05
    assert rel_err(causal_conv1d(x, w, bias, doc_starts=starts, impl="cuda"),
                   causal_conv1d(x, w, bias, doc_starts=starts, impl="reference")) < 1e-4


def test_rms_norm_cuda_matches_reference_with_residual():
    need_cuda_kernels("rms_norm")
    torch.manual_seed(2)
    x = torch.randn(4, 33, 256, device="cuda", dtype=torch.bfloat16)
    res = torch.randn(4, 33, 256, device="cuda")
    w = torch.rand(256, device="cuda") + 0.5
    y_c, s_c = rms_norm(x, w, 1e-5, residual=res, prenorm=True, residual_in_fp32=True, impl="cuda")
    y_r, s_r = rms_norm(x, w, 1e-5, residual=res, prenorm=True, residual_in_fp32=True,
                        impl="reference")
    assert y_c.dtype == y_r.dtype and s_c.dtype == s_r.dtype == torch.float32
    assert rel_err(y_c, y_r) < 1e-2 and rel_err(s_c, s_r) < 1e-5
    up = torch.randn(4, 33, 256, device="cuda")
    inputs = dict(x=x.float(), weight=w, residual=res)
    _, g_c = run_with_grads(lambda **k: rms_norm(eps=1e-5, **k, impl="cuda"), inputs, up)
    _, g_r = run_with_grads(lambda **k: rms_norm(eps=1e-5, **k, impl="reference"), inputs, up)
    for name in g_r:
        assert rel_err(g_c[name], g_r[name]) < 1e-3, name


def test_mamba_inner_cuda_matches_reference_composition():
    need_cuda_kernels("mamba_inner")
    torch.manual_seed(3)
    b, length, d_model, d, n, r = 2, 64, 64, 128, 16, 4
    dev = "cuda"
    inputs = dict(xz=torch.randn(b, 2 * d, length, device=dev),
                  conv1d_weight=torch.randn(d, 1, 4, device=dev) * 0.5,
                  conv1d_bias=torch.randn(d, device=dev) * 0.1,
                  x_proj_weight=torch.randn(r + 2 * n, d, device=dev) / d ** 0.5,
                  delta_proj_weight=torch.randn(d, r, device=dev) / r ** 0.5,
                  out_proj_weight=torch.randn(d_model, d, device=dev) / d ** 0.5,
                  out_proj_bias=None, A=-torch.arange(1, n + 1.0, device=dev).repeat(d, 1),
                  D=torch.ones(d, device=dev), delta_bias=torch.full((d,), -3.0, device=dev))
    up = torch.randn(b, length, d_model, device=dev)
    y_c, g_c = run_with_grads(lambda **k: mamba_inner(**k, impl="cuda"), inputs, up)
    y_r, g_r = run_with_grads(lambda **k: mamba_inner(**k, impl="reference"), inputs, up)
    assert rel_err(y_c, y_r) < 2e-3
    for name in g_r:
        assert rel_err(g_c[name], g_r[name]) < 5e-3, name


def test_auto_prefers_fast_kernels_on_cuda():
    report = resolve_kernels("auto", "cuda")
    print("kernels=auto on", torch.cuda.get_device_name(), report)
    if unavailable_reason("selective_scan", "cuda", "cuda") is None:
        assert report["selective_scan"] in ("triton", "cuda")
