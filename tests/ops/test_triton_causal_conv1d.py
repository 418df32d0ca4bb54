"""Triton causal conv1d against a plain fp64 loop: outputs and every gradient, with document
starts, initial states, odd lengths, strided inputs, fp32 and bf16 (CPU: TRITON_INTERPRET=1)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")


def conv_ref(x, weight, bias, activation, initial_state, doc_starts):
    """fp64 loop: out[t] = act(bias + sum_k w[k] x[t - (W-1) + k]), inputs before the latest
    document start (or before 0 without an initial state) counting as zero."""
    x, weight = x.double(), weight.double()
    bsz, dim, seqlen = x.shape
    width = weight.shape[1]
    prev = initial_state.double() if initial_state is not None else x.new_zeros(bsz, dim, width - 1)
    xp = torch.cat([prev, x], dim=-1)  # (B, D, W-1+L): index t + W-1 is position t
    outs = []
    for t in range(seqlen):
        acc = bias.double()[None, :].expand(bsz, dim) if bias is not None else x.new_zeros(bsz, dim)
        for k in range(width):
            q = t - (width - 1) + k
            keep = torch.ones(bsz, dtype=torch.float64)
            if doc_starts is not None:
                for b in range(bsz):
                    starts = [s for s in range(t + 1) if doc_starts[b, s]]
                    if starts and q < starts[-1]:
                        keep[b] = 0.0
            acc = acc + weight[:, k][None, :] * xp[:, :, q + width - 1] * keep[:, None]
        outs.append(acc)
    out = torch.stack(outs, dim=-1)
    return F.silu(out) if activation == "silu" else out


def _case(seed, bsz, dim, seqlen, width, dtype, with_bias, with_init, with_docs, channel_last):
    g = torch.Generator().manual_seed(seed)
    if channel_last:  # a slice of a (B, L, 2D) tensor, as the mixer's in_proj output is
        x = torch.randn(bsz, seqlen, 2 * dim, generator=g).to(dtype).transpose(1, 2)[:, :dim]
    else:
        x = torch.randn(bsz, dim, seqlen, generator=g).to(dtype)
    weight = (torch.randn(dim, width, generator=g) * 0.5)
    bias = torch.randn(dim, generator=g) if with_bias else None
    init = torch.randn(bsz, dim, width - 1, generator=g).to(dtype) if with_init else None
    docs = (torch.rand(bsz, seqlen, generator=g) < 0.15) if with_docs else None
    if docs is not None:
        docs[0, 0] = True
        docs[-1, seqlen - 1] = True
    return x, weight, bias, init, docs


TOL = {torch.float32: dict(atol=1e-4, rtol=1e-4), torch.bfloat16: dict(atol=3e-2, rtol=3e-2)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_bias,with_init,with_docs,channel_last,activation,seqlen", [
    (True, False, False, False, "silu", 67),
    (False, True, True, True, "silu", 37),
    (True, True, False, True, None, 5),
    (True, False, True, False, None, 70),
])
def test_matches_reference(dtype, with_bias, with_init, with_docs, channel_last, activation,
                           seqlen):
    from mambalab.ops.triton import causal_conv1d_triton

    bsz, dim, width = 2, 70, 4
    x, weight, bias, init, docs = _case(0, bsz, dim, seqlen, width, dtype, with_bias, with_init,
                                        with_docs, channel_last)
    leaves = [t for t in (x, weight, bias, init) if t is not None]
    for t in leaves:
        t.requires_grad_(True)
    out, final = causal_conv1d_triton(x, weight, bias, activation=activation, initial_state=init,
                                      doc_starts=docs, return_final_state=True)
    ref = conv_ref(x, weight, bias, activation, init, docs)
    assert out.dtype == dtype and not out.isnan().any()
    torch.testing.assert_close(out.double(), ref, **TOL[dtype])

    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    grads = torch.autograd.grad(out, leaves, dout)
    ref_leaves = [t.detach().double().requires_grad_(True) for t in leaves]
    it = iter(ref_leaves)
    rx, rw = next(it), next(it)
    rb = next(it) if bias is not None else None
    ri = next(it) if init is not None else None
    ref_grads = torch.autograd.grad(conv_ref(rx, rw, rb, activation, ri, docs), ref_leaves,
                                    dout.double())
    names = ["x", "weight"] + (["bias"] if bias is not None else []) + \
        (["init"] if init is not None else [])
    for leaf, got in zip(leaves, grads):
        assert got.dtype == leaf.dtype and got.shape == leaf.shape
    for name, got, want in zip(names, grads, ref_grads):
        scale = want.abs().max().clamp_min(1.0)
        torch.testing.assert_close(got.double() / scale, want / scale, **TOL[dtype],
                                   msg=lambda m, n=name: f"d{n}: {m}")

    # the final state is the last W-1 inputs, zeroed before the last document start
    xp = torch.cat([init if init is not None else x.new_zeros(bsz, dim, width - 1), x], -1)
    want_final = xp[..., -(width - 1):].clone()
    if docs is not None:
        for b in range(bsz):
            starts = docs[b].nonzero().flatten().tolist()
            if starts:
                for i, q in enumerate(range(seqlen - width + 1, seqlen)):
                    if q < starts[-1]:
                        want_final[b, :, i] = 0
    torch.testing.assert_close(final, want_final)


def _assert_matches_fp64_loop(x, weight, bias, activation, docs, dtype):
    """causal_conv1d_triton's output and its gradients in x, weight and bias against the fp64
    loop (conv_ref), for whichever kernels CONFIG and the shapes select."""
    from mambalab.ops.triton import causal_conv1d_triton

    leaves = [t for t in (x, weight, bias) if t is not None]
    for t in leaves:
        t.requires_grad_(True)
    out = causal_conv1d_triton(x, weight, bias, activation=activation, doc_starts=docs)
    ref = conv_ref(x, weight, bias, activation, None, docs)
    torch.testing.assert_close(out.double(), ref, **TOL[dtype])
    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    grads = torch.autograd.grad(out, leaves, dout)
    ref_leaves = [t.detach().double().requires_grad_(True) for t in leaves]
    rb = ref_leaves[2] if bias is not None else None
    ref_grads = torch.autograd.grad(conv_ref(ref_leaves[0], ref_leaves[1], rb, activation, None,
                                             docs), ref_leaves, dout.double())
    for name, got, want in zip(["x", "weight", "bias"], grads, ref_grads):
        scale = want.abs().max().clamp_min(1.0)
        torch.testing.assert_close(got.double() / scale, want / scale, **TOL[dtype],
                                   msg=lambda m, n=name: f"d{n}: {m}")


@pytest.mark.parametrize("dtype,with_bias,with_docs,activation,width,seqlen,seg_len,warps", [
    (torch.float32, True, True, "silu", 4, 48, 16, 1),   # 3 segments, several chunks each
    (torch.bfloat16, False, True, "silu", 4, 40, 16, 2),  # a short last segment, 2 warps
    (torch.float32, True, False, None, 9, 24, 256, 1),    # W = K + 1, one segment
    (torch.float32, True, True, "silu", 2, 8, 8, 1),      # W = 2, one chunk in all
    (torch.bfloat16, True, True, "silu", 4, 64, 32, 1),   # K = 16 (16-bit inputs), 2 segments
    (torch.bfloat16, True, False, "silu", 4, 96, "auto", 1),  # auto segments (one on the CPU)
])
def test_rows_kernels_match_reference(dtype, with_bias, with_docs, activation, width, seqlen,
                                      seg_len, warps, monkeypatch, nan_empty):
    """The rows kernels (one thread per row and time segment, causal_conv1d_rows.py): outputs and
    every gradient against the fp64 loop; the shapes satisfy their contract (rows_ok)."""
    from mambalab.ops.triton import causal_conv1d as cc

    monkeypatch.setitem(cc.CONFIG, "impl", "rows")
    monkeypatch.setitem(cc.CONFIG, "rows_seg_len", seg_len)
    monkeypatch.setitem(cc.CONFIG, "rows_warps", warps)
    bsz, dim = 2, 64
    x, weight, bias, _, docs = _case(3, bsz, dim, seqlen, width, dtype, with_bias, False,
                                     with_docs, False)
    assert cc.rows_ok(x, weight, None, x)
    want_k = 16 if dtype == torch.bfloat16 and seqlen % 16 == 0 else 8
    assert cc.rows_chunk(x, width) == want_k
    _assert_matches_fp64_loop(x, weight, bias, activation, docs, dtype)
    # outside the contract (an initial state, channel-last x, L not whole chunks): tile kernels
    assert not cc.rows_ok(x, weight, torch.zeros(bsz, dim, width - 1), x)
    assert not cc.rows_ok(x.transpose(1, 2).contiguous().transpose(1, 2), weight, None)
    assert not cc.rows_ok(x[..., :seqlen - 1], weight, None)


@pytest.mark.parametrize("dtype,with_bias,with_docs,activation,width,seqlen,warps,groups", [
    (torch.float32, True, True, "silu", 4, 48, 1, 1),    # G = 4: 12 groups, a partial program
    (torch.bfloat16, False, True, "silu", 4, 40, 1, 1),  # G = 8: 5 groups
    (torch.bfloat16, True, True, "silu", 9, 320, 1, 1),  # W - 1 = G, a second program per row
    (torch.float32, True, True, "silu", 2, 8, 2, 1),     # W = 2, 2 warps, most lanes out of range
    (torch.float32, True, True, "silu", 4, 264, 2, 1),   # 2 warps, 2 programs per row
    (torch.bfloat16, True, False, None, 4, 64, 1, 1),    # no activation, no documents
    # 2 groups a thread: a thread's second group past L (5 groups), a second
    # program per row (G = 4: 80 groups for 32 threads of 2), W - 1 = G
    (torch.bfloat16, True, True, "silu", 4, 40, 1, 2),
    (torch.float32, True, True, "silu", 4, 320, 1, 2),
    (torch.bfloat16, True, True, "silu", 9, 64, 1, 2),
])
def test_time_kernels_match_reference(dtype, with_bias, with_docs, activation, width, seqlen,
                                      warps, groups, monkeypatch, nan_empty):
    """The time kernels (lanes along time, causal_conv1d_time.py): outputs and every gradient
    against the fp64 loop; the shapes satisfy their contract (time_ok), and shapes outside it
    fall back to the rows kernels."""
    from mambalab.ops.triton import causal_conv1d as cc

    monkeypatch.setitem(cc.CONFIG, "impl", "time")
    monkeypatch.setitem(cc.CONFIG, "time_warps", warps)
    monkeypatch.setitem(cc.CONFIG, "time_fwd_groups", groups)
    monkeypatch.setitem(cc.CONFIG, "time_bwd_groups", groups)
    bsz, dim = 2, 6
    x, weight, bias, _, docs = _case(5, bsz, dim, seqlen, width, dtype, with_bias, False,
                                     with_docs, False)
    seg = cc.segment_starts(docs, width)
    assert cc.time_ok(x, weight, None, seg, x)
    _assert_matches_fp64_loop(x, weight, bias, activation, docs, dtype)
    # outside the contract: an initial state, channel-last x, L not whole groups, a window
    # longer than a group, a base address off 16 bytes
    assert not cc.time_ok(x, weight, torch.zeros(bsz, dim, width - 1), None)
    assert not cc.time_ok(x.transpose(1, 2).contiguous().transpose(1, 2), weight, None, None)
    assert not cc.time_ok(x[..., :seqlen - 1], weight, None, None)
    g = 16 // x.element_size()
    assert not cc.time_ok(x, torch.zeros(dim, g + 2), None, None)
    assert not cc.time_ok(x[..., 1:seqlen - g + 1], weight, None, None)


def test_writes_every_element(monkeypatch):
    """Every buffer the kernels allocate starts as NaN: an element left unwritten shows."""
    from mambalab.ops.triton import causal_conv1d_triton

    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **k: real_empty(*a, **k).fill_(float("nan")))
    x, weight, bias, init, docs = _case(2, 2, 67, 70, 4, torch.float32, True, True, True, True)
    leaves = [t.requires_grad_(True) for t in (x, weight, bias, init)]
    out = causal_conv1d_triton(x, weight, bias, initial_state=init, doc_starts=docs)
    assert not out.isnan().any()
    grads = torch.autograd.grad(out.square().sum(), leaves)
    assert not any(g.isnan().any() for g in grads)


def test_bad_input_names_the_problem():
    from mambalab.ops.triton import causal_conv1d_triton

    x = torch.randn(1, 4, 8)
    with pytest.raises(ValueError, match="weight must be"):
        causal_conv1d_triton(x, torch.randn(4, 2, 4))
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d_triton(x, torch.randn(4, 4), activation="gelu")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_full_size_gpu(dtype):
    """Layer shape of Mamba-130M (D=1536, W=4, L=2048), against PyTorch's own conv1d."""
    from mambalab.ops.triton import causal_conv1d_triton

    bsz, dim, seqlen, width = 4, 1536, 2048, 4
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(bsz, seqlen, 2 * dim, device="cuda", generator=g).to(dtype)
    x = x.transpose(1, 2)[:, :dim].requires_grad_(True)
    weight = torch.randn(dim, width, device="cuda", generator=g).requires_grad_(True)
    bias = torch.randn(dim, device="cuda", generator=g).requires_grad_(True)
    out = causal_conv1d_triton(x, weight, bias, activation="silu")
    xr, wr, br = (t.detach().float().requires_grad_(True) for t in (x, weight, bias))
    ref = F.silu(F.conv1d(xr, wr[:, None], br, padding=width - 1, groups=dim)[..., :seqlen])
    tol = TOL[dtype]
    torch.testing.assert_close(out.float(), ref, **tol)
    dout = torch.randn_like(ref)
    got = torch.autograd.grad(out, (x, weight, bias), dout.to(dtype))
    want = torch.autograd.grad(ref, (xr, wr, br), dout)
    for a, b in zip(got, want):
        scale = b.abs().max()
        torch.testing.assert_close(a.float() / scale, b / scale, **tol)


@pytest.mark.gpu
@pytest.mark.parametrize("with_docs", [False, True])
def test_time_kernels_full_size_gpu(with_docs, monkeypatch):
    """The mixer's layout at Mamba-130M's shape (x a (B, D, L) view of the (2D, B*L) in_proj
    product, B=4, D=1536, L=2048, bf16): the time kernels against the rows kernels (outputs and
    gradients), with and without document starts, and against PyTorch's conv1d without."""
    from mambalab.ops.triton import causal_conv1d as cc
    from mambalab.ops.triton import causal_conv1d_triton

    bsz, dim, seqlen, width = 4, 1536, 2048, 4
    g = torch.Generator(device="cuda").manual_seed(0)
    mat = torch.randn(2 * dim, bsz * seqlen, device="cuda", generator=g).bfloat16()
    x = mat.view(2 * dim, bsz, seqlen).permute(1, 0, 2)[:, :dim].requires_grad_(True)
    weight = torch.randn(dim, width, device="cuda", generator=g).requires_grad_(True)
    bias = torch.randn(dim, device="cuda", generator=g).requires_grad_(True)
    docs = (torch.rand(bsz, seqlen, device="cuda", generator=g) < 0.01) if with_docs else None
    dout = torch.randn(bsz, dim, seqlen, device="cuda", generator=g).bfloat16()
    results = {}
    for impl, groups, warps in (("time", 1, None), ("time", 2, 4), ("rows", 1, None)):
        monkeypatch.setitem(cc.CONFIG, "impl", impl)
        for key, value in (("groups", groups), ("warps", warps)):
            monkeypatch.setitem(cc.CONFIG, f"time_fwd_{key}", value)
            monkeypatch.setitem(cc.CONFIG, f"time_bwd_{key}", value)
        assert cc.time_ok(x, weight, None, None, x) == (impl == "time")
        out = causal_conv1d_triton(x, weight, bias, activation="silu", doc_starts=docs)
        results[impl, groups] = (out, *torch.autograd.grad(out, (x, weight, bias), dout))
    for key in (("time", 1), ("time", 2)):
        for name, a, b in zip(("out", "dx", "dweight", "dbias"), results[key],
                              results["rows", 1]):
            scale = b.float().abs().max()
            torch.testing.assert_close(a.float() / scale, b.float() / scale, atol=1e-2,
                                       rtol=1e-2, msg=lambda m, n=name, k=key: f"{k} {n}: {m}")
    if not with_docs:
        xr, wr, br = (t.detach().float().requires_grad_(True) for t in (x, weight, bias))
        ref = F.silu(F.conv1d(xr, wr[:, None], br, padding=width - 1, groups=dim)[..., :seqlen])
        want = torch.autograd.grad(ref, (xr, wr, br), dout.float())
        for a, b in zip(results["time", 1], (ref, *want)):
            scale = b.abs().max()
            torch.testing.assert_close(a.float() / scale, b / scale, **TOL[torch.bfloat16])


def test_conv_config_from_env(monkeypatch):
    from mambalab.ops.triton import causal_conv1d as cc
    from mambalab.ops.triton import config_from_env

    config = dict(cc.CONFIG)
    monkeypatch.setenv("MAMBALAB_CONV_CONFIG", '{"impl": "rows", "rows_seg_len": 128}')
    config_from_env(config, "MAMBALAB_CONV_CONFIG")
    assert config["impl"] == "rows" and config["rows_seg_len"] == 128
    monkeypatch.setenv("MAMBALAB_CONV_CONFIG", '{"seg_len": 128}')
    with pytest.raises(ValueError, match=r"MAMBALAB_CONV_CONFIG: unknown keys \['seg_len'\]"):
        config_from_env(config, "MAMBALAB_CONV_CONFIG")
    monkeypatch.setenv("MAMBALAB_CONV_CONFIG", '["rows"]')
    with pytest.raises(ValueError, match="MAMBALAB_CONV_CONFIG must be a JSON object"):
        config_from_env(config, "MAMBALAB_CONV_CONFIG")
