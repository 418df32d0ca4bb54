"""Triton depthwise causal conv1d (Mamba's short conv), forward and backward, with document starts.

out[b, d, t] = act(bias[d] + sum_k weight[d, k] * x[b, d, t - (W - 1) + k])

Positions before 0 read ``initial_state`` (B, D, W - 1) (oldest first), or zero without one. With
``doc_starts`` (B, L) bool, an input before the latest document start at or before t counts as
zero, so packed documents do not see each other through the conv window (a start at t = 0 also
hides the initial state). The kernels take any strides; the output keeps a channel-last memory
layout when x has one (as a slice of the in_proj output does), so x_proj reads it without a copy.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mambalab.ops.triton import config_from_env
from mambalab.ops.triton.causal_conv1d_rows import conv_rows_bwd, conv_rows_fwd
from mambalab.ops.triton.causal_conv1d_time import conv_time_bwd, conv_time_fwd, group_steps

# 32 x 32 tiles: no register spills in any kernel here (checked with cuobjdump for sm_90)
_BLOCK_D = 32
_BLOCK_L = 32

# impl: "time" (causal_conv1d_time.py: lanes along time, one 16-byte group of a row a thread),
# "rows" (causal_conv1d_rows.py: one thread per (batch, channel) row and time segment, K
# steps a vector, no buffer) or "tile" (this file's kernels: (32 channels, 32 steps) tiles, the
# backward in two passes through a (B, D, L) fp32 buffer). "rows" is the default since the fifth
# session's H200 runs (scripts/bench_conv.py, mixer layout, B=16, L=2048, D=1536): forward 0.122
# ms against 0.186, backward with the forward it reruns 0.278 against 0.802; in the training
# benchmark's profile at 16 x 2048 the conv went from 22.9 to 9.3 ms a step
# (docs/kernels/causal_conv1d.md). Shapes outside its contract (rows_ok) take the tile kernels.
# rows_chunk: K for 16-bit inputs (16: two 16-byte loads per lane, a whole 32-byte sector of a
# bf16 row; fp32 inputs take at most 8, one vector per 16-byte load), lowered to a power of two
# that divides L. rows_seg_len: steps per program, or "auto": as many segments as bring the
# programs to about rows_warps_per_sm warps per SM (12 was the fastest measured: 1024 steps at
# B=16, 512 at B=8; shorter segments reread more of the window and were slower). time_warps:
# warps per program of the time kernels (a program covers 32 x time_warps groups of one row);
# time_fwd_groups, time_bwd_groups, time_fwd_warps, time_bwd_warps: the time kernels' groups a
# thread (2: the backward's W - 1 recomputed positions past a thread's steps, its partials'
# shuffles and both kernels' loads of a neighbouring group spread over twice the outputs: 46.5
# instructions an output against 62, offline) and warps a program (None: time_warps).
# scripts/bench_conv.py on an H200 (eleventh session, mixer layout, D=1536, L=2048), B=32, ms:
# backward 0.194 with 2 groups and 4 warps, 0.236 with 1 and 8; the forward was fastest as it
# was (0.118 with 1 and 8, 0.130 with 2 and 4); B=16 backward 0.139 / 0.138, B=8 0.129 / 0.138.
# Shapes outside the time kernels' contract (time_ok) take the rows kernels, then the tile ones.
CONFIG = {"impl": "time", "rows_chunk": 16, "rows_seg_len": "auto", "rows_warps": 1,
          "rows_warps_per_sm": 12, "time_warps": 8, "time_fwd_groups": 1,
          "time_bwd_groups": 2, "time_fwd_warps": None, "time_bwd_warps": 4}
# MAMBALAB_CONV_CONFIG='{"impl": "tile"}' (JSON) overrides CONFIG keys for a process (benchmarks).
config_from_env(CONFIG, "MAMBALAB_CONV_CONFIG")


def time_ok(x: torch.Tensor, weight: torch.Tensor, initial_state: torch.Tensor | None,
            seg: torch.Tensor | None, *outs: torch.Tensor) -> bool:
    """Whether the time kernels take this call: CONFIG["impl"] == "time" and their contract
    (causal_conv1d_time.py: no initial state, W - 1 <= G, whole groups along time, unit stride
    along time and the other strides whole groups, 16-byte aligned bases)."""
    if CONFIG["impl"] != "time" or initial_state is not None or x.shape[2] == 0:
        return False
    g = group_steps(x)
    if weight.shape[1] - 1 > g or x.shape[2] % g or g not in (4, 8):
        return False
    if seg is not None and not (seg.stride(1) == 1 and seg.stride(0) % g == 0
                                and seg.data_ptr() % 16 == 0):
        return False
    return all(t.stride(2) == 1 and t.stride(0) % g == 0 and t.stride(1) % g == 0
               and t.data_ptr() % 16 == 0 for t in (x, *outs))


def rows_chunk(x: torch.Tensor, width: int) -> int | None:
    """K for the rows kernels: CONFIG's rows_chunk (at most 8 for 32-bit inputs), halved until it
    divides L; None when no K >= max(W - 1, 2) does."""
    k = min(CONFIG["rows_chunk"], 256 // (8 * x.element_size()))
    while k >= max(width - 1, 2):
        if x.shape[2] % k == 0:
            return k
        k //= 2
    return None


def rows_ok(x: torch.Tensor, weight: torch.Tensor, initial_state: torch.Tensor | None,
            *outs: torch.Tensor) -> bool:
    """Whether the rows kernels take this call: CONFIG["impl"] "rows" (or "time", where time_ok
    said no) and their contract
    (no initial state, a K from rows_chunk, so W <= K + 1 and whole chunks, whole warps of
    channels, unit stride along time for x and every output / gradient given)."""
    if CONFIG["impl"] not in ("rows", "time"):  # "time" falls back to rows
        return False
    return (initial_state is None and rows_chunk(x, weight.shape[1]) is not None
            and x.shape[1] % (32 * CONFIG["rows_warps"]) == 0
            and all(t.stride(2) == 1 for t in (x, *outs)))


def _rows_kw(x: torch.Tensor, width: int) -> dict:
    chunk = rows_chunk(x, width)
    seg_len = CONFIG["rows_seg_len"]
    bsz, dim, seqlen = x.shape
    if seg_len == "auto":
        sms = (torch.cuda.get_device_properties(x.device).multi_processor_count
               if x.device.type == "cuda" else 1)
        warps_per_seg = bsz * dim // 32  # one warp per 32 rows and segment, whatever rows_warps
        n_segs = max(1, round(sms * CONFIG["rows_warps_per_sm"] / warps_per_seg))
        seg_len = -(-seqlen // n_segs)
    return dict(chunk=chunk, seg_len=int(seg_len), num_warps=CONFIG["rows_warps"])


@triton.jit
def _load_x(x_ptr, init_ptr, b, offs_d, pos, mask_d, seg, D, L,
            stride_xb, stride_xd, stride_xl, stride_ib, stride_id, stride_il,
            W: tl.constexpr, HAS_INIT: tl.constexpr):
    """x at positions ``pos`` (BLOCK_L,) as fp32 (BLOCK_D, BLOCK_L); the initial state below 0,
    zero outside the sequence or before the document start ``seg`` of each output position."""
    ok = (pos >= seg) & (pos < L)
    in_seq = ok & (pos >= 0)
    val = tl.load(x_ptr + b * stride_xb + offs_d[:, None] * stride_xd + pos[None, :] * stride_xl,
                  mask=mask_d[:, None] & in_seq[None, :], other=0.0).to(tl.float32)
    if HAS_INIT:
        in_init = ok & (pos < 0) & (pos >= -(W - 1))
        ipos = pos + (W - 1)
        val += tl.load(init_ptr + b * stride_ib + offs_d[:, None] * stride_id
                       + ipos[None, :] * stride_il,
                       mask=mask_d[:, None] & in_init[None, :], other=0.0).to(tl.float32)
    return val


@triton.jit
def _seg_start(seg_ptr, b, pos, L, stride_sb, HAS_DOC: tl.constexpr, W: tl.constexpr):
    """The latest document start at or before each output position (-W: none, all inputs count)."""
    if HAS_DOC:
        return tl.load(seg_ptr + b * stride_sb + pos, mask=(pos >= 0) & (pos < L), other=-W)
    return tl.full(pos.shape, -W, tl.int32)


@triton.jit
def _conv_fwd_kernel(x_ptr, w_ptr, bias_ptr, init_ptr, seg_ptr, out_ptr, D, L,
                     stride_xb, stride_xd, stride_xl, stride_wd, stride_wk,
                     stride_ib, stride_id, stride_il, stride_sb,
                     stride_ob, stride_od, stride_ol,
                     W: tl.constexpr, SILU: tl.constexpr, HAS_BIAS: tl.constexpr,
                     HAS_INIT: tl.constexpr, HAS_DOC: tl.constexpr,
                     BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr):
    b = tl.program_id(0)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    pos = tl.program_id(2) * BLOCK_L + tl.arange(0, BLOCK_L)
    mask_d = offs_d < D
    seg = _seg_start(seg_ptr, b, pos, L, stride_sb, HAS_DOC, W)
    acc = tl.zeros((BLOCK_D, BLOCK_L), dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)[:, None]
    for k in tl.static_range(W):
        wk = tl.load(w_ptr + offs_d * stride_wd + k * stride_wk, mask=mask_d, other=0.0)
        xk = _load_x(x_ptr, init_ptr, b, offs_d, pos - (W - 1) + k, mask_d, seg, D, L,
                     stride_xb, stride_xd, stride_xl, stride_ib, stride_id, stride_il,
                     W, HAS_INIT)
        acc += wk.to(tl.float32)[:, None] * xk
    if SILU:
        acc = acc * tl.sigmoid(acc)
    tl.store(out_ptr + b * stride_ob + offs_d[:, None] * stride_od + pos[None, :] * stride_ol,
             acc.to(out_ptr.dtype.element_ty), mask=mask_d[:, None] & (pos < L)[None, :])


@triton.jit
def _dpre_at(x_ptr, w_ptr, bias_ptr, init_ptr, seg_ptr, dout_ptr, b, offs_d, p, mask_d, D, L,
             stride_xb, stride_xd, stride_xl, stride_wd, stride_wk,
             stride_ib, stride_id, stride_il, stride_sb, stride_gb, stride_gd, stride_gl,
             W: tl.constexpr, SILU: tl.constexpr, HAS_BIAS: tl.constexpr,
             HAS_INIT: tl.constexpr, HAS_DOC: tl.constexpr, BLOCK_D: tl.constexpr):
    """Gradient at the pre-activation of output positions ``p`` (zero outside [0, L))."""
    valid = (p >= 0) & (p < L)
    g = tl.load(dout_ptr + b * stride_gb + offs_d[:, None] * stride_gd + p[None, :] * stride_gl,
                mask=mask_d[:, None] & valid[None, :], other=0.0).to(tl.float32)
    if SILU:
        seg = _seg_start(seg_ptr, b, p, L, stride_sb, HAS_DOC, W)
        pre = tl.zeros(g.shape, dtype=tl.float32)
        if HAS_BIAS:
            pre += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)[:, None]
        for k in tl.static_range(W):
            wk = tl.load(w_ptr + offs_d * stride_wd + k * stride_wk, mask=mask_d, other=0.0)
            pre += wk.to(tl.float32)[:, None] * _load_x(
                x_ptr, init_ptr, b, offs_d, p - (W - 1) + k, mask_d, seg, D, L,
                stride_xb, stride_xd, stride_xl, stride_ib, stride_id, stride_il, W, HAS_INIT)
        sig = tl.sigmoid(pre)
        g = g * sig * (1.0 + pre * (1.0 - sig))
    return g


@triton.jit
def _conv_bwd_dpre_kernel(x_ptr, w_ptr, bias_ptr, init_ptr, seg_ptr, dout_ptr, dpre_ptr,
                          dw_part_ptr, db_part_ptr, D, L,
                          stride_xb, stride_xd, stride_xl, stride_wd, stride_wk,
                          stride_ib, stride_id, stride_il, stride_sb,
                          stride_gb, stride_gd, stride_gl, stride_pb, stride_pd, stride_pl,
                          W: tl.constexpr, SILU: tl.constexpr, HAS_BIAS: tl.constexpr,
                          HAS_INIT: tl.constexpr, HAS_DOC: tl.constexpr,
                          BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr):
    """Pass 1: the gradient at the pre-activation (fp32, recomputing the conv), and this tile's
    partial sums of dweight and dbias, one row per (b, L-block): summed by the wrapper, which
    keeps the result deterministic (no atomics)."""
    b = tl.program_id(0)
    pid_l = tl.program_id(2)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    pos = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    mask_d = offs_d < D
    g = _dpre_at(x_ptr, w_ptr, bias_ptr, init_ptr, seg_ptr, dout_ptr, b, offs_d, pos, mask_d,
                 D, L, stride_xb, stride_xd, stride_xl, stride_wd, stride_wk,
                 stride_ib, stride_id, stride_il, stride_sb, stride_gb, stride_gd, stride_gl,
                 W, SILU, HAS_BIAS, HAS_INIT, HAS_DOC, BLOCK_D)
    tl.store(dpre_ptr + b * stride_pb + offs_d[:, None] * stride_pd + pos[None, :] * stride_pl,
             g, mask=mask_d[:, None] & (pos < L)[None, :])
    seg = _seg_start(seg_ptr, b, pos, L, stride_sb, HAS_DOC, W)
    row = b * tl.num_programs(2) + pid_l
    for k in tl.static_range(W):
        xk = _load_x(x_ptr, init_ptr, b, offs_d, pos - (W - 1) + k, mask_d, seg, D, L,
                     stride_xb, stride_xd, stride_xl, stride_ib, stride_id, stride_il,
                     W, HAS_INIT)
        tl.store(dw_part_ptr + row * D * W + offs_d * W + k, tl.sum(g * xk, axis=1), mask=mask_d)
    if HAS_BIAS:
        tl.store(db_part_ptr + row * D + offs_d, tl.sum(g, axis=1), mask=mask_d)


@triton.jit
def _dx_at(w_ptr, seg_ptr, dpre_ptr, b, offs_d, q, mask_d, L, stride_wd, stride_wk, stride_sb,
           stride_pb, stride_pd, stride_pl, W: tl.constexpr, HAS_DOC: tl.constexpr,
           BLOCK_D: tl.constexpr, BLOCK_Q: tl.constexpr):
    """Gradient of the inputs at positions ``q``: input q feeds outputs q .. q + W - 1, unless a
    document starts between them (then q lies before that output's start)."""
    dx = tl.zeros((BLOCK_D, BLOCK_Q), dtype=tl.float32)
    for j in tl.static_range(W):
        p = q + j
        seg = _seg_start(seg_ptr, b, p, L, stride_sb, HAS_DOC, W)
        ok = (p >= 0) & (p < L) & (q >= seg)
        g = tl.load(dpre_ptr + b * stride_pb + offs_d[:, None] * stride_pd + p[None, :] * stride_pl,
                    mask=mask_d[:, None] & ok[None, :], other=0.0)
        wk = tl.load(w_ptr + offs_d * stride_wd + (W - 1 - j) * stride_wk, mask=mask_d, other=0.0)
        dx += wk.to(tl.float32)[:, None] * g
    return dx


@triton.jit
def _conv_bwd_dx_kernel(w_ptr, seg_ptr, dpre_ptr, dx_ptr, dinit_ptr, D, L,
                        stride_wd, stride_wk, stride_sb, stride_pb, stride_pd, stride_pl,
                        stride_dxb, stride_dxd, stride_dxl,
                        W: tl.constexpr, W_POW2: tl.constexpr, HAS_INIT: tl.constexpr,
                        HAS_DOC: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr):
    """Pass 2: dx from the pre-activation gradient; the first L-block also writes the gradient
    of the initial state."""
    b = tl.program_id(0)
    pid_l = tl.program_id(2)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    pos = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    mask_d = offs_d < D
    dx = _dx_at(w_ptr, seg_ptr, dpre_ptr, b, offs_d, pos, mask_d, L, stride_wd, stride_wk,
                stride_sb, stride_pb, stride_pd, stride_pl, W, HAS_DOC, BLOCK_D, BLOCK_L)
    tl.store(dx_ptr + b * stride_dxb + offs_d[:, None] * stride_dxd + pos[None, :] * stride_dxl,
             dx.to(dx_ptr.dtype.element_ty), mask=mask_d[:, None] & (pos < L)[None, :])
    if HAS_INIT:
        if pid_l == 0:
            ipos = tl.arange(0, W_POW2)
            dinit = _dx_at(w_ptr, seg_ptr, dpre_ptr, b, offs_d, ipos - (W - 1), mask_d, L,
                           stride_wd, stride_wk, stride_sb, stride_pb, stride_pd, stride_pl,
                           W, HAS_DOC, BLOCK_D, W_POW2)
            # dinit is contiguous (B, D, W - 1), allocated by the wrapper
            tl.store(dinit_ptr + b * D * (W - 1) + offs_d[:, None] * (W - 1) + ipos[None, :],
                     dinit.to(dinit_ptr.dtype.element_ty),
                     mask=mask_d[:, None] & (ipos < W - 1)[None, :])


def _like_layout(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """An empty (B, D, L) tensor, channel-last in memory when x is (so x_proj reads it directly)."""
    bsz, dim, seqlen = x.shape
    dtype = dtype or x.dtype
    if x.stride(1) == 1 and seqlen > 1:
        return torch.empty(bsz, seqlen, dim, device=x.device, dtype=dtype).transpose(1, 2)
    return torch.empty(bsz, dim, seqlen, device=x.device, dtype=dtype)


def segment_starts(doc_starts: torch.Tensor | None, width: int) -> torch.Tensor | None:
    """(B, L) bool -> (B, L) int32: the latest document start at or before each position
    (-width where none has been seen, so that every input counts)."""
    if doc_starts is None:
        return None
    seqlen = doc_starts.shape[-1]
    idx = torch.arange(seqlen, device=doc_starts.device, dtype=torch.int32)
    marked = torch.where(doc_starts.bool(), idx, torch.full_like(idx, -width))
    return marked.cummax(dim=-1).values.to(torch.int32).contiguous()


def _check(x, weight, bias, activation, initial_state, doc_starts) -> None:
    if x.dim() != 3:
        raise ValueError(f"causal_conv1d: x must be (B, D, L), got shape {tuple(x.shape)}")
    bsz, dim, seqlen = x.shape
    if weight.dim() != 2 or weight.shape[0] != dim:
        raise ValueError(f"causal_conv1d: weight must be (D={dim}, W), got {tuple(weight.shape)}; "
                         "or nn.Conv1d's (D, 1, W)")
    if bias is not None and tuple(bias.shape) != (dim,):
        raise ValueError(f"causal_conv1d: bias must be ({dim},), got {tuple(bias.shape)}")
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"causal_conv1d: activation must be 'silu' or None, got {activation!r}")
    width = weight.shape[1]
    if initial_state is not None and tuple(initial_state.shape) != (bsz, dim, width - 1):
        raise ValueError(f"causal_conv1d: initial_state must be (B, D, W - 1) = "
                         f"{(bsz, dim, width - 1)}, got {tuple(initial_state.shape)}")
    if doc_starts is not None and tuple(doc_starts.shape) != (bsz, seqlen):
        raise ValueError(f"causal_conv1d: doc_starts must be (B, L) = {(bsz, seqlen)}, "
                         f"got {tuple(doc_starts.shape)}")


def _no_strides(t: torch.Tensor | None, n: int) -> tuple[int, ...]:
    return tuple(t.stride()) if t is not None else (0,) * n


def causal_conv1d_fwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      initial_state: torch.Tensor | None, seg: torch.Tensor | None,
                      silu: bool, out: torch.Tensor | None = None) -> torch.Tensor:
    """Low-level forward: x (B, D, L), weight (D, W), seg from ``segment_starts`` -> (B, D, L)."""
    bsz, dim, seqlen = x.shape
    width = weight.shape[1]
    out = _like_layout(x) if out is None else out
    if time_ok(x, weight, initial_state, seg, out):
        return conv_time_fwd(x, weight, bias, seg, silu, out,
                             num_warps=CONFIG["time_fwd_warps"] or CONFIG["time_warps"],
                             groups_per_thread=int(CONFIG["time_fwd_groups"]))
    if rows_ok(x, weight, initial_state, out):
        return conv_rows_fwd(x, weight, bias, seg, silu, out, **_rows_kw(x, width))
    grid = (bsz, triton.cdiv(dim, _BLOCK_D), triton.cdiv(seqlen, _BLOCK_L))
    _conv_fwd_kernel[grid](
        x, weight, bias if bias is not None else weight, initial_state if initial_state is not None
        else x, seg if seg is not None else x, out, dim, seqlen,
        *x.stride(), *weight.stride(), *_no_strides(initial_state, 3),
        seg.stride(0) if seg is not None else 0, *out.stride(),
        W=width, SILU=silu, HAS_BIAS=bias is not None, HAS_INIT=initial_state is not None,
        HAS_DOC=seg is not None, BLOCK_D=_BLOCK_D, BLOCK_L=_BLOCK_L)
    return out


def causal_conv1d_bwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      initial_state: torch.Tensor | None, seg: torch.Tensor | None,
                      dout: torch.Tensor, silu: bool, dx: torch.Tensor | None = None):
    """Low-level backward (recomputes the pre-activation) -> dx, dweight, dbias, dinitial_state.

    Two passes (pre-activation gradient in fp32, then dx), which keeps each kernel's registers
    low; ``dx`` may be given pre-allocated (a slice of dxz in the fused mixer)."""
    bsz, dim, seqlen = x.shape
    width = weight.shape[1]
    dx = _like_layout(x) if dx is None else dx
    if time_ok(x, weight, initial_state, seg, dout, dx):
        return (*conv_time_bwd(x, weight, bias, seg, dout, silu, dx,
                               num_warps=CONFIG["time_bwd_warps"] or CONFIG["time_warps"],
                               groups_per_thread=int(CONFIG["time_bwd_groups"])), None)
    if rows_ok(x, weight, initial_state, dout, dx):
        return (*conv_rows_bwd(x, weight, bias, seg, dout, silu, dx, **_rows_kw(x, width)), None)
    dpre = _like_layout(x, torch.float32)                                   # (B, D, L) fp32
    n_l = triton.cdiv(seqlen, _BLOCK_L)
    dw_part = torch.empty(bsz * n_l, dim, width, device=x.device, dtype=torch.float32)
    db_part = torch.empty(bsz * n_l, dim, device=x.device, dtype=torch.float32) \
        if bias is not None else None
    dinit = torch.empty(bsz, dim, width - 1, device=x.device, dtype=initial_state.dtype) \
        if initial_state is not None else None
    grid = (bsz, triton.cdiv(dim, _BLOCK_D), n_l)
    seg_arg = seg if seg is not None else x
    seg_stride = seg.stride(0) if seg is not None else 0
    _conv_bwd_dpre_kernel[grid](
        x, weight, bias if bias is not None else weight,
        initial_state if initial_state is not None else x, seg_arg, dout, dpre, dw_part,
        db_part if db_part is not None else dw_part, dim, seqlen,
        *x.stride(), *weight.stride(), *_no_strides(initial_state, 3), seg_stride,
        *dout.stride(), *dpre.stride(),
        W=width, SILU=silu, HAS_BIAS=bias is not None, HAS_INIT=initial_state is not None,
        HAS_DOC=seg is not None, BLOCK_D=_BLOCK_D, BLOCK_L=_BLOCK_L)
    _conv_bwd_dx_kernel[grid](
        weight, seg_arg, dpre, dx, dinit if dinit is not None else dx, dim, seqlen,
        *weight.stride(), seg_stride, *dpre.stride(), *dx.stride(),
        W=width, W_POW2=triton.next_power_of_2(max(width - 1, 1)),
        HAS_INIT=initial_state is not None, HAS_DOC=seg is not None,
        BLOCK_D=_BLOCK_D, BLOCK_L=_BLOCK_L)
    dweight = dw_part.sum(0).to(weight.dtype)
    dbias = db_part.sum(0).to(bias.dtype) if bias is not None else None
    return dx, dweight, dbias, dinit


class _CausalConv1dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, initial_state, seg, silu):
        out = causal_conv1d_fwd(x, weight, bias, initial_state, seg, silu)
        ctx.save_for_backward(x, weight, bias, initial_state, seg)
        ctx.silu = silu
        return out

    @staticmethod
    def backward(ctx, dout):
        x, weight, bias, initial_state, seg = ctx.saved_tensors
        dx, dweight, dbias, dinit = causal_conv1d_bwd(x, weight, bias, initial_state, seg,
                                                      dout, ctx.silu)
        return dx, dweight, dbias, dinit, None, None


def final_conv_state(x: torch.Tensor, initial_state: torch.Tensor | None,
                     doc_starts: torch.Tensor | None, width: int) -> torch.Tensor:
    """The last W - 1 inputs (B, D, W - 1), zeroed before the last document start, so decoding the
    next token continues the last document only. Plain PyTorch: tiny, and differentiable as is."""
    bsz, dim, seqlen = x.shape
    prev = initial_state if initial_state is not None else x.new_zeros(bsz, dim, width - 1)
    window = torch.cat([prev.to(x.dtype), x], dim=-1)[..., -(width - 1):]  # (B, D, W-1)
    if doc_starts is None:
        return window
    # position of each window slot in the sequence (negative: from the initial state)
    slot_pos = torch.arange(seqlen - (width - 1), seqlen, device=x.device)
    idx = torch.arange(seqlen, device=x.device)
    last_start = torch.where(doc_starts.bool(), idx, torch.full_like(idx, -width)).amax(-1)
    keep = slot_pos[None, :] >= last_start[:, None]  # (B, W-1)
    return window * keep[:, None, :].to(window.dtype)


def causal_conv1d_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                         activation: str | None = "silu",
                         initial_state: torch.Tensor | None = None,
                         doc_starts: torch.Tensor | None = None,
                         return_final_state: bool = False):
    """x (B, D, L) any strides, weight (D, W) or (D, 1, W) -> (B, D, L)
    [, final_state (B, D, W - 1)].

    Differentiable in x, weight, bias and initial_state; see the module docstring for the
    semantics of ``initial_state`` and ``doc_starts``."""
    if weight.dim() == 3 and weight.shape[1] == 1:  # nn.Conv1d's (D, 1, W)
        weight = weight[:, 0]
    _check(x, weight, bias, activation, initial_state, doc_starts)
    width = weight.shape[1]
    seg = segment_starts(doc_starts, width)
    out = _CausalConv1dFn.apply(x, weight, bias, initial_state, seg, activation is not None)
    if return_final_state:
        return out, final_conv_state(x, initial_state, doc_starts, width)
    return out
