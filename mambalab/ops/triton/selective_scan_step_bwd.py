"""Backward kernel of the Triton selective scan, one time step per tile ("step" kernels; not the
default: measured 2.1x slower than the tile kernels on an H200, docs/kernels/selective_scan.md).

One program per (D_IN * D_LANES channels, N_B batches, time segment), tiles (N_IN, D_IN, N_B,
D_LANES, N_OUT): a warp's lanes hold batches and channels, a thread's registers the states (and
D_IN channels); the (d, n) tensors are (N, D) and the B/C and scratch offsets go through runtime
0 and 1 so that Triton's coalescing keeps that layout (the comments below say why). A segment
starts from the gradient carried in from the segments after it (_step_bwd_summary_kernel).
The forward saved h every STATE_EVERY steps; the program walks those blocks from last to first,
first recomputing the state at the start of each chunk of BLOCK_T steps inside the block into its
own scratch (one fp32 tile per chunk; small enough to stay in L2), then walking the chunks from
last to first. In each chunk it recomputes h_t step by step from the chunk's start state, keeping
the chunk's h_t and decays a_t in registers (unrolled: Python tuples of tiles), then runs the
reverse recurrence for g_t = dL/dh_t over the same registers:

    g_t = C_t * dout_t + a_{t+1} * g_{t+1},     a_t = exp(dt_t * A)  (0 where a document starts)

a_{t+1} of the chunk's last step is the first decay of the chunk after it, carried from the
previous iteration, so each decay is computed once. a_t h_{t-1} = h_t - dt_t B_t u_t needs neither
h_{t-1} nor a division. dB and dC are summed over the program's channels (registers, then
D_LANES lanes) and added with one atomic per (batch, n, t) per program; dA, dD and the dt bias
gradient stay in registers and are written once per (batch, channel). du, ddelta and dz are
written in their output's memory order, one step per tile.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mambalab.ops.triton.selective_scan_bwd import grad_buffers, partial_buffers
from mambalab.ops.triton.selective_scan_fwd import delta_of, sigmoid
from mambalab.ops.triton.selective_scan_step_fwd import out_like


@triton.jit
def _valid(t, seqlen, EVEN: tl.constexpr):
    """t < seqlen as an int1 tile (1, 1, 1, 1, 1); constant true (folded away) when L divides evenly."""
    if EVEN:
        return tl.full((1, 1, 1, 1, 1), True, tl.int1)
    else:
        return (tl.zeros((1, 1, 1, 1, 1), dtype=tl.int32) + t) < seqlen


@triton.jit
def _recompute_step(h, t, u_ptrs, dt_ptrs, B_ptrs, doc_ptrs, su_l, sdt_l, sB_l, sdoc_l, seqlen,
                    bias, A2, mask_bd, mask_bn, mask_b, HAS_BIAS: tl.constexpr,
                    SOFTPLUS: tl.constexpr, HAS_DOCS: tl.constexpr, EVEN: tl.constexpr):
    """One step of the forward recurrence: returns (h_t, a_t, u_t, dt_t, dt_t before softplus)."""
    valid = _valid(t, seqlen, EVEN)
    m = mask_bd & valid
    u = tl.load(u_ptrs + t * su_l, mask=m, other=0.0).to(tl.float32)  # (1, DI, NB, DL, 1)
    dt, dtp = delta_of(tl.load(dt_ptrs + t * sdt_l, mask=m, other=0.0).to(tl.float32), bias,
                       HAS_BIAS, SOFTPLUS)
    Bt = tl.load(B_ptrs + t * sB_l, mask=mask_bn & valid, other=0.0).to(tl.float32)
    a = tl.exp2(dt * A2)
    if HAS_DOCS:
        doc = tl.load(doc_ptrs + t * sdoc_l, mask=mask_b & valid, other=0)
        a = tl.where(doc != 0, 0.0, a)
    a = tl.where(valid, a, 1.0)  # identity past the end
    h = a * h + (dt * u) * Bt
    return h, a, u, dt, dtp


@triton.jit(do_not_specialize=["lane_zero"])
def _step_bwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, doc_ptr, states_ptr,
    dy_ptr, dlast_ptr,
    du_ptr, ddt_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr, dh0_ptr, scratch_ptr,
    y_ptr, segP_ptr, segG_ptr,
    batch, dim, seqlen, dstate, n_chunks, seg_blocks, n_segs, lane_zero,
    su_b, su_d, su_l, sdt_b, sdt_d, sdt_l, sz_b, sz_d, sz_l,
    sB_b, sB_n, sB_l, sC_b, sC_n, sC_l, sdoc_b, sdoc_l, sdy_b, sdy_d, sdy_l,
    sg_b, sg_d, sg_l,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_DOCS: tl.constexpr, HAS_DLAST: tl.constexpr, WRITE_Y: tl.constexpr,
    N_IN: tl.constexpr, D_IN: tl.constexpr, N_B: tl.constexpr, D_LANES: tl.constexpr,
    N_OUT: tl.constexpr, BLOCK_T: tl.constexpr, STATE_EVERY: tl.constexpr, EVEN: tl.constexpr,
):
    # Tiles are 5-D (N_IN, D_IN, N_B, D_LANES, N_OUT): state n = i * N_OUT + o, channel
    # d = program's first + k * D_LANES + l, batch = program's first + nb. Triton's default layout
    # fills the lanes from the last axis (N_OUT, then D_LANES, then N_B) and keeps N_IN and D_IN
    # in registers. Batches in lanes never reduce together, so the sums over channels for dB and
    # dC cross only D_LANES lanes (after D_IN register adds), and the sums over states only N_OUT.
    BLOCK_D: tl.constexpr = D_IN * D_LANES
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1)
    pid_s = tl.program_id(2)  # time segment: saved-state blocks [pid_s * seg_blocks, ...)
    n5 = (tl.arange(0, N_IN)[:, None, None, None, None] * N_OUT
          + tl.arange(0, N_OUT)[None, None, None, None, :])  # (NI, 1, 1, 1, NO)
    d5 = (pid_d * BLOCK_D + tl.arange(0, D_IN)[None, :, None, None, None] * D_LANES
          + tl.arange(0, D_LANES)[None, None, None, :, None])  # (1, DI, 1, DL, 1)
    b5 = (pid_b * N_B + tl.arange(0, N_B)[None, None, :, None, None]).to(tl.int64)  # (1,1,NB,1,1)
    if EVEN:  # no partial tiles: constant masks, which the compiler folds away
        mask_b = tl.full((1, 1, N_B, 1, 1), True, tl.int1)
        mask_d = tl.full((1, D_IN, 1, D_LANES, 1), True, tl.int1)
    else:
        mask_b = b5 < batch
        mask_d = d5 < dim
    mask_bd = mask_b & mask_d  # (1, DI, NB, DL, 1)
    mask_n = n5 < dstate if not EVEN else tl.full((N_IN, 1, 1, 1, N_OUT), True, tl.int1)
    mask_bn = mask_b & mask_n  # (NI, 1, NB, 1, NO)
    mask_dn = mask_d & mask_n
    mask_all = mask_dn & mask_b  # (NI, DI, NB, DL, NO)
    # (d, n) tensors (A^T, the saved states, dlast, dh0, dA, the segment summaries) are (N, D),
    # channels contiguous, so that Triton's coalescing puts the lanes on channels and batches and
    # keeps the states in registers (with n contiguous it put lanes on the states axis:
    # shuffles and layout conversions every step in Triton 3.6's SASS).
    dn_off = n5 * dim + d5

    # only A log2(e) is kept (registers are the limit here): sum_n ga A = ln(2) sum_n ga A2
    A2 = tl.load(A_ptr + dn_off, mask=mask_dn, other=0.0) * 1.4426950408889634  # (NI, DI, 1, DL, NO)
    if HAS_D:
        Dv = tl.load(D_ptr + d5, mask=mask_d, other=0.0)  # (1, DI, 1, DL, 1)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d5, mask=mask_d, other=0.0)
    else:
        bias = 0.0

    u_ptrs = u_ptr + b5 * su_b + d5 * su_d  # (1, DI, NB, DL, 1)
    dt_ptrs = dt_ptr + b5 * sdt_b + d5 * sdt_d
    z_ptrs = z_ptr + b5 * sz_b + d5 * sz_d
    dy_ptrs = dy_ptr + b5 * sdy_b + d5 * sdy_d
    g_off = b5 * sg_b + d5 * sg_d  # du, ddelta, dz share one layout
    # B and C are loaded through pointers broadcast over the channel lanes (every lane of a batch
    # reads the same address: one transaction), so the tile already has the state tile's layout.
    # The broadcast goes through lane_zero, a runtime 0: with a constant 0 stride Triton's
    # coalescing sees the channel axis as constant and puts the lanes on the states instead.
    lane0 = tl.arange(0, D_LANES)[None, None, None, :, None].to(tl.int64) * lane_zero
    B_ptrs = B_ptr + b5 * sB_b + n5 * sB_n + lane0  # (NI, 1, NB, DL, NO)
    C_ptrs = C_ptr + b5 * sC_b + n5 * sC_n + lane0
    dBC_off = b5 * dstate * seqlen + n5 * seqlen  # dB, dC: fp32 (B, N, L)
    st_ptrs = states_ptr + b5 * tl.cdiv(n_chunks, STATE_EVERY // BLOCK_T) * dim * dstate + dn_off
    doc_ptrs = doc_ptr + b5 * sdoc_b  # (1, 1, NB, 1, 1)

    zero = tl.zeros((N_IN, D_IN, N_B, D_LANES, N_OUT), dtype=tl.float32)
    g = zero  # g_{t+1}: 0 past the end
    a_next = zero  # a_{t+1}
    if pid_s < n_segs - 1:
        # a_{t+1} g_{t+1} entering this segment from the segments after it
        # (_step_bwd_summary_kernel: G_s = a g at segment s's first step when nothing enters it,
        # P_s its total decay), so carry(s - 1) = G_s + P_s * carry(s).
        seg_off = b5 * n_segs * dim * dstate + dn_off
        for si in range(0, n_segs - 1 - pid_s):
            sp = seg_off + (n_segs - 1 - si) * dim * dstate
            g = (tl.load(segG_ptr + sp, mask=mask_all, other=0.0)
                 + tl.load(segP_ptr + sp, mask=mask_all, other=0.0) * g)
        a_next = zero + 1.0
    dA_acc = zero
    dD_acc = tl.zeros((1, D_IN, N_B, D_LANES, 1), dtype=tl.float32)
    dbias_acc = tl.zeros((1, D_IN, N_B, D_LANES, 1), dtype=tl.float32)
    if HAS_DLAST:
        dlast = tl.load(dlast_ptr + b5 * dim * dstate + dn_off, mask=mask_all, other=0.0)

    # Chunk states: the forward saved h every STATE_EVERY steps; the state at every chunk of
    # BLOCK_T steps inside such a block is recomputed here into this program's scratch (L2-sized:
    # one fp32 tile per chunk of the block), so no (B, L / BLOCK_T, D, N) tensor goes through HBM.
    K: tl.constexpr = STATE_EVERY // BLOCK_T  # chunks per saved state
    TILE: tl.constexpr = N_IN * D_IN * N_B * D_LANES * N_OUT
    # states and D_IN outer, the lanes' (N_B, D_LANES) contiguous: each register's store and
    # load is one coalesced row of the warp, and the coalescing keeps the states in registers
    # (The lanes' offsets go through lane_zero + 1, a runtime 1: seen contiguous, they would be
    # vectorised 4 to a thread, another layout, converted through shared memory every chunk.)
    reg_idx = ((tl.arange(0, N_IN)[:, None, None, None, None] * N_OUT
                + tl.arange(0, N_OUT)[None, None, None, None, :]) * D_IN
               + tl.arange(0, D_IN)[None, :, None, None, None])
    lane_idx = (tl.arange(0, N_B)[None, None, :, None, None] * D_LANES
                + tl.arange(0, D_LANES)[None, None, None, :, None])
    tile_idx = reg_idx * (N_B * D_LANES) + lane_idx * (lane_zero + 1)
    prog = (pid_s * tl.num_programs(1) + pid_b) * tl.num_programs(0) + pid_d
    scr_ptrs = scratch_ptr + prog.to(tl.int64) * (K * TILE) + tile_idx
    blk_lo = pid_s * seg_blocks
    blk_hi = tl.minimum(blk_lo + seg_blocks, tl.cdiv(n_chunks, K))
    for bi in range(blk_hi - blk_lo):
        blk = blk_hi - 1 - bi
        c0 = blk * K
        nc = tl.minimum(K, n_chunks - c0)
        h = tl.load(st_ptrs + blk * dim * dstate, mask=mask_all, other=0.0)
        for k in range(nc):
            tl.store(scr_ptrs + k * TILE, h)
            for j in tl.static_range(BLOCK_T):
                h, _a, _u, _dt, _dtp = _recompute_step(
                    h, (c0 + k) * BLOCK_T + j, u_ptrs, dt_ptrs, B_ptrs, doc_ptrs, su_l, sdt_l,
                    sB_l, sdoc_l, seqlen, bias, A2, mask_bd, mask_bn, mask_b,
                    HAS_BIAS, SOFTPLUS, HAS_DOCS, EVEN)
        for ki in range(nc):
            k = nc - 1 - ki
            c = c0 + k
            # Recompute the chunk forward from its start state; keep h_t, a_t and the
            # per-channel values for the reverse pass (registers, unrolled).
            h = tl.load(scr_ptrs + k * TILE)
            hs = ()
            as_ = ()
            us = ()
            dts = ()
            dtps = ()
            for j in tl.static_range(BLOCK_T):
                h, a, u, dt, dtp = _recompute_step(
                    h, c * BLOCK_T + j, u_ptrs, dt_ptrs, B_ptrs, doc_ptrs, su_l, sdt_l, sB_l,
                    sdoc_l, seqlen, bias, A2, mask_bd, mask_bn, mask_b,
                    HAS_BIAS, SOFTPLUS, HAS_DOCS, EVEN)
                hs = hs + (h,)
                as_ = as_ + (a,)
                us = us + (u,)
                dts = dts + (dt,)
                dtps = dtps + (dtp,)

            for j in tl.static_range(BLOCK_T - 1, -1, -1):
                t = c * BLOCK_T + j
                valid = _valid(t, seqlen, EVEN)
                m = mask_bd & valid
                u = us[j]
                dt = dts[j]
                h = hs[j]
                dy = tl.load(dy_ptrs + t * sdy_l, mask=m, other=0.0).to(tl.float32)
                Bt = tl.load(B_ptrs + t * sB_l, mask=mask_bn & valid, other=0.0).to(tl.float32)
                Ct = tl.load(C_ptrs + t * sC_l, mask=mask_bn & valid, other=0.0).to(tl.float32)
                if HAS_Z or WRITE_Y:
                    y_pre = tl.sum(tl.sum(h * Ct, axis=0, keep_dims=True), axis=4, keep_dims=True)
                    if HAS_D:
                        y_pre += Dv * u
                if HAS_Z:
                    z = tl.load(z_ptrs + t * sz_l, mask=m, other=0.0).to(tl.float32)
                    sig = sigmoid(z)
                    dz = dy * y_pre * sig * (1.0 + z * (1.0 - sig))
                    tl.store(dz_ptr + g_off + t * sg_l, dz.to(dz_ptr.dtype.element_ty), mask=m)
                    dout = dy * z * sig
                    if WRITE_Y:  # the forward's output again, for the caller (out_proj's grad)
                        tl.store(y_ptr + g_off + t * sg_l,
                                 (y_pre * z * sig).to(y_ptr.dtype.element_ty), mask=m)
                else:
                    dout = dy
                    if WRITE_Y:
                        tl.store(y_ptr + g_off + t * sg_l, y_pre.to(y_ptr.dtype.element_ty),
                                 mask=m)
                x = Ct * dout  # dL/dh_t through y_t
                if HAS_DLAST:
                    x += tl.where(t == seqlen - 1, dlast, 0.0)
                g = x + a_next * g  # g_t
                a_next = as_[j]
                # dC and dB: summed over this program's channels (registers, then D_LANES lanes),
                # one atomic per (batch, n, t) per program
                dC = tl.sum(tl.sum(h * dout, axis=1, keep_dims=True), axis=3, keep_dims=True)
                tl.atomic_add(dC_ptr + dBC_off + t, dC, mask=mask_bn & valid, sem="relaxed")
                dtu = dt * u
                dB = tl.sum(tl.sum(g * dtu, axis=1, keep_dims=True), axis=3, keep_dims=True)
                tl.atomic_add(dB_ptr + dBC_off + t, dB, mask=mask_bn & valid, sem="relaxed")
                gB = tl.sum(tl.sum(g * Bt, axis=0, keep_dims=True), axis=4, keep_dims=True)
                ga = g * (h - dtu * Bt)  # g_t * a_t * h_{t-1}
                dA_acc += ga * dt
                ddt = u * gB + tl.sum(tl.sum(ga * A2, axis=0, keep_dims=True), axis=4,
                                      keep_dims=True) * 0.6931471805599453
                du = dt * gB
                if HAS_D:
                    du += Dv * dout
                    dD_acc += dout * u
                if SOFTPLUS:
                    ddt = ddt * sigmoid(dtps[j])
                ddt = tl.where(m, ddt, 0.0)
                dbias_acc += ddt
                tl.store(du_ptr + g_off + t * sg_l, du.to(du_ptr.dtype.element_ty), mask=m)
                tl.store(ddt_ptr + g_off + t * sg_l, ddt.to(ddt_ptr.dtype.element_ty), mask=m)

    # Gradient of the initial state: a_0 * g_0 (a_0 is 0 when a document starts at t = 0).
    tl.store(dh0_ptr + b5 * dim * dstate + dn_off, a_next * g, mask=mask_all & ((tl.zeros((1, 1, 1, 1, 1), dtype=tl.int32) + pid_s) == 0))
    # per-(segment, batch) partials, summed by the caller
    sb = pid_s * batch + b5
    tl.store(dA_ptr + sb * dim * dstate + dn_off, dA_acc, mask=mask_all)
    tl.store(dD_ptr + sb * dim + d5, dD_acc, mask=mask_bd)
    tl.store(dbias_ptr + sb * dim + d5, dbias_acc, mask=mask_bd)


@triton.jit(do_not_specialize=["lane_zero"])
def _step_bwd_summary_kernel(
    dt_ptr, A_ptr, C_ptr, z_ptr, bias_ptr, doc_ptr, dy_ptr, dlast_ptr, segP_ptr, segG_ptr,
    batch, dim, seqlen, dstate, n_chunks, seg_chunks, n_segs, lane_zero,
    sdt_b, sdt_d, sdt_l, sz_b, sz_d, sz_l, sC_b, sC_n, sC_l, sdoc_b, sdoc_l,
    sdy_b, sdy_d, sdy_l,
    HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_DOCS: tl.constexpr, HAS_DLAST: tl.constexpr,
    N_IN: tl.constexpr, D_IN: tl.constexpr, N_B: tl.constexpr, D_LANES: tl.constexpr,
    N_OUT: tl.constexpr, BLOCK_T: tl.constexpr, EVEN: tl.constexpr,
):
    """Segment s (every one but the first): the reverse recurrence g_t = C_t dout_t + a_{t+1}
    g_{t+1} over its steps with nothing entering from the right, giving G_s = a g at its first
    step, and its total decay P_s = exp(A * sum_t dt_t) (0 when a document starts in it): what the
    segment passes to the one before it is G_s + P_s * (what enters it). Same tiles as
    _step_bwd_kernel; reads only dy, z, dt and C."""
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1)
    pid_s = tl.program_id(2) + 1
    BLOCK_D: tl.constexpr = D_IN * D_LANES
    n5 = (tl.arange(0, N_IN)[:, None, None, None, None] * N_OUT
          + tl.arange(0, N_OUT)[None, None, None, None, :])
    d5 = (pid_d * BLOCK_D + tl.arange(0, D_IN)[None, :, None, None, None] * D_LANES
          + tl.arange(0, D_LANES)[None, None, None, :, None])
    b5 = (pid_b * N_B + tl.arange(0, N_B)[None, None, :, None, None]).to(tl.int64)
    if EVEN:
        mask_b = tl.full((1, 1, N_B, 1, 1), True, tl.int1)
        mask_d = tl.full((1, D_IN, 1, D_LANES, 1), True, tl.int1)
    else:
        mask_b = b5 < batch
        mask_d = d5 < dim
    mask_bd = mask_b & mask_d
    mask_n = n5 < dstate if not EVEN else tl.full((N_IN, 1, 1, 1, N_OUT), True, tl.int1)
    mask_bn = mask_b & mask_n
    mask_all = mask_bd & mask_n
    dn_off = n5 * dim + d5  # (N, D) tensors, as in _step_bwd_kernel
    A2 = tl.load(A_ptr + dn_off, mask=mask_d & mask_n, other=0.0) * 1.4426950408889634
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d5, mask=mask_d, other=0.0)
    else:
        bias = 0.0
    dt_ptrs = dt_ptr + b5 * sdt_b + d5 * sdt_d
    z_ptrs = z_ptr + b5 * sz_b + d5 * sz_d
    dy_ptrs = dy_ptr + b5 * sdy_b + d5 * sdy_d
    lane0 = tl.arange(0, D_LANES)[None, None, None, :, None].to(tl.int64) * lane_zero
    C_ptrs = C_ptr + b5 * sC_b + n5 * sC_n + lane0  # see _step_bwd_kernel
    doc_ptrs = doc_ptr + b5 * sdoc_b
    if HAS_DLAST:
        dlast = tl.load(dlast_ptr + b5 * dim * dstate + dn_off, mask=mask_all, other=0.0)
    zero = tl.zeros((N_IN, D_IN, N_B, D_LANES, N_OUT), dtype=tl.float32)
    g = zero
    a_next = zero
    dt_sum = tl.zeros((1, D_IN, N_B, D_LANES, 1), dtype=tl.float32)
    alive = tl.full((1, 1, N_B, 1, 1), 1.0, tl.float32)
    c_lo = pid_s * seg_chunks
    c_hi = tl.minimum(c_lo + seg_chunks, n_chunks)
    for ci in range(c_hi - c_lo):
        c = c_hi - 1 - ci
        for j in tl.static_range(BLOCK_T - 1, -1, -1):
            t = c * BLOCK_T + j
            valid = _valid(t, seqlen, EVEN)
            m = mask_bd & valid
            dy = tl.load(dy_ptrs + t * sdy_l, mask=m, other=0.0).to(tl.float32)
            dtp = tl.load(dt_ptrs + t * sdt_l, mask=m, other=0.0).to(tl.float32)
            Ct = tl.load(C_ptrs + t * sC_l, mask=mask_bn & valid, other=0.0).to(tl.float32)
            if HAS_Z:
                z = tl.load(z_ptrs + t * sz_l, mask=m, other=0.0).to(tl.float32)
                dy = dy * z * sigmoid(z)
            dt, _ = delta_of(dtp, bias, HAS_BIAS, SOFTPLUS)
            dt = tl.where(valid, dt, 0.0)
            x = Ct * dy
            if HAS_DLAST:
                x += tl.where(t == seqlen - 1, dlast, 0.0)
            g = x + a_next * g
            a = tl.exp2(dt * A2)
            if HAS_DOCS:
                doc = tl.load(doc_ptrs + t * sdoc_l, mask=mask_b & valid, other=0)
                a = tl.where(doc != 0, 0.0, a)
                alive = tl.where(doc != 0, 0.0, alive)
            a_next = a
            dt_sum += dt
    seg_off = (b5 * n_segs + pid_s) * dim * dstate + dn_off
    tl.store(segG_ptr + seg_off, a_next * g, mask=mask_all)
    tl.store(segP_ptr + seg_off, tl.exp2(dt_sum * A2) * alive, mask=mask_all)


def step_bwd_launch(
    *, dy: torch.Tensor, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
    C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
    delta_bias: torch.Tensor | None, delta_softplus: bool, doc_starts: torch.Tensor | None,
    states: torch.Tensor, dlast_state: torch.Tensor | None, state_every: int, block_t: int,
    n_in: int, d_in: int, n_batch: int, d_lanes: int, num_warps: int,
    du_out: torch.Tensor | None = None, ddelta_out: torch.Tensor | None = None,
    dz_out: torch.Tensor | None = None, y_out: torch.Tensor | None = None,
    seg_len: int | None = None,
) -> dict[str, torch.Tensor]:
    """Launch the backward; returns the gradients by name, partial sums already reduced. du,
    ddelta and dz come back in u's memory order (channel-last when u is). ``states`` holds h
    every ``state_every`` steps, (B, cdiv(L, state_every), D, N) fp32; state_every must be a
    multiple of block_t. ``y_out``: also write the forward's output y there (the layout of du).
    ``seg_len``: time steps per segment (a multiple of state_every), run in parallel after a
    summary pass over all segments but the first (None: one segment)."""
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    if state_every % block_t:
        raise ValueError(f"state_every ({state_every}) must be a multiple of block_t ({block_t})")
    seg_len = seqlen if seg_len is None else seg_len
    if seg_len < seqlen and seg_len % state_every:
        raise ValueError(f"seg_len ({seg_len}) must be a multiple of state_every ({state_every})")
    n_chunks = triton.cdiv(seqlen, block_t)
    seg_chunks = triton.cdiv(seg_len, block_t)
    n_segs = triton.cdiv(n_chunks, seg_chunks)
    assert states.shape == (batch, triton.cdiv(seqlen, state_every), dstate, dim), \
        "states saved with another state_every"
    dev, f32 = u.device, torch.float32
    # (d, n) tensors go in and come out as (N, D), channels contiguous (see _step_bwd_kernel)
    A = A.t().contiguous()
    if dlast_state is not None:
        dlast_state = dlast_state.transpose(1, 2).contiguous()
    du, ddt, dz = grad_buffers(u, delta, z, du_out, ddelta_out, dz_out,
                               lambda dtype: out_like(u, dtype), unit_stride_l=False)
    dB, dC, dA, dh0, dD, dbias = partial_buffers(batch, dim, dstate, seqlen, dev,
                                                 n_parts=n_segs)
    if y_out is not None and (y_out.shape != u.shape or y_out.stride() != du.stride()):
        raise ValueError(f"y_out must be {tuple(u.shape)} with du's strides {du.stride()}; "
                         f"got {tuple(y_out.shape)} strides {y_out.stride()}")
    zz = z if z is not None else u
    docs = doc_starts if doc_starts is not None else u
    sdoc = (docs.stride(0), docs.stride(1)) if doc_starts is not None else (0, 0)
    bn = triton.next_power_of_2(dstate)
    n_in = min(n_in, bn)
    n_batch = min(n_batch, triton.next_power_of_2(batch))
    even = (seqlen % block_t == 0 and dim % (d_in * d_lanes) == 0 and batch % n_batch == 0
            and dstate == bn)
    tiles = dict(N_IN=n_in, D_IN=d_in, N_B=n_batch, D_LANES=d_lanes, N_OUT=bn // n_in,
                 BLOCK_T=block_t, EVEN=even, num_warps=num_warps)
    grid = (triton.cdiv(dim, d_in * d_lanes), triton.cdiv(batch, n_batch), n_segs)
    segP = segG = A  # valid pointers, never read with one segment
    if n_segs > 1:
        segP = torch.empty((batch, n_segs, dstate, dim), device=dev, dtype=f32)
        segG = torch.empty_like(segP)
        _step_bwd_summary_kernel[(grid[0], grid[1], n_segs - 1)](
            delta, A, C, zz, delta_bias if delta_bias is not None else A, docs, dy,
            dlast_state if dlast_state is not None else A, segP, segG,
            batch, dim, seqlen, dstate, n_chunks, seg_chunks, n_segs, 0,
            *delta.stride(), *zz.stride(), *C.stride(), *sdoc, *dy.stride(),
            HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
            HAS_DOCS=doc_starts is not None, HAS_DLAST=dlast_state is not None, **tiles)
    # per program: the states of one saved block's chunks (recomputed; stays in L2)
    scratch = torch.empty(grid[0] * grid[1] * grid[2] * (state_every // block_t) * n_in * d_in
                          * n_batch * d_lanes * (bn // n_in), device=dev, dtype=f32)
    _step_bwd_kernel[grid](
        u, delta, A, B, C, D if D is not None else A, zz,
        delta_bias if delta_bias is not None else A, docs, states,
        dy, dlast_state if dlast_state is not None else A,
        du, ddt, dz, dB, dC, dA, dD, dbias, dh0, scratch,
        y_out if y_out is not None else du, segP, segG,
        batch, dim, seqlen, dstate, n_chunks, seg_chunks // (state_every // block_t), n_segs, 0,
        *u.stride(), *delta.stride(), *zz.stride(), *B.stride(), *C.stride(), *sdoc, *dy.stride(),
        *du.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=delta_softplus, HAS_DOCS=doc_starts is not None,
        HAS_DLAST=dlast_state is not None, WRITE_Y=y_out is not None,
        STATE_EVERY=state_every, **tiles,
    )
    return {
        "du": du, "ddelta": ddt, "dz": dz if z is not None else None,
        "dA": dA.view(-1, dstate, dim).sum(0).t(), "dB": dB, "dC": dC, "dD": dD.sum(0) if D is not None else None,
        "ddelta_bias": dbias.sum(0) if delta_bias is not None else None,
        "dinitial_state": dh0.view(batch, dstate, dim).transpose(1, 2),
    }
