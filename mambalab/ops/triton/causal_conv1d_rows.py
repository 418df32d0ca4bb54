"""Depthwise causal conv1d, "rows" kernels: one thread per (batch, channel) row and time segment.

The tile kernels (causal_conv1d.py) load each input W times through shifted, unaligned windows
and write the backward's pre-activation gradient to a (B, D, L) fp32 buffer between two passes.
Here a thread walks its row's time segment K steps at a time, loading each chunk of x (and dout)
once as one vector along time (lanes.load_raw), and slides the window in registers: the
previous chunk's last W - 1 inputs are carried, and the backward carries the next chunk's loads
and recomputes the pre-activation gradient for the W - 1 steps past its chunk instead of storing
it. Rows are spread one per lane (lanes.py), segments of ``seg_len`` steps run as separate programs
so that a short batch still fills the GPU.

Contract (causal_conv1d.rows_ok checks it, else the tile kernels run): no initial state,
W <= K + 1, L a multiple of K, channels a multiple of 32, unit stride along time for x, out, dout
and dx. Document starts (``seg`` from causal_conv1d.segment_starts) are handled as there: an input
before the latest document start at or before an output position counts as zero.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mambalab.ops.triton.lanes import load_raw, raw_steps, store_steps
from mambalab.ops.triton.selective_scan_fwd import sigmoid


@triton.jit
def _row_params(p_ptr, d, W: tl.constexpr):
    """The W weights and the bias of each lane's channel from the (D, W + 1) fp32 parameter
    table (rows W + 1 apart, so no load is a vector across lanes); d (BD,), or a scalar (the time
    kernels, causal_conv1d_time.py: one channel a program)."""
    w = ()
    for k in tl.static_range(W):
        w = w + (tl.load(p_ptr + d * (W + 1) + k),)
    return w, tl.load(p_ptr + d * (W + 1) + W)


@triton.jit
def _chunk_raw(row, t, L, K: tl.constexpr):
    """The raw load (lanes.load_raw) of K steps from t of each lane's row, read clamped into
    [0, L) so it stays in bounds and is one vector (a mask would split it), and the factor (1 or
    0: t outside [0, L)) that _chunk_of applies. Issued a chunk or two before its use, the load's
    latency hides behind the chunks before it (the kernels waited on every chunk's loads)."""
    ok = ((t >= 0) & (t < L)).to(tl.float32)
    # clamped with where, not min / max: Triton then still knows t's alignment (a multiple of K
    # when L and the segment length are), so the load stays one 16-byte vector, not K scalars
    tc = tl.where(t < 0, 0, tl.where(t > L - K, L - K, t))
    return load_raw(row, tc, K), ok


@triton.jit
def _chunk_of(raw_ok, BD: tl.constexpr, K: tl.constexpr):
    """_chunk_raw's result -> K fp32 (BD,) tensors, zeros where t was outside [0, L)."""
    vals = raw_steps(raw_ok[0], BD, K)
    out = ()
    for j in tl.static_range(K):
        out = out + (vals[j] * raw_ok[1],)
    return out


@triton.jit
def _chunk(row, t, L, BD: tl.constexpr, K: tl.constexpr):
    """K steps from t of each lane's row, zeros where t is outside [0, L)."""
    return _chunk_of(_chunk_raw(row, t, L, K), BD, K)


@triton.jit
def _pre(win, base: tl.constexpr, p, segp, w, bias, W: tl.constexpr, HAS_DOC: tl.constexpr):
    """Pre-activation at position p; win[base + k] holds x at p - (W - 1) + k."""
    acc = bias
    for k in tl.static_range(W):
        v = win[base + k]
        if HAS_DOC:
            v = tl.where(segp <= p - (W - 1) + k, v, 0.0)
        acc += w[k] * v
    return acc


@triton.jit
def _dpre(win, gs, segs, t, w, bias, NP: tl.constexpr, W: tl.constexpr, SILU: tl.constexpr,
          HAS_DOC: tl.constexpr):
    """The gradient at the pre-activation of the NP positions from t: dout (gs[i] at t + i)
    through the SiLU, whose pre-activation is recomputed from the window (win[i + k] holds x at
    t + i - (W - 1) + k; segs[i]: the latest document start at t + i, used with HAS_DOC)."""
    dpre = ()
    for i in tl.static_range(NP):
        g = gs[i]
        if SILU:
            if HAS_DOC:
                pre = _pre(win, i, t + i, segs[i], w, bias, W, HAS_DOC)
            else:
                pre = _pre(win, i, t + i, 0, w, bias, W, HAS_DOC)
            sig = sigmoid(pre)
            g = g * sig * (1.0 + pre * (1.0 - sig))
        dpre = dpre + (g,)
    return dpre


@triton.jit
def _conv_rows_fwd_kernel(x_ptr, p_ptr, seg_ptr, out_ptr, L, seg_len,
                          sx_b, sx_d, so_b, so_d, ss_b,
                          W: tl.constexpr, SILU: tl.constexpr, HAS_DOC: tl.constexpr,
                          BD: tl.constexpr, K: tl.constexpr):
    d = tl.program_id(0) * BD + tl.arange(0, BD)
    b = tl.program_id(1).to(tl.int64)
    t0 = tl.program_id(2) * seg_len
    dcol = d[:, None].to(tl.int64)
    x_row = x_ptr + b * sx_b + dcol * sx_d
    o_row = out_ptr + b * so_b + dcol * so_d
    s_row = seg_ptr + b * ss_b + dcol * 0
    w, bias = _row_params(p_ptr, d, W)
    before = _chunk(x_row, t0 - K, L, BD, K)  # the W - 1 inputs before the segment (0 before 0)
    prev = ()
    for i in tl.static_range(W - 1):
        prev = prev + (before[K - (W - 1) + i],)
    x_n = _chunk_raw(x_row, t0, L, K)  # chunk c + 1's loads go out before chunk c's work
    if HAS_DOC:
        s_n = _chunk_raw(s_row, t0, L, K)
    for c in range(tl.minimum(seg_len, L - t0) // K):
        t = t0 + c * K
        x_c = x_n
        x_n = _chunk_raw(x_row, t + K, L, K)
        win = prev + _chunk_of(x_c, BD, K)  # x at t - (W - 1) .. t + K - 1
        if HAS_DOC:
            s_c = s_n
            s_n = _chunk_raw(s_row, t + K, L, K)
            segs = _chunk_of(s_c, BD, K)
        ys = ()
        for j in tl.static_range(K):
            if HAS_DOC:
                acc = _pre(win, j, t + j, segs[j], w, bias, W, HAS_DOC)
            else:
                acc = _pre(win, j, t + j, bias, w, bias, W, HAS_DOC)
            if SILU:
                acc = acc * sigmoid(acc)
            ys = ys + (acc,)
        store_steps(o_row, t, ys, BD, K)
        prev = ()
        for i in tl.static_range(W - 1):
            prev = prev + (win[K + i],)


@triton.jit
def _conv_rows_bwd_kernel(x_ptr, p_ptr, seg_ptr, dout_ptr, dx_ptr, part_ptr, L, seg_len, dim,
                          sx_b, sx_d, sg_b, sg_d, sdx_b, sdx_d, ss_b,
                          W: tl.constexpr, SILU: tl.constexpr, HAS_DOC: tl.constexpr,
                          BD: tl.constexpr, K: tl.constexpr):
    """dx for the segment's positions, and this program's partial sums of dweight and dbias
    ((segments * B, D, W + 1) fp32, summed by the launcher: deterministic, no atomics)."""
    d = tl.program_id(0) * BD + tl.arange(0, BD)
    b = tl.program_id(1).to(tl.int64)
    sid = tl.program_id(2)
    t0 = sid * seg_len
    dcol = d[:, None].to(tl.int64)
    x_row = x_ptr + b * sx_b + dcol * sx_d
    g_row = dout_ptr + b * sg_b + dcol * sg_d
    dx_row = dx_ptr + b * sdx_b + dcol * sdx_d
    s_row = seg_ptr + b * ss_b + dcol * 0
    w, bias = _row_params(p_ptr, d, W)
    zero = tl.zeros([BD], dtype=tl.float32)
    dw = ()
    for k in tl.static_range(W):
        dw = dw + (zero,)
    db = zero
    before = _chunk(x_row, t0 - K, L, BD, K)
    prev = ()
    for i in tl.static_range(W - 1):
        prev = prev + (before[K - (W - 1) + i],)
    x_cur = _chunk(x_row, t0, L, BD, K)
    g_cur = _chunk(g_row, t0, L, BD, K)
    x_n = _chunk_raw(x_row, t0 + K, L, K)  # loads run two chunks ahead of the work
    g_n = _chunk_raw(g_row, t0 + K, L, K)
    if HAS_DOC:
        s_cur = _chunk(s_row, t0, L, BD, K)
        s_n = _chunk_raw(s_row, t0 + K, L, K)
    for c in range(tl.minimum(seg_len, L - t0) // K):
        t = t0 + c * K
        # the next chunk (zeros past the end): its first W - 1 steps' gradients reach this chunk
        x_nxt = _chunk_of(x_n, BD, K)
        g_nxt = _chunk_of(g_n, BD, K)
        x_n = _chunk_raw(x_row, t + 2 * K, L, K)
        g_n = _chunk_raw(g_row, t + 2 * K, L, K)
        segs = ()
        if HAS_DOC:
            s_nxt = _chunk_of(s_n, BD, K)
            s_n = _chunk_raw(s_row, t + 2 * K, L, K)
            segs = s_cur + s_nxt
        win = prev + x_cur + x_nxt  # x at t - (W - 1) .. t + 2K - 1
        gs = g_cur + g_nxt
        # gradient at the pre-activation of positions t .. t + K + W - 2
        dpre = _dpre(win, gs, segs, t, w, bias, K + W - 1, W, SILU, HAS_DOC)
        # this chunk's share of dweight and dbias: output positions t .. t + K - 1
        dw_new = ()
        for k in tl.static_range(W):
            acc = dw[k]
            for j in tl.static_range(K):
                v = win[j + k]
                if HAS_DOC:
                    v = tl.where(segs[j] <= t + j - (W - 1) + k, v, 0.0)
                acc += dpre[j] * v
            dw_new = dw_new + (acc,)
        dw = dw_new
        for j in tl.static_range(K):
            db += dpre[j]
        # dx at q = t + i: input q feeds outputs q .. q + W - 1 (with weight W - 1 - m), unless
        # a document starts after q and at or before that output
        dxs = ()
        for i in tl.static_range(K):
            acc = zero
            for m in tl.static_range(W):
                g = dpre[i + m]
                if HAS_DOC:
                    g = tl.where(segs[i + m] <= t + i, g, 0.0)
                acc += w[W - 1 - m] * g
            dxs = dxs + (acc,)
        store_steps(dx_row, t, dxs, BD, K)
        prev = ()
        for i in tl.static_range(W - 1):
            prev = prev + (win[K + i],)
        x_cur = x_nxt
        g_cur = g_nxt
        if HAS_DOC:
            s_cur = s_nxt
    row = (sid * tl.num_programs(1) + b) * dim + d
    for k in tl.static_range(W):
        tl.store(part_ptr + row * (W + 1) + k, dw[k])
    tl.store(part_ptr + row * (W + 1) + W, db)


def _params(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """(D, W + 1) fp32: the weights and the bias (0 without one) of each channel."""
    p = torch.zeros(weight.shape[0], weight.shape[1] + 1, device=weight.device,
                    dtype=torch.float32)
    p[:, :-1] = weight
    if bias is not None:
        p[:, -1] = bias
    return p


def param_grads(part: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    """(programs, D, W + 1) fp32 partials -> dweight, dbias (None without a bias) in the
    parameters' dtypes: a fixed-order sum, so the result is deterministic."""
    sums = part.sum(0)
    dbias = sums[:, -1].to(bias.dtype) if bias is not None else None
    return sums[:, :-1].to(weight.dtype), dbias


def _seg_len(seqlen: int, seg_len: int, chunk: int) -> int:
    """Steps per program: seg_len rounded to whole chunks, at most the sequence."""
    return min(max(chunk, seg_len // chunk * chunk), seqlen)


def conv_rows_fwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  seg: torch.Tensor | None, silu: bool, out: torch.Tensor, *, chunk: int,
                  seg_len: int, num_warps: int) -> torch.Tensor:
    bsz, dim, seqlen = x.shape
    width = weight.shape[1]
    steps = _seg_len(seqlen, seg_len, chunk)
    bd = 32 * num_warps
    grid = (dim // bd, bsz, triton.cdiv(seqlen, steps))
    _conv_rows_fwd_kernel[grid](
        x, _params(weight, bias), seg if seg is not None else x, out, seqlen, steps,
        x.stride(0), x.stride(1), out.stride(0), out.stride(1),
        seg.stride(0) if seg is not None else 0,
        W=width, SILU=silu, HAS_DOC=seg is not None, BD=bd, K=chunk, num_warps=num_warps)
    return out


def conv_rows_bwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  seg: torch.Tensor | None, dout: torch.Tensor, silu: bool, dx: torch.Tensor,
                  *, chunk: int, seg_len: int, num_warps: int):
    """-> dx, dweight, dbias (dweight and dbias in the parameters' dtypes)."""
    bsz, dim, seqlen = x.shape
    width = weight.shape[1]
    steps = _seg_len(seqlen, seg_len, chunk)
    n_segs = triton.cdiv(seqlen, steps)
    bd = 32 * num_warps
    part = torch.empty(n_segs * bsz, dim, width + 1, device=x.device, dtype=torch.float32)
    _conv_rows_bwd_kernel[(dim // bd, bsz, n_segs)](
        x, _params(weight, bias), seg if seg is not None else x, dout, dx, part, seqlen, steps,
        dim, x.stride(0), x.stride(1), dout.stride(0), dout.stride(1), dx.stride(0),
        dx.stride(1), seg.stride(0) if seg is not None else 0,
        W=width, SILU=silu, HAS_DOC=seg is not None, BD=bd, K=chunk, num_warps=num_warps)
    return (dx, *param_grads(part, weight, bias))
