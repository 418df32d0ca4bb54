"""Backward kernel of the "lanes" selective scan (Mamba-1): one thread per (batch, channel).

The program walks its chunks of K steps from last to first. In each it recomputes h_t for the K
steps from the state the forward saved at the chunk start (all K states in registers), then
runs the reverse recurrence step by step:
    g_t = C_t dout_t + a_{t+1} g_{t+1}        (a_t = exp(dt_t A), 0 where a document starts)
carrying a_t g_t into the step before. Per step and state that is a handful of FMAs, the sums
over the states (for ddt and du) are register adds, and the sums over channels that dB and dC
need (per (batch, t, n): sum over d of g dt u, and of h dout) are one 32-value reduce-scatter per
warp (lanes.py: its first level done per state as each (dB_n, dC_n) pair appears, then
reduce_scatter_rest; lane n ends with dB_n, lane 16 + n with dC_n), stored as a per-warp partial,
(B, D / 32, 32, L) fp32, that the launcher sums over the warps. dA, dD and the dt bias gradient
stay in registers over the sequence, written once per (batch, channel). PIPE 1 issues the loads
of the next chunk's forward inputs before the current chunk's work, PIPE 2 also its dy and saved
state (selective_scan.CONFIG["lanes_bwd_pipeline"] says what each measured).

Contract as the forward's (selective_scan_lanes_fwd.py), with the states it saved at the same K.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mambalab.ops.triton import lanes_states
from mambalab.ops.triton import selective_scan_gluon_bwd as gluon_bwd
from mambalab.ops.triton.dbc_sum import dbc_sum
from mambalab.ops.triton.lanes import (first_level_pair, load_raw, raw_steps, reduce_scatter_rest,
                                      shfl_idx, store_steps, take)
from mambalab.ops.triton.selective_scan_fwd import sigmoid, softplus
from mambalab.ops.triton.selective_scan_lanes_carry import (lanes_carry_launch,
                                                          resolve_segments, segment_chunks,
                                                          sm_count)
from mambalab.ops.triton.selective_scan_lanes_fwd import chunk_inputs, per_channel, unpack_inputs

# the backward's warps an SM that "auto" segments aim at: 8 fit at its 255 registers, and 6 was
# the best fill for batch_parts (measured there); B=8 at D=1536 then runs in 2 segments
BWD_WARPS_PER_SM = 6


@triton.jit
def _reversed(ts, K: tl.constexpr):
    out = ()
    for i in tl.static_range(K):
        out = out + (ts[K - 1 - i],)
    return out


@triton.jit
def _recompute(hp, dts, u, bc, doc, A2, J0: tl.constexpr, NJ: tl.constexpr,
               HAS_DOCS: tl.constexpr, N: tl.constexpr, BD: tl.constexpr):
    """h for steps J0 .. J0 + NJ - 1 of the chunk from hp, the state before step J0: a tuple of
    NJ tuples of N (BD,) tensors."""
    hs = ()
    for jj in tl.static_range(NJ):
        dtu = dts[J0 + jj] * u[J0 + jj]
        hn = ()
        for n in tl.static_range(N):
            a = tl.exp2(dts[J0 + jj] * A2[n])
            if HAS_DOCS:
                a = tl.where(doc[J0 + jj] != 0, 0.0, a)
            hn = hn + (a * hp[n] + dtu * shfl_idx(bc[J0 + jj], n, BD, False),)
        hs = hs + (hn,)
        hp = hn
    return hs


@triton.jit
def _reverse(g, dA_acc, dD_acc, dbias_acc, hs, hbefore, dts, dtps, u, dy, z, bc, doc, A2, Dv,
             lane, zero, J0: tl.constexpr, NJ: tl.constexpr,
             HAS_D: tl.constexpr, HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr,
             HAS_DOCS: tl.constexpr, WRITE_Y: tl.constexpr, N: tl.constexpr, BD: tl.constexpr):
    """The reverse recurrence over steps J0 + NJ - 1 down to J0 (hs: their states, from
    _recompute; hbefore: the state before step J0). Returns the carried sums and, per output,
    NJ (BD,) tensors in time order."""
    du_r = ()
    ddt_r = ()
    dz_r = ()
    dbc_r = ()
    y_r = ()
    for jj in tl.static_range(NJ):
        # step J0 + NJ - 1 - jj (written out: Triton 3.6 does not keep a name assigned here
        # constexpr)
        if NJ - 1 - jj > 0:
            hprev = hs[NJ - 2 - jj]
        else:
            hprev = hbefore
        hj = hs[NJ - 1 - jj]
        dtj = dts[J0 + NJ - 1 - jj]
        uj = u[J0 + NJ - 1 - jj]
        dyj = dy[J0 + NJ - 1 - jj]
        bcj = bc[J0 + NJ - 1 - jj]
        if HAS_DOCS:
            docj = doc[J0 + NJ - 1 - jj]
        if HAS_Z:
            zj = z[J0 + NJ - 1 - jj]
            sig = sigmoid(zj)
            dout = dyj * zj * sig
        else:
            dout = dyj
        dtu = dtj * uj
        gB = zero
        gAah = zero
        ypre = zero
        gn = ()
        dbc_1 = ()  # dB_n and dC_n after the reduce-scatter's first level (lanes.py)
        dA_n = ()
        for n in tl.static_range(N):
            Cn = shfl_idx(bcj, 16 + n, BD, False)
            gv = g[n] + Cn * dout
            if HAS_Z or WRITE_Y:
                ypre += Cn * hj[n]
            dbc_1 = dbc_1 + (first_level_pair(gv * dtu, hj[n] * dout, lane, BD),)
            gB += gv * shfl_idx(bcj, n, BD, False)
            a = tl.exp2(dtj * A2[n])
            if HAS_DOCS:
                a = tl.where(docj != 0, 0.0, a)
            gah = gv * (a * hprev[n])  # g_t a_t h_{t-1}
            dA_n = dA_n + (dA_acc[n] + gah * dtj,)
            gAah += gah * A2[n]
            gn = gn + (a * gv,)
        g = gn
        dA_acc = dA_n
        for n in tl.static_range(N, 16):  # pad to 16 (dB_n = dC_n = 0)
            dbc_1 = dbc_1 + (zero,)
        dbc_r = dbc_r + (reduce_scatter_rest(dbc_1, lane, BD),)
        ddt = gAah * 0.6931471805599453 + uj * gB  # A = A2 ln 2
        if SOFTPLUS:
            ddt = ddt * sigmoid(dtps[J0 + NJ - 1 - jj])
        du = dtj * gB
        if HAS_D:
            du += Dv * dout
            dD_acc += dout * uj
            if HAS_Z or WRITE_Y:
                ypre += Dv * uj
        dbias_acc += ddt
        if HAS_Z:
            dz_r = dz_r + (dyj * ypre * sig * (1.0 + zj * (1.0 - sig)),)
        if WRITE_Y:  # the forward's y, which the mixer needs and so need not rerun the forward
            if HAS_Z:
                y_r = y_r + (ypre * zj * sig,)
            else:
                y_r = y_r + (ypre,)
        du_r = du_r + (du,)
        ddt_r = ddt_r + (ddt,)
    if HAS_Z:
        dz_r = _reversed(dz_r, NJ)
    if WRITE_Y:
        y_r = _reversed(y_r, NJ)
    return (g, dA_acc, dD_acc, dbias_acc, _reversed(du_r, NJ), _reversed(ddt_r, NJ), dz_r,
            _reversed(dbc_r, NJ), y_r)


@triton.jit
def _store_outputs(du_ptr, ddt_ptr, dz_ptr, o_off, dbc_row, y_row, t, outs, HAS_Z: tl.constexpr,
                   WRITE_Y: tl.constexpr, BD: tl.constexpr, NJ: tl.constexpr):
    """_reverse's per-step outputs for steps t .. t + NJ - 1."""
    store_steps(du_ptr + o_off, t, outs[4], BD, NJ)
    store_steps(ddt_ptr + o_off, t, outs[5], BD, NJ)
    if HAS_Z:
        store_steps(dz_ptr + o_off, t, outs[6], BD, NJ)
    store_steps(dbc_row, t, outs[7], BD, NJ)
    if WRITE_Y:
        store_steps(y_row, t, outs[8], BD, NJ)


@triton.jit
def _bwd_rest(dy_row, st, dim, t, N: tl.constexpr, K: tl.constexpr, ST_DN: tl.constexpr):
    """dy's chunk and the saved state at the chunk start (st: pointers), as one flat tuple of raw
    loads (issued a chunk ahead when PIPE == 2). States fp32 or fp16 (CONFIG["lanes_states"])."""
    out = load_raw(dy_row, t, K)
    if ST_DN:  # (B, n_chunks, D, N), one state at a time: the N loads of a warp cover the same
        # lines, which L1 then holds (read as 16-byte vectors, the inverse of lanes.store_vec,
        # the kernel had 742 spill instructions against 64: offline, Triton 3.6)
        for n in tl.static_range(N):
            out = out + (tl.load(st + n).to(tl.float32),)
    else:
        for n in tl.static_range(N):  # (B, n_chunks, N, D): one line per warp
            out = out + (tl.load(st + n * dim).to(tl.float32),)
    return out


@triton.jit
def _lanes_bwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, pc_ptr, z_ptr, doc_ptr, states_ptr, dy_ptr, dlast_ptr,
    du_ptr, ddt_ptr, dz_ptr, dbc_ptr, dA_ptr, dpc_ptr, dh0_ptr, y_ptr, segG_ptr, segP_ptr,
    dim, seqlen, n_chunks, seg_chunks, n_segs, seg_blocks, n_blocks,
    su_b, su_d, sdt_b, sdt_d, sz_b, sz_d, sB_b, sB_n, sC_b, sC_n, sdoc_b, sdy_b, sdy_d,
    so_b, so_d, sy_b, sy_d,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_DOCS: tl.constexpr, HAS_DLAST: tl.constexpr, WRITE_Y: tl.constexpr, N: tl.constexpr,
    BD: tl.constexpr, K: tl.constexpr, PIPE: tl.constexpr, ST_DN: tl.constexpr,
    SEG: tl.constexpr,
):
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    s = 0
    if SEG:  # time segment: chunks [s * seg_chunks, ...) (selective_scan_lanes_carry.py); off,
        # the one-segment kernel exactly (offline, the segmented one had 16 more spill instructions)
        s = tl.program_id(2)
    d = pid_d * BD + tl.arange(0, BD)  # (BD,): one channel per thread
    lane = tl.arange(0, BD) % 32
    dn = b * dim * N + d * N  # (B, D, N) slabs, lanes N apart (lanes_fwd says why)
    A2 = ()
    g = ()  # a_{t+1} g_{t+1}: what the step after passes back (dL/dh_T at the end)
    dA_acc = ()
    for n in tl.static_range(N):
        A2 = A2 + (tl.load(A_ptr + d * N + n) * 1.4426950408889634,)
        if HAS_DLAST:
            g = g + (tl.load(dlast_ptr + dn + n),)
        else:
            g = g + (tl.zeros([BD], dtype=tl.float32),)
        dA_acc = dA_acc + (tl.zeros([BD], dtype=tl.float32),)
    if SEG:  # what enters from the carry blocks after this segment, last first: g <- G + P g
        for si in range(0, n_blocks - (s + 1) * seg_blocks):
            sp = ((b * n_blocks + n_blocks - 1 - si) * dim + d) * N
            gs = ()
            for n in tl.static_range(N):
                gs = gs + (tl.load(segG_ptr + sp + n) + tl.load(segP_ptr + sp + n) * g[n],)
            g = gs
    zero = tl.zeros([BD], dtype=tl.float32)
    Dv = zero
    bias = zero
    if HAS_D:
        Dv = tl.load(pc_ptr + d * 2)
    if HAS_BIAS:
        bias = tl.load(pc_ptr + d * 2 + 1)
    dD_acc = zero
    dbias_acc = zero

    dcol = d[:, None].to(tl.int64)
    u_row = u_ptr + b * su_b + dcol * su_d  # (BD, 1)
    dt_row = dt_ptr + b * sdt_b + dcol * sdt_d
    z_row = z_ptr + b * sz_b + dcol * sz_d
    dy_row = dy_ptr + b * sdy_b + dcol * sdy_d
    o_off = b * so_b + dcol * so_d  # du, ddt, dz: one layout
    y_row = y_ptr + b * sy_b + dcol * sy_d
    ln = lane[:, None].to(tl.int64)
    B_row = B_ptr + b * sB_b + (ln % 16) * sB_n
    C_row = C_ptr + b * sC_b + (ln % 16) * sC_n
    doc_row = doc_ptr + b * sdoc_b + dcol * 0
    # per-warp partials of dB (lanes 0..15) and dC (lanes 16..31): (B, D / 32, 32, L) fp32
    dbc_row = dbc_ptr + ((b * (dim // 32) + dcol // 32) * 32 + ln) * seqlen
    bc_row = tl.where(ln < 16, B_row, C_row)  # (BD, 1): the row each lane reads B or C from
    if ST_DN:
        st_row = states_ptr + b * n_chunks * N * dim + d * N
    else:
        st_row = states_ptr + b * n_chunks * N * dim + d
    u_ty: tl.constexpr = u_ptr.dtype.element_ty
    dt_ty: tl.constexpr = dt_ptr.dtype.element_ty
    z_ty: tl.constexpr = z_ptr.dtype.element_ty
    bc_ty: tl.constexpr = B_ptr.dtype.element_ty
    dy_ty: tl.constexpr = dy_ptr.dtype.element_ty
    NT_DY: tl.constexpr = 1 if K * dy_ty.primitive_bitwidth <= 128 else 2

    # PIPE 1: each chunk issues the loads of the forward's inputs (u, dt, z, B/C, document starts)
    # for the chunk before it (the next one processed) before its own work; PIPE 2: dy and the
    # saved state too. The last chunk's loads go out first.
    c_lo = 0
    c_hi = n_chunks
    if SEG:
        c_lo = s * seg_chunks
        c_hi = tl.minimum(c_lo + seg_chunks, n_chunks)
    c0 = c_hi - 1
    if PIPE >= 1:
        nxt = chunk_inputs(u_row, dt_row, z_row, bc_row, doc_row, lane, c0 * K, HAS_Z, HAS_DOCS,
                           N, K)
    if PIPE >= 2:
        nxt_r = _bwd_rest(dy_row, st_row + c0 * N * dim, dim, c0 * K, N, K, ST_DN)
    for i in range(c_hi - c_lo):
        c = c_hi - 1 - i
        t = c * K
        cp = tl.maximum(c - 1, c_lo)  # the first chunk loads itself again (in bounds, unused)
        if PIPE >= 1:
            cur = nxt
            nxt = chunk_inputs(u_row, dt_row, z_row, bc_row, doc_row, lane, cp * K, HAS_Z,
                               HAS_DOCS, N, K)
        else:
            cur = chunk_inputs(u_row, dt_row, z_row, bc_row, doc_row, lane, t, HAS_Z, HAS_DOCS,
                               N, K)
        if PIPE >= 2:
            cur_r = nxt_r
            nxt_r = _bwd_rest(dy_row, st_row + cp * N * dim, dim, cp * K, N, K, ST_DN)
        else:
            cur_r = _bwd_rest(dy_row, st_row + c * N * dim, dim, t, N, K, ST_DN)
        u, dtr, z, bc, doc = unpack_inputs(cur, u_ty, dt_ty, z_ty, bc_ty, HAS_Z, HAS_DOCS, BD, K)
        dy = raw_steps(take(cur_r, 0, NT_DY), BD, K)
        h0c = take(cur_r, NT_DY, N)
        dts = ()
        dtps = ()
        for j in tl.static_range(K):
            dtp = dtr[j]
            if HAS_BIAS:
                dtp += bias
            dtps = dtps + (dtp,)
            if SOFTPLUS:
                dts = dts + (softplus(dtp),)
            else:
                dts = dts + (dtp,)

        # Recompute h over the chunk from the saved state (all K steps live), then run the
        # reverse recurrence, last step first. (Half a chunk at a time, K / 2 steps live, was
        # measured slower on the H200: the compiler merged the first half's two recomputations
        # and kept the values anyway; docs/kernels/selective_scan.md.)
        hs = _recompute(h0c, dts, u, bc, doc, A2, 0, K, HAS_DOCS, N, BD)
        outs = _reverse(g, dA_acc, dD_acc, dbias_acc, hs, h0c, dts, dtps, u, dy, z, bc, doc,
                        A2, Dv, lane, zero, 0, K, HAS_D, HAS_Z, SOFTPLUS, HAS_DOCS, WRITE_Y, N, BD)
        g, dA_acc, dD_acc, dbias_acc = outs[0], outs[1], outs[2], outs[3]
        _store_outputs(du_ptr, ddt_ptr, dz_ptr, o_off, dbc_row, y_row, t, outs, HAS_Z, WRITE_Y,
                       BD, K)

    # g now holds a g at the segment's first step; in segment 0, dL/dh_{-1}: the initial
    # state's gradient. dA, dD and the bias gradient per (batch, segment), summed by the caller.
    if SEG:  # dA, dpc: (B, S, D, ...)
        dsn = ((b * n_segs + s) * dim + d) * N
        for n in tl.static_range(N):
            tl.store(dA_ptr + dsn + n, dA_acc[n])
            if s == 0:
                tl.store(dh0_ptr + dn + n, g[n])
        dpc = ((b * n_segs + s) * dim + d) * 2
    else:
        for n in tl.static_range(N):
            tl.store(dh0_ptr + dn + n, g[n])
            tl.store(dA_ptr + dn + n, dA_acc[n])
        dpc = b * dim * 2 + d * 2
    tl.store(dpc_ptr + dpc, dD_acc)
    tl.store(dpc_ptr + dpc + 1, dbias_acc)


def batch_parts(batch: int, warps_per_row: int, sms: int | None,
                wave_warps_per_sm: int | None = 8,
                part_warps_per_sm: int = 6) -> list[tuple[int, int]]:
    """[(b0, b1), ...]: the batch rows of each launch. One launch while the B * warps_per_row
    warps fit one wave of ``sms`` SMs holding ``wave_warps_per_sm`` each (the kernel's 255
    registers a thread allow 8); beyond that, equal parts of at most ``part_warps_per_sm`` warps
    an SM. One part when sms or wave_warps_per_sm is None (sms: off CUDA).

    Measured on an H200 (132 SMs, D=1536: 48 warps a row; scripts/bench_scan.py --impl
    lanes-parts, ms): one launch of B=32 (1,536 warps for 1,056 places) took 5.20, its second
    wave running 480 warps at under 4 an SM; two launches of 16 took 4.49. Parts of a full wave
    did worse than parts of 6 an SM: B=64 took 9.69 in 3 x 22 rows, 8.94 in 4 x 16, 9.47 in one
    launch. Below one wave, splitting lost: B=20 took 2.95 in one launch, 3.39 in 2 x 10."""
    if wave_warps_per_sm is None or sms is None:
        return [(0, batch)]
    warps = batch * warps_per_row
    if warps <= sms * wave_warps_per_sm:
        return [(0, batch)]
    n_parts = min(-(-warps // (sms * part_warps_per_sm)), batch)
    size = -(-batch // n_parts)
    return [(b0, min(b0 + size, batch)) for b0 in range(0, batch, size)]


def _launch(*, dy, u, delta, A, B, C, pc, z, doc_starts, states, dlast_state, du, ddelta, dz,
            dbc, dA, dpc, dh0, y_out, has_d: bool, has_bias: bool, delta_softplus: bool,
            chunk: int, bd: int, num_warps: int, pipeline: int, states_dn: bool,
            segments: int, use_gluon: bool = False) -> None:
    """One launch of the kernel over the batch rows of its (already sliced) tensors, in
    ``segments`` time segments (dA and dpc: (B, segments, ...))."""
    batch, dim, seqlen = u.shape
    zz = z if z is not None else u
    docs = doc_starts if doc_starts is not None else u
    n_chunks = seqlen // chunk
    seg_chunks, blk_chunks = segment_chunks(n_chunks, segments)
    assert -(-n_chunks // seg_chunks) == segments, "segments must each hold a chunk"
    n_blocks = -(-n_chunks // blk_chunks)
    segG = segP = A  # valid pointers, never read with one segment
    if segments > 1:
        segG, segP = lanes_carry_launch(
            dy=dy, delta=delta, A=A, C=C, pc=pc, z=z, has_bias=has_bias,
            delta_softplus=delta_softplus, doc_starts=doc_starts, chunk=chunk,
            blk_chunks=blk_chunks, blk0=seg_chunks // blk_chunks, num_warps=num_warps)
    if use_gluon:  # selective_scan_gluon_bwd.py: the same gradients, two threads a channel
        gluon_bwd.launch(
            dy=dy, u=u, delta=delta, A=A, B=B, C=C, pc=pc, z=z, doc_starts=doc_starts,
            states=states, dlast_state=dlast_state, du=du, ddelta=ddelta, dz=dz, dbc=dbc, dA=dA,
            dpc=dpc, dh0=dh0, segG=segG, segP=segP, has_d=has_d, has_bias=has_bias,
            delta_softplus=delta_softplus, n_chunks=n_chunks, seg_chunks=seg_chunks,
            segments=segments, seg_blocks=seg_chunks // blk_chunks, n_blocks=n_blocks)
        return
    _lanes_bwd_kernel[(dim // bd, batch, segments)](
        u, delta, A, B, C, pc, zz, docs, states, dy,
        dlast_state if dlast_state is not None else A,
        du, ddelta, dz, dbc, dA, dpc, dh0, y_out if y_out is not None else du, segG, segP,
        dim, seqlen, n_chunks, seg_chunks, segments, seg_chunks // blk_chunks, n_blocks,
        u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), zz.stride(0), zz.stride(1),
        B.stride(0), B.stride(1), C.stride(0), C.stride(1),
        docs.stride(0) if doc_starts is not None else 0, dy.stride(0), dy.stride(1),
        du.stride(0), du.stride(1),
        y_out.stride(0) if y_out is not None else 0, y_out.stride(1) if y_out is not None else 0,
        HAS_D=has_d, HAS_Z=z is not None, HAS_BIAS=has_bias,
        SOFTPLUS=delta_softplus, HAS_DOCS=doc_starts is not None,
        HAS_DLAST=dlast_state is not None, WRITE_Y=y_out is not None, N=A.shape[1], BD=bd,
        K=chunk, PIPE=int(pipeline), ST_DN=states_dn, SEG=segments > 1, num_warps=num_warps,
    )


def lanes_bwd_launch(
    *, dy: torch.Tensor, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
    C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
    delta_bias: torch.Tensor | None, delta_softplus: bool, doc_starts: torch.Tensor | None,
    states: torch.Tensor, dlast_state: torch.Tensor | None, chunk: int, num_warps: int,
    du: torch.Tensor, ddelta: torch.Tensor, dz: torch.Tensor, pipeline: int = 0,
    y_out: torch.Tensor | None = None, wave_warps_per_sm: int | None = 8,
    partials_16bit: bool = False, dB_out: torch.Tensor | None = None,
    dC_out: torch.Tensor | None = None, segments: int | str = 1, use_gluon: bool = False,
) -> dict[str, torch.Tensor]:
    """Launch the backward into du, ddelta, dz (one layout, unit stride along L); returns the
    gradients by name, partials reduced. dB, dC (B, N, L) in B's and C's dtypes, written into
    ``dB_out`` and ``dC_out`` when given (unit stride along L; the fused mixer passes rows of its
    x_dbl gradient). ``states``: the forward's (lanes_states.py: their layout
    follows from dtype and shape). ``y_out`` (B, D, L), unit stride along L: also write the
    forward's y there (recomputed here anyway). A batch beyond one wave of the device runs in
    several launches (batch_parts); a batch too small to fill it, in ``segments`` time segments
    (an int, or "auto": time_segments at BWD_WARPS_PER_SM). ``use_gluon``: the Gluon kernel
    (selective_scan_gluon_bwd.py) where its contract holds, else this module's."""
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    n_chunks = seqlen // chunk
    states_dn = lanes_states.is_dn(states, batch, n_chunks, dim, dstate)
    f32 = dict(device=u.device, dtype=torch.float32)
    # the per-warp partials in B's dtype when it is 16-bit (dB and dC go back in that dtype;
    # each partial, a sum over 32 channels, is rounded once and the 48 of them are summed in fp32)
    part_dtype = B.dtype if partials_16bit and B.element_size() == 2 else torch.float32
    use_gluon = use_gluon and gluon_bwd.supported(
        dstate=dstate, chunk=chunk, dim=dim, states=states,
        states_dn=states_dn, writes_y=y_out is not None, device=u.device)
    warps_per_row = dim // 16 if use_gluon else dim // 32  # Gluon: two threads a channel
    if use_gluon:  # per 16 channels
        dbc = gluon_bwd.partials(batch, dim, seqlen, u.device, part_dtype)
    else:
        dbc = torch.empty((batch, dim // 32, 32, seqlen), device=u.device, dtype=part_dtype)
    sms = sm_count(u.device) if u.device.type == "cuda" else None
    segments = resolve_segments(segments, batch, warps_per_row, n_chunks, u.device,
                                BWD_WARPS_PER_SM, "lanes_bwd_segments")
    dA = torch.empty((batch, segments, dim, dstate), **f32)
    dpc = torch.empty((batch, segments, dim, 2), **f32)
    dh0 = torch.empty((batch, dim, dstate), **f32)
    pc = per_channel(D, delta_bias, dim, u.device)
    bd = 32 * num_warps
    # Gluon: one launch at any batch (on an H200 one launch of B=32 took 3.33 ms, in parts 3.83)
    parts = (batch_parts(batch, warps_per_row, sms, wave_warps_per_sm)
             if segments == 1 and not use_gluon else [(0, batch)])
    for b0, b1 in parts:
        def rows(t):  # the part's batch rows of a (B, ...) tensor (a view: same strides)
            return t[b0:b1] if t is not None else None

        _launch(dy=rows(dy), u=rows(u), delta=rows(delta), A=A, B=rows(B), C=rows(C), pc=pc,
                z=rows(z), doc_starts=rows(doc_starts), states=rows(states),
                dlast_state=rows(dlast_state), du=rows(du), ddelta=rows(ddelta), dz=rows(dz),
                dbc=rows(dbc), dA=rows(dA), dpc=rows(dpc), dh0=rows(dh0), y_out=rows(y_out),
                has_d=D is not None, has_bias=delta_bias is not None,
                delta_softplus=delta_softplus, chunk=chunk, bd=bd, num_warps=num_warps,
                pipeline=pipeline, states_dn=states_dn, segments=segments, use_gluon=use_gluon)
    if dB_out is None:
        dB_out = torch.empty((batch, dstate, seqlen), device=u.device, dtype=B.dtype)
    if dC_out is None:
        dC_out = torch.empty((batch, dstate, seqlen), device=u.device, dtype=C.dtype)
    dbc_sum(dbc, dstate, dB_out, dC_out)  # summed over the warps in fp32
    return {
        "du": du, "ddelta": ddelta, "dz": dz if z is not None else None,
        "dA": dA.sum((0, 1)), "dB": dB_out, "dC": dC_out,
        "dD": dpc[..., 0].sum((0, 1)) if D is not None else None,
        "ddelta_bias": dpc[..., 1].sum((0, 1)) if delta_bias is not None else None,
        "dinitial_state": dh0,
    }
