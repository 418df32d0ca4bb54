"""Depthwise causal conv1d, "time" kernels: lanes along time, 16 bytes of one row a thread.

The rows kernels (causal_conv1d_rows.py) put one row per lane, so each load instruction of a
warp touches 32 rows, 32 bytes each; on an H200 they ran at 2.5x the time their bytes take (the
forward 0.21 ms a layer at 32 x 2048 x 1536 for 403 MB; ninth session's profile), where
causal-conv1d's CUDA kernels, which read rows along time, took half as long at B=8 (ops table).
Here a program is one (channel, batch) row and R = 32 x warps groups of G consecutive steps
(G = 16 bytes of the input: 8 for 16-bit, 4 for fp32), one group a thread, so a warp reads 512
contiguous bytes. A thread's conv window reaches W - 1 steps into the group before its own (and,
in the backward, W - 1 into the one after): those come from a second (and third) load of the
neighbouring group, which a neighbouring lane loads too, so L1 or L2 serves most of it. (Taking
them from the neighbouring lane by a shuffle, only the warp's edge lanes loading, measured slower
on an H200: forward + backward at B=32 0.376 ms against 0.355, at B=8 0.225 against 0.146;
docs/kernels/causal_conv1d.md.) The G values of a group are split into G (R,) tensors
(lanes.split_steps), so the window slides in registers as in the rows kernels. A thread may take
GPT consecutive groups (causal_conv1d.CONFIG's time_fwd_groups / time_bwd_groups; the backward
takes 2 by default), which spreads the neighbouring groups' loads, the backward's W - 1
recomputed positions and its partials' shuffles over more outputs.

Per output the forward reads x once from memory and writes out once; the backward reads x and
dout once and writes dx once, recomputing the pre-activation (and its SiLU derivative) for the
W - 1 positions past the group. dweight and dbias come out as per-warp partials, (time blocks x
B x warps, D, W + 1), summed by the launcher (deterministic).

Contract (causal_conv1d.time_ok checks it, else another kernel runs): no initial state, W - 1 <=
G, L a multiple of G, unit stride along time, the other strides of x, out, dout and dx multiples of
G elements and their base addresses of 16 bytes (so that each group is one aligned vector: strides
are passed in units of G, which tells Triton so). Document starts (``seg`` from
causal_conv1d.segment_starts) are handled as in the other kernels: an input before the latest
document start at or before an output position counts as zero.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mambalab.ops.triton.causal_conv1d_rows import _params as _params_table
from mambalab.ops.triton.causal_conv1d_rows import _dpre, _pre, _row_params, param_grads
from mambalab.ops.triton.lanes import join_steps, shfl_xor, split_steps
from mambalab.ops.triton.selective_scan_fwd import sigmoid


@triton.jit
def _groups(base, t_g, ok, G: tl.constexpr, R: tl.constexpr, FP32: tl.constexpr):
    """The G steps from t_g (R,) of a row (base: scalar pointer) as G (R,) tensors, step 0
    first; zeros where ok (R,) is False. One 16-byte load a thread."""
    j = tl.arange(0, G)[None, :]
    v = tl.load(base + t_g[:, None] + j, mask=ok[:, None], other=0)
    if FP32:
        v = v.to(tl.float32)
    return split_steps(v, R, G)


@triton.jit
def _conv_time_fwd_kernel(x_ptr, p_ptr, seg_ptr, out_ptr, L, n_tb,
                          sx_b, sx_d, so_b, so_d, ss_b,
                          W: tl.constexpr, SILU: tl.constexpr, HAS_DOC: tl.constexpr,
                          G: tl.constexpr, R: tl.constexpr, GPT: tl.constexpr):
    """out for the program's steps; a thread takes GPT consecutive groups (S = GPT x G steps),
    so that its load of the group before (for the window) serves more outputs."""
    S: tl.constexpr = G * GPT
    pid = tl.program_id(0)
    d = pid // n_tb
    b = tl.program_id(1).to(tl.int64)
    t_g = ((pid % n_tb) * R + tl.arange(0, R)) * S  # (R,) first step of each thread's groups
    ok = t_g < L
    x_row = x_ptr + (b * sx_b + d.to(tl.int64) * sx_d) * G  # strides come in units of G
    o_row = out_ptr + (b * so_b + d.to(tl.int64) * so_d) * G
    w, bias = _row_params(p_ptr, d, W)  # scalars: one channel a program
    before = _groups(x_row, t_g - G, ok & (t_g >= G), G, R, True)
    win = ()
    for i in tl.static_range(W - 1):  # x at t_g - (W - 1) .. t_g - 1
        win = win + (before[G - (W - 1) + i],)
    segs = ()
    for k in tl.static_range(GPT):  # x at t_g .. t_g + S - 1 (0 past L)
        win = win + _groups(x_row, t_g + k * G, t_g + k * G < L, G, R, True)
        if HAS_DOC:
            segs = segs + _groups(seg_ptr + b * ss_b * G, t_g + k * G, t_g + k * G < L, G, R,
                                  False)
    jj = tl.arange(0, G)[None, :]
    for k in tl.static_range(GPT):
        ys = ()
        for j in tl.static_range(G):
            if HAS_DOC:
                acc = _pre(win, k * G + j, t_g + k * G + j, segs[k * G + j], w, bias, W,
                           HAS_DOC)
            else:
                acc = _pre(win, k * G + j, t_g + k * G + j, 0, w, bias, W, HAS_DOC)
            if SILU:
                acc = acc * sigmoid(acc)
            ys = ys + (acc,)
        tl.store(o_row + t_g[:, None] + k * G + jj,
                 join_steps(ys, R, G).to(out_ptr.dtype.element_ty),
                 mask=(t_g + k * G < L)[:, None])


@triton.jit
def _conv_time_bwd_kernel(x_ptr, p_ptr, seg_ptr, dout_ptr, dx_ptr, part_ptr, L, n_tb, dim,
                          sx_b, sx_d, sg_b, sg_d, sdx_b, sdx_d, ss_b,
                          W: tl.constexpr, SILU: tl.constexpr, HAS_DOC: tl.constexpr,
                          G: tl.constexpr, R: tl.constexpr, GPT: tl.constexpr):
    """dx for the program's steps and its warps' partial sums of dweight and dbias. A thread
    takes GPT consecutive groups (S = GPT x G steps): the W - 1 positions past its steps, whose
    pre-activation it recomputes, and its share of the partials' shuffles are spread over more
    outputs."""
    S: tl.constexpr = G * GPT
    pid = tl.program_id(0)
    tb = pid % n_tb
    d = pid // n_tb
    b = tl.program_id(1).to(tl.int64)
    t_g = (tb * R + tl.arange(0, R)) * S
    lane = tl.arange(0, R) % 32
    ok = t_g < L
    ok_prev = ok & (t_g >= G)
    ok_next = ok & (t_g + S < L)
    x_row = x_ptr + (b * sx_b + d.to(tl.int64) * sx_d) * G
    g_row = dout_ptr + (b * sg_b + d.to(tl.int64) * sg_d) * G
    dx_row = dx_ptr + (b * sdx_b + d.to(tl.int64) * sdx_d) * G
    w, bias = _row_params(p_ptr, d, W)  # scalars: one channel a program
    before_g = _groups(x_row, t_g - G, ok_prev, G, R, True)
    win = ()
    for i in tl.static_range(W - 1):
        win = win + (before_g[G - (W - 1) + i],)
    gs = ()
    for k in tl.static_range(GPT):  # x and dout at t_g .. t_g + S - 1 (0 past L)
        win = win + _groups(x_row, t_g + k * G, t_g + k * G < L, G, R, True)
        gs = gs + _groups(g_row, t_g + k * G, t_g + k * G < L, G, R, True)
    x_nxt = _groups(x_row, t_g + S, ok_next, G, R, True)
    g_nxt = _groups(g_row, t_g + S, ok_next, G, R, True)
    for i in tl.static_range(W - 1):  # x at t_g - (W - 1) .. t_g + S + W - 2
        win = win + (x_nxt[i],)
    for i in tl.static_range(W - 1):  # dout at t_g .. t_g + S + W - 2 (0 past L)
        gs = gs + (g_nxt[i],)
    segs = ()
    if HAS_DOC:
        s_row = seg_ptr + b * ss_b * G
        for k in tl.static_range(GPT):
            segs = segs + _groups(s_row, t_g + k * G, t_g + k * G < L, G, R, False)
        s_nxt = _groups(s_row, t_g + S, ok_next, G, R, False)
        for i in tl.static_range(W - 1):
            segs = segs + (s_nxt[i],)
    # gradient at the pre-activation of positions t_g .. t_g + S + W - 2
    dpre = _dpre(win, gs, segs, t_g, w, bias, S + W - 1, W, SILU, HAS_DOC)
    # dx at q = t_g + i: input q feeds outputs q .. q + W - 1 (weight W - 1 - m), unless a
    # document starts after q and at or before that output
    jj = tl.arange(0, G)[None, :]
    for k in tl.static_range(GPT):
        dxs = ()
        for ii in tl.static_range(G):
            acc = tl.zeros([R], dtype=tl.float32)
            for m in tl.static_range(W):
                g = dpre[k * G + ii + m]
                if HAS_DOC:
                    g = tl.where(segs[k * G + ii + m] <= t_g + k * G + ii, g, 0.0)
                acc += w[W - 1 - m] * g
            dxs = dxs + (acc,)
        tl.store(dx_row + t_g[:, None] + k * G + jj,
                 join_steps(dxs, R, G).to(dx_ptr.dtype.element_ty),
                 mask=(t_g + k * G < L)[:, None])
    # each warp's dweight and dbias over its output positions (dpre is 0 past L, as dout is read
    # as 0 there), summed over the warp's lanes only: a sum over the program would wait at a
    # barrier; (time blocks x B x warps, D, W + 1) partials, summed by the launcher
    # (a tl.sum over the warp gives a layout that Triton converts through shared memory for the
    # store; the butterfly leaves every lane with the sum, and lane 0 stores it)
    wrow = ((tb * tl.num_programs(1) + b) * (R // 32) + tl.arange(0, R) // 32) * dim + d
    part = part_ptr + wrow * (W + 1)
    for k in tl.static_range(W + 1):
        acc = tl.zeros([R], dtype=tl.float32)
        for j in tl.static_range(S):
            if k == W:  # dbias
                acc += dpre[j]
            else:
                v = win[j + k]
                if HAS_DOC:
                    v = tl.where(segs[j] <= t_g + j - (W - 1) + k, v, 0.0)
                acc += dpre[j] * v
        for m in tl.static_range(5):
            acc += shfl_xor(acc, 16 >> m, R)
        tl.store(part + k, acc, mask=lane == 0)


def group_steps(x: torch.Tensor) -> int:
    """G: the steps in 16 bytes of x."""
    return 16 // x.element_size()


def _grid(x: torch.Tensor, num_warps: int, gpt: int = 1) -> tuple[int, int, int]:
    """(R, time blocks a row, grid) for threads of gpt groups each."""
    bsz, dim, seqlen = x.shape
    r = 32 * num_warps
    n_tb = triton.cdiv(triton.cdiv(seqlen // group_steps(x), gpt), r)
    return r, n_tb, (n_tb * dim, bsz)


def _in_groups(t: torch.Tensor, g: int) -> tuple[int, int]:
    """t's batch and channel strides in units of x's G (the contract makes them whole)."""
    return t.stride(0) // g, t.stride(1) // g


def conv_time_fwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  seg: torch.Tensor | None, silu: bool, out: torch.Tensor, *,
                  num_warps: int, groups_per_thread: int = 1) -> torch.Tensor:
    """-> out; a thread takes ``groups_per_thread`` consecutive groups."""
    width = weight.shape[1]
    g = group_steps(x)
    r, n_tb, grid = _grid(x, num_warps, groups_per_thread)
    _conv_time_fwd_kernel[grid](
        x, _params_table(weight, bias), seg if seg is not None else x, out, x.shape[2], n_tb,
        *_in_groups(x, g), *_in_groups(out, g), seg.stride(0) // g if seg is not None else 0,
        W=width, SILU=silu, HAS_DOC=seg is not None, G=g, R=r, GPT=groups_per_thread,
        num_warps=num_warps)
    return out


def conv_time_bwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  seg: torch.Tensor | None, dout: torch.Tensor, silu: bool, dx: torch.Tensor,
                  *, num_warps: int, groups_per_thread: int = 1):
    """-> dx, dweight, dbias (dweight and dbias in the parameters' dtypes). A thread takes
    ``groups_per_thread`` consecutive groups (L need not be a multiple of their steps: a group
    past L is masked)."""
    bsz, dim, _ = x.shape
    width = weight.shape[1]
    g = group_steps(x)
    r, n_tb, grid = _grid(x, num_warps, groups_per_thread)
    part = torch.empty(n_tb * bsz * num_warps, dim, width + 1, device=x.device,
                       dtype=torch.float32)
    _conv_time_bwd_kernel[grid](
        x, _params_table(weight, bias), seg if seg is not None else x, dout, dx, part,
        x.shape[2], n_tb, dim, *_in_groups(x, g), *_in_groups(dout, g), *_in_groups(dx, g),
        seg.stride(0) // g if seg is not None else 0,
        W=width, SILU=silu, HAS_DOC=seg is not None, G=g, R=r, GPT=groups_per_thread,
        num_warps=num_warps)
    return (dx, *param_grads(part, weight, bias))
