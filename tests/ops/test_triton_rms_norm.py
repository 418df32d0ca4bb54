"""Triton RMSNorm + residual add against an fp64 reference: outputs, residual_out and every
gradient, with and without residual, prenorm, fp32 and bf16 (CPU: TRITON_INTERPRET=1; compiled
on the GPU where the file runs without the interpreter)."""
from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("triton")

DEV = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"


def rms_ref(x, weight, eps, residual):
    h = x.double() + (residual.double() if residual is not None else 0.0)
    return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps) * weight.double(), h


TOL = {torch.float32: dict(atol=1e-4, rtol=1e-4), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_res,prenorm,residual_in_fp32", [
    (True, True, True), (False, True, True), (True, False, False), (False, False, False),
])
def test_matches_reference(dtype, with_res, prenorm, residual_in_fp32):
    from mambalab.ops.triton import rms_norm_triton

    g = torch.Generator().manual_seed(0)
    shape, n = (3, 13, 72), 72  # 39 rows: not a multiple of the row block
    x = torch.randn(shape, generator=g).to(DEV, dtype).requires_grad_(True)
    res_dtype = torch.float32 if residual_in_fp32 else dtype
    residual = torch.randn(shape, generator=g).to(DEV, res_dtype).requires_grad_(True) \
        if with_res else None
    weight = (1 + 0.1 * torch.randn(n, generator=g)).to(DEV).requires_grad_(True)
    got = rms_norm_triton(x, weight, 1e-5, residual=residual, prenorm=prenorm,
                          residual_in_fp32=residual_in_fp32)
    out, res_out = got if prenorm else (got, None)
    want_out, want_h = rms_ref(x, weight, 1e-5, residual)
    assert out.dtype == dtype and not out.isnan().any()
    torch.testing.assert_close(out.double(), want_out, **TOL[dtype])
    if prenorm:
        want_dtype = torch.float32 if residual_in_fp32 else (
            residual.dtype if residual is not None else dtype)
        assert res_out.dtype == want_dtype
        torch.testing.assert_close(res_out.double(), want_h, **TOL[dtype])

    gen = torch.Generator().manual_seed(1)
    dout = torch.randn(shape, generator=gen).to(DEV, dtype)
    outs, douts = [out], [dout]
    if prenorm:
        outs.append(res_out)
        douts.append(torch.randn(shape, generator=gen).to(DEV, res_out.dtype))
    leaves = [t for t in (x, weight, residual) if t is not None]
    grads = torch.autograd.grad(outs, leaves, douts)
    rleaves = [t.detach().double().requires_grad_(True) for t in leaves]
    rx, rw = rleaves[0], rleaves[1]
    rr = rleaves[2] if residual is not None else None
    ro, rh = rms_ref(rx, rw, 1e-5, rr)
    routs = [ro, rh] if prenorm else [ro]
    want = torch.autograd.grad(routs, rleaves, [d.double() for d in douts])
    for name, leaf, a, b in zip(["x", "weight", "residual"], leaves, grads, want):
        assert a.dtype == leaf.dtype, name
        scale = b.abs().max().clamp_min(1.0)
        torch.testing.assert_close(a.double() / scale, b / scale, **TOL[dtype],
                                   msg=lambda m, nm=name: f"d{nm}: {m}")


def test_writes_every_element(monkeypatch):
    """Every buffer the kernels allocate starts as NaN: an element left unwritten shows. 100 rows
    of 1000 (a 1024-wide block, partly masked) make each backward program loop over row tiles."""
    from mambalab.ops.triton import rms_norm_triton

    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **k: real_empty(*a, **k).fill_(float("nan")))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 1000, generator=g).to(DEV).requires_grad_(True)
    res = torch.randn(100, 1000, generator=g).to(DEV).requires_grad_(True)
    w = (1 + 0.1 * torch.randn(1000, generator=g)).to(DEV).requires_grad_(True)
    out, res_out = rms_norm_triton(x, w, 1e-5, residual=res, prenorm=True)
    assert not out.isnan().any() and not res_out.isnan().any()
    grads = torch.autograd.grad((out * res_out).sum(), (x, w, res))
    assert not any(t.isnan().any() for t in grads)
    rx, rw, rr = (t.detach().double().requires_grad_(True) for t in (x, w, res))
    ro, rh = rms_ref(rx, rw, 1e-5, rr)
    torch.testing.assert_close(out.double(), ro, atol=1e-4, rtol=1e-4)
    want = torch.autograd.grad((ro * rh).sum(), (rx, rw, rr))
    for a, b in zip(grads, want):
        torch.testing.assert_close(a.double(), b, atol=1e-3, rtol=1e-4)


def test_bad_weight_names_the_problem():
    from mambalab.ops.triton import rms_norm_triton

    with pytest.raises(ValueError, match="weight must be"):
        rms_norm_triton(torch.randn(2, 8, device=DEV), torch.ones(7, device=DEV))


@pytest.mark.gpu
def test_full_size_gpu():
    """Mamba-130M's shape (16k rows of 768), bf16 x with an fp32 residual, prenorm."""
    from mambalab.ops.triton import rms_norm_triton

    x = torch.randn(8, 2048, 768, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    residual = torch.randn(8, 2048, 768, device="cuda", requires_grad=True)
    weight = torch.randn(768, device="cuda", requires_grad=True)
    out, res_out = rms_norm_triton(x, weight, 1e-5, residual=residual, prenorm=True)
    want_out, want_h = rms_ref(x, weight, 1e-5, residual)
    torch.testing.assert_close(out.double(), want_out, **TOL[torch.bfloat16])
    torch.testing.assert_close(res_out.double(), want_h, atol=1e-5, rtol=1e-5)
    dout = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, weight, residual), dout)
    want = torch.autograd.grad(want_out, (x, weight, residual), dout.double())
    for a, b in zip(got, want):
        b = b.double()  # x is a bf16 leaf, so its reference gradient comes back in bf16
        scale = b.abs().max()
        torch.testing.assert_close(a.double() / scale, b / scale, atol=2e-2, rtol=2e-2)
