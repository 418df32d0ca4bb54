"""The fused Triton mixer against a plain fp64 composition: the output and the gradient of every
input, fp32 and bf16 autocast, odd L, document starts; xz as the model makes it (a view of a
(2D, B*L) matrix) and channel-last (CPU: TRITON_INTERPRET=1)."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

NAMES = ["xz", "conv1d_weight", "conv1d_bias", "x_proj_weight", "delta_proj_weight",
         "out_proj_weight", "out_proj_bias", "A", "D", "delta_bias"]


def mixer_ref(xz, conv_w, conv_b, x_proj_w, dt_proj_w, out_w, out_b, A, D, dt_bias, docs):
    """fp64: conv (window cut at document starts) + silu, x_proj, softplus(dt_proj + bias),
    the scan with its state reset at document starts, D skip, z gate, out_proj."""
    xz, conv_w, conv_b, x_proj_w, dt_proj_w, out_w, out_b, A, D, dt_bias = (
        t.double() for t in (xz, conv_w, conv_b, x_proj_w, dt_proj_w, out_w, out_b, A, D, dt_bias))
    x, z = xz.chunk(2, dim=1)                                              # (B, Di, L)
    bsz, d_inner, seqlen = x.shape
    conv_w = conv_w.reshape(d_inner, -1)
    width, n_state, rank = conv_w.shape[1], A.shape[1], dt_proj_w.shape[1]
    seg = docs.long().cumsum(-1) if docs is not None else torch.zeros(bsz, seqlen, dtype=torch.long)
    xp, segp = F.pad(x, (width - 1, 0)), F.pad(seg, (width - 1, 0))
    conv = conv_b[None, :, None].expand(bsz, d_inner, seqlen)
    for k in range(width):
        same = (segp[:, k:k + seqlen] == seg)[:, None, :]
        conv = conv + conv_w[:, k, None] * xp[..., k:k + seqlen] * same
    conv = F.silu(conv)
    x_dbl = conv.transpose(1, 2) @ x_proj_w.t()                            # (B, L, R + 2N)
    dt, b_mat, c_mat = x_dbl.split([rank, n_state, n_state], dim=-1)
    delta = F.softplus(dt @ dt_proj_w.t() + dt_bias)                       # (B, L, Di)
    h = x.new_zeros(bsz, d_inner, n_state)
    ys = []
    for t in range(seqlen):
        if docs is not None:
            h = h * (~docs[:, t]).double()[:, None, None]
        dt_t = delta[:, t, :, None]
        h = torch.exp(dt_t * A) * h + dt_t * b_mat[:, t, None, :] * conv[:, :, t, None]
        ys.append((h * c_mat[:, t, None, :]).sum(-1) + D * conv[:, :, t])
    y = torch.stack(ys, dim=-1) * F.silu(z)
    return y.transpose(1, 2) @ out_w.t() + out_b                           # (B, L, d_model)


def _inputs(seed, bsz, seqlen, d_model=12, d_inner=16, n_state=4, rank=3, width=4, docs=True,
            layout="dbl"):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=1.0: (torch.randn(*s, generator=g) * scale)  # noqa: E731
    if layout == "dbl":  # a view of the (2Di, B*L) product in_proj.weight @ hidden.T (the model's)
        xz = r(2 * d_inner, bsz * seqlen).view(2 * d_inner, bsz, seqlen).permute(1, 0, 2)
    else:  # the transposed view of a (B, L, 2Di) in_proj output (channel-last)
        xz = r(bsz, seqlen, 2 * d_inner).transpose(1, 2)
    params = [xz, r(d_inner, 1, width, scale=0.5), r(d_inner, scale=0.1),
              r(rank + 2 * n_state, d_inner, scale=0.3), r(d_inner, rank, scale=0.5),
              r(d_model, d_inner, scale=0.3), r(d_model, scale=0.1),
              -torch.arange(1, n_state + 1, dtype=torch.float32).repeat(d_inner, 1),
              torch.ones(d_inner), torch.rand(d_inner, generator=g) - 4.0]
    doc_starts = (torch.rand(bsz, seqlen, generator=g) < 0.1) if docs else None
    return params, doc_starts


@pytest.mark.parametrize("dtype,seqlen,docs,layout,impl", [
    (torch.float32, 37, True, "dbl", "tile"),
    (torch.float32, 16, False, "dbl", "tile"),
    (torch.bfloat16, 33, True, "dbl", "tile"),
    (torch.float32, 37, True, "channel_last", "tile"),
    (torch.bfloat16, 33, True, "channel_last", "tile"),
    # step kernels in 16-step segments: the forward keeps its states and the backward gives y
    (torch.float32, 37, True, "dbl", "step"),
    (torch.bfloat16, 33, True, "dbl", "step"),
    # lanes kernels: 32 channels, whole 8-step chunks (other shapes fall back to the tile kernels)
    (torch.float32, 24, True, "dbl", "lanes"),
    (torch.bfloat16, 16, True, "dbl", "lanes"),
    (torch.float32, 24, True, "dbl", "lanes+rows"),  # and the rows conv kernels
])
def test_matches_reference(dtype, seqlen, docs, layout, impl, monkeypatch):
    from mambalab.ops.triton import mamba_inner_triton
    from mambalab.ops.triton import selective_scan as ss
    from mambalab.ops.triton.mamba_inner import is_dbl

    from mambalab.ops.triton import causal_conv1d as cc

    if impl == "lanes+rows":
        impl = "lanes"
        monkeypatch.setitem(cc.CONFIG, "impl", "rows")
        monkeypatch.setitem(cc.CONFIG, "rows_seg_len", 16)
    monkeypatch.setitem(ss.CONFIG, "impl", impl)
    monkeypatch.setitem(ss.CONFIG, "lanes_fp32", True)  # the fp32 cases run the lanes kernels
    if dtype == torch.float32:  # at 1e-4: fp32 saved states (fp16's rounding shows at 2e-4)
        monkeypatch.setitem(ss.CONFIG, "lanes_states", "float32")
    monkeypatch.setitem(ss.CONFIG, "step_state_every", 8)
    monkeypatch.setitem(ss.CONFIG, "step_seg_len", 16)

    # compiled on the GPU where there is one, else under TRITON_INTERPRET=1 (conftest)
    dev = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"
    d_inner = 32 if impl == "lanes" else 16
    params, doc_starts = _inputs(0, 2, seqlen, d_inner=d_inner, docs=docs, layout=layout)
    if impl == "lanes":
        xz = params[0]
        assert ss.lanes_ok(xz[:, :d_inner], xz[:, :d_inner], xz[:, :4], xz[:, :4], None)
    assert is_dbl(params[0].to(dtype)) == (layout == "dbl")
    leaves = [p.detach().to(dev).requires_grad_(True) for p in params]
    docs_dev = doc_starts.to(dev) if doc_starts is not None else None
    with torch.autocast(dev, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        xz = leaves[0].to(dtype)  # under autocast the in_proj output is bf16
        out = mamba_inner_triton(xz, *leaves[1:], doc_starts=docs_dev)
    assert out.shape == (2, seqlen, 12) and out.dtype == dtype and not out.isnan().any()
    ref_leaves = [p.detach().double().requires_grad_(True) for p in params]
    ref = mixer_ref(*ref_leaves, doc_starts)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(out.double().cpu(), ref, **tol)

    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad(out, leaves, dout.to(dev, dtype))
    want = torch.autograd.grad(ref, ref_leaves, dout.double())
    for name, leaf, a, b in zip(NAMES, leaves, grads, want):
        assert a.shape == leaf.shape and a.dtype == leaf.dtype, name
        assert not a.isnan().any(), name
        scale = b.abs().max().clamp_min(1e-3)
        torch.testing.assert_close(a.double().cpu() / scale, b / scale, **tol,
                                   msg=lambda m, nm=name: f"d{nm}: {m}")


def test_bad_shapes_name_the_problem():
    from mambalab.ops.triton import mamba_inner_triton

    params, _ = _inputs(0, 1, 8, docs=False)
    params[3] = params[3][:-1]  # x_proj without the last C row
    with pytest.raises(ValueError, match="x_proj_weight"):
        mamba_inner_triton(*params)


@pytest.mark.gpu
def test_full_size_gpu_matches_composed_ops(monkeypatch):
    """Mamba-130M's mixer shape at B=2, L=2048, bf16 autocast, against the unfused composition
    (Triton conv and scan through plain autograd). Memory: recomputing the conv output, delta and
    y, the fused mixer keeps less than that composition (both keep the lanes scan's states, h
    every 8 steps, when that is the scan); keeping them (the default, for speed) costs exactly
    their bytes."""
    from mambalab.ops.triton import causal_conv1d_triton, mamba_inner_triton, selective_scan_triton
    from mambalab.ops.triton import mamba_inner as mi

    torch.manual_seed(0)
    bsz, seqlen, d_inner = 2, 2048, 1536
    params, doc_starts = _inputs(0, bsz, seqlen, d_model=768, d_inner=d_inner, n_state=16,
                                 rank=48)
    params = [p.cuda() for p in params]
    doc_starts = doc_starts.cuda()

    def composed(xz, conv_w, conv_b, x_proj_w, dt_proj_w, out_w, out_b, A, D, dt_bias):
        x, z = xz.chunk(2, dim=1)
        x = causal_conv1d_triton(x, conv_w, conv_b, doc_starts=doc_starts)
        x_dbl = F.linear(x.transpose(1, 2), x_proj_w)
        dt, b_mat, c_mat = x_dbl.split([48, 16, 16], dim=-1)
        # unit stride along time, as the fused mixer's views have, so that both take the same
        # scan kernels (the lanes kernels need it) and differ only in the composition
        delta = F.linear(dt, dt_proj_w).transpose(1, 2).contiguous()
        y = selective_scan_triton(x, delta, A, b_mat.transpose(1, 2).contiguous(),
                                  c_mat.transpose(1, 2).contiguous(), D, z, dt_bias, True,
                                  doc_starts=doc_starts)
        return F.linear(y.transpose(1, 2), out_w, out_b)

    def fused(keep_conv, keep_rest):
        def fn(*args):
            monkeypatch.setitem(mi.CONFIG, "keep_conv_out", keep_conv)
            monkeypatch.setitem(mi.CONFIG, "keep_delta", keep_rest)
            monkeypatch.setitem(mi.CONFIG, "keep_y", keep_rest)
            return mamba_inner_triton(*args, doc_starts=doc_starts)
        return fn

    def run(fn):
        leaves = [p.detach().clone().requires_grad_(True) for p in params]
        xz = leaves[0].bfloat16()
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = fn(xz, *leaves[1:])
        held = torch.cuda.memory_allocated() - before  # out and what the backward keeps alive
        out.float().square().mean().backward()
        return held, out.float(), [p.grad.float() for p in leaves]

    # once untimed: the first matmul allocates cuBLAS's workspace (32 MiB), which stays
    run(fused(True, True))
    results, held = [], []
    for fn in (fused(True, True), fused(False, True), fused(False, False), composed):
        h, out, grads = run(fn)
        held.append(h)
        results.append((out, grads))
    kept, no_conv, recomputed, composition = held
    assert recomputed < composition, held
    mat_bytes = d_inner * bsz * seqlen * 2  # one (D, B*L) bf16 matrix
    assert abs(kept - no_conv - mat_bytes) <= 2 ** 20, (kept, no_conv, mat_bytes)
    assert abs(no_conv - recomputed - 2 * mat_bytes) <= 2 ** 20, (no_conv, recomputed, mat_bytes)
    out_c, g_c = results[-1]
    for out_f, g_f in results[:-1]:
        torch.testing.assert_close(out_f, out_c, atol=2e-2, rtol=2e-2)
        for name, a, b in zip(NAMES, g_f, g_c):
            scale = b.abs().max()
            torch.testing.assert_close(a / scale, b / scale, atol=3e-2, rtol=3e-2,
                                       msg=lambda m, nm=name: f"d{nm}: {m}")


def test_step_states_kept_only_for_a_backward(monkeypatch):
    """With the step kernels the forward keeps the scan's states for the backward (which then
    gives y back instead of rerunning the forward), but not where no backward will run."""
    from mambalab.ops.triton import mamba_inner as mi
    from mambalab.ops.triton import mamba_inner_triton
    from mambalab.ops.triton import selective_scan as ss

    monkeypatch.setitem(ss.CONFIG, "impl", "step")
    monkeypatch.setitem(ss.CONFIG, "step_state_every", 8)
    seen = []
    real_fwd = mi.selective_scan_fwd

    def spy(*args, save_states=True, **kwargs):
        seen.append(save_states)
        return real_fwd(*args, save_states=save_states, **kwargs)

    monkeypatch.setattr(mi, "selective_scan_fwd", spy)
    dev = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"
    params, _ = _inputs(0, 2, 16, docs=False)
    params = [p.to(dev) for p in params]
    with torch.no_grad():
        mamba_inner_triton(*params)
    assert seen == [False]
    leaves = [p.detach().requires_grad_(True) for p in params]
    mamba_inner_triton(*leaves).sum().backward()
    assert seen == [False, True]  # kept in the forward; the backward ran no forward of its own
    assert all(leaf.grad is not None for leaf in leaves)


@pytest.mark.parametrize("keep_conv,keep_delta,keep_y", [
    (True, True, True), (False, False, False), (True, False, True), (False, True, False)])
def test_kept_or_recomputed(keep_conv, keep_delta, keep_y, monkeypatch):
    """CONFIG["keep_conv_out"], ["keep_delta"], ["keep_y"]: what the forward keeps, the backward
    does not compute again (no conv forward, no dt_proj matmul, no y from the scan's backward);
    what it drops, the backward recomputes. The gradients are the same either way."""
    from mambalab.ops.triton import mamba_inner as mi
    from mambalab.ops.triton import mamba_inner_triton
    from mambalab.ops.triton import selective_scan as ss

    monkeypatch.setitem(ss.CONFIG, "lanes_fp32", True)
    monkeypatch.setitem(mi.CONFIG, "keep_conv_out", keep_conv)
    monkeypatch.setitem(mi.CONFIG, "keep_delta", keep_delta)
    monkeypatch.setitem(mi.CONFIG, "keep_y", keep_y)
    calls, y_outs = [], []
    real_conv, real_bwd = mi.causal_conv1d_fwd, mi.selective_scan_bwd

    def spy_conv(*args, **kwargs):
        calls.append(torch.is_grad_enabled())
        return real_conv(*args, **kwargs)

    def spy_bwd(*args, y_out=None, **kwargs):
        y_outs.append(y_out is not None)
        return real_bwd(*args, y_out=y_out, **kwargs)

    monkeypatch.setattr(mi, "causal_conv1d_fwd", spy_conv)
    monkeypatch.setattr(mi, "selective_scan_bwd", spy_bwd)
    dev = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"
    params, doc_starts = _inputs(0, 2, 16, d_inner=32, docs=True)
    leaves = [p.detach().to(dev).requires_grad_(True) for p in params]
    delta_proj_w = leaves[4]
    out = mamba_inner_triton(*leaves, doc_starts=doc_starts.to(dev))
    assert len(calls) == 1
    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(dev)
    matmuls = []
    real_matmul = torch.Tensor.__matmul__

    def spy_matmul(a, b):  # dt_proj's forward product, delta_proj_weight @ x_dbl[:R]
        matmuls.append(a is delta_proj_w or a.data_ptr() == delta_proj_w.data_ptr())
        return real_matmul(a, b)

    monkeypatch.setattr(torch.Tensor, "__matmul__", spy_matmul)
    grads = torch.autograd.grad(out, leaves, dout)
    monkeypatch.setattr(torch.Tensor, "__matmul__", real_matmul)
    assert len(calls) == (1 if keep_conv else 2)
    assert sum(matmuls) == (0 if keep_delta else 1), matmuls
    assert y_outs == [not keep_y]
    ref_leaves = [p.detach().double().requires_grad_(True) for p in params]
    ref = mixer_ref(*ref_leaves, doc_starts)
    want = torch.autograd.grad(ref, ref_leaves, dout.cpu().double())
    for name, a, b in zip(NAMES, grads, want):
        scale = b.abs().max().clamp_min(1e-3)
        torch.testing.assert_close(a.double().cpu() / scale, b / scale, atol=1e-4, rtol=1e-4,
                                   msg=lambda m, nm=name: f"d{nm}: {m}")
