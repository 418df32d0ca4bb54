"""Backward kernel of the "lanes" selective scan in state passes: one thread per (batch,
channel), its states taken NP at a time.

The one-pass backward (selective_scan_lanes_bwd.py) keeps the K recomputed states of all N
states of its channel live through the reverse pass: K x N fp32 values (128 at K = 8, N = 16),
which with everything else fills the 255 registers a thread can have, spills, and makes an
unrolled chunk body of about 3,600 instructions, more than the instruction cache holds (Nsight
Compute on the H200: 24% of its stall samples waiting for instructions, 32% for loads, spills
among them; only 8 warps fit per SM).

Here each chunk's per-step work (loads, softplus, the gate) is done once, and then a runtime
loop over PASSES passes runs the recomputation and the reverse recurrence for NP states at a
time (NP = N / PASSES, rounded up to a power of two): K x NP live states and a loop body about
1 / PASSES of the states' code. What crosses from pass to pass is small: the per-step partial
sums over states (for du, ddt and y: 3 K values) and each pass's carried g and dA, which rotate
through the loop's carried values (the pass after next is the same pass of the chunk before).
The sums over channels for dB and dC are a reduce-scatter of 2 NP values per step
(lanes.reduce_scatter_np), stored by the lanes that end with them into the same per-warp
partials, (B, D / 32, 32, L) fp32, as the one-pass kernel.

Contract as the forward's (selective_scan_lanes_fwd.py), with the states it saved at the same K.
"""
from __future__ import annotations

import triton
import triton.language as tl

from mambalab.ops.triton.lanes import (first_level_pair, load_raw, raw_steps, reduce_scatter_np,
                                      shfl_idx_at, store_steps, store_steps_masked)
from mambalab.ops.triton.selective_scan_fwd import sigmoid, softplus
from mambalab.ops.triton.selective_scan_lanes_fwd import chunk_inputs, unpack_inputs

LN2: tl.constexpr = tl.constexpr(0.6931471805599453)


@triton.jit
def _pass_recompute(hp, dts, u, bc, doc, A2, n0, HAS_DOCS: tl.constexpr, NP: tl.constexpr,
                    K: tl.constexpr, BD: tl.constexpr):
    """h_t of states n0 .. n0 + NP - 1 for the chunk's K steps from hp (the saved chunk-start
    state): K tuples of NP (BD,) tensors."""
    hs = ()
    for j in tl.static_range(K):
        dtu = dts[j] * u[j]
        hn = ()
        for i in tl.static_range(NP):
            a = tl.exp2(dts[j] * A2[i])
            if HAS_DOCS:
                a = tl.where(doc[j] != 0, 0.0, a)
            hn = hn + (a * hp[i] + dtu * shfl_idx_at(bc[j], n0 + i, BD),)
        hs = hs + (hn,)
        hp = hn
    return hs


@triton.jit
def _set(ts, I: tl.constexpr, v, K: tl.constexpr):
    """ts with element I replaced by v."""
    out = ()
    for j in tl.static_range(K):
        if j == I:
            out = out + (v,)
        else:
            out = out + (ts[j],)
    return out


@triton.jit
def _pass_reverse(g, dA_acc, gBs, gAs, ys, hs, dts, u, dout, bc, doc, A2, n0, lane, zero,
                  fzero, dbc_row, t, wmask, RE_EXP: tl.constexpr, NEED_Y: tl.constexpr, HAS_DOCS: tl.constexpr,
                  NP: tl.constexpr, K: tl.constexpr, BD: tl.constexpr):
    """The reverse recurrence over the chunk for states n0 .. n0 + NP - 1. Adds this pass's part
    of the per-step sums over states to gBs (of g B), gAs (of g A a h_{t-1}, A in base 2) and ys
    (of C h), stores the lane's dB or dC after the reduce-scatter (four steps at a time: one
    16-byte vector) and returns (g, dA_acc, gBs, gAs, ys)."""
    Q: tl.constexpr = 4 if K >= 4 else K
    dbc_r = ()
    for jj in tl.static_range(K):
        # step K - 1 - jj (written out: Triton 3.6 does not keep a name assigned here constexpr)
        hj = hs[K - 1 - jj]
        dtj = dts[K - 1 - jj]
        dtu = dtj * u[K - 1 - jj]
        doutj = dout[K - 1 - jj]
        bcj = bc[K - 1 - jj]
        gB = zero
        gAah = zero
        ypre = zero
        gn = ()
        dA_n = ()
        pairs = ()  # (dB_n, dC_n) after the reduce-scatter's first level
        for i in tl.static_range(NP):
            Cn = shfl_idx_at(bcj, 16 + n0 + i, BD)
            Bn = shfl_idx_at(bcj, n0 + i, BD)
            gv = g[i] + Cn * doutj
            if NEED_Y:
                ypre += Cn * hj[i]
            pairs = pairs + (first_level_pair(gv * dtu, hj[i] * doutj, lane, BD),)
            gB += gv * Bn
            if RE_EXP:
                # a_t again from dt A + fzero (a runtime 0.0 the compilers cannot fold), so that
                # neither LLVM nor ptxas merges it with the recomputation's a_t, which would keep
                # those K x NP values live through the pass for it
                a = tl.exp2(tl.fma(dtj, A2[i], fzero))
            else:
                a = tl.exp2(dtj * A2[i])
            if HAS_DOCS:
                a = tl.where(doc[K - 1 - jj] != 0, 0.0, a)
            # g_t a_t h_{t-1}, with a_t h_{t-1} = h_t - dt_t B_t u_t: h_{t-1} need not be live
            gah = gv * (hj[i] - dtu * Bn)
            dA_n = dA_n + (dA_acc[i] + gah * dtj,)
            gAah += gah * A2[i]
            gn = gn + (a * gv,)
        g = gn
        dA_acc = dA_n
        gBs = _set(gBs, K - 1 - jj, gBs[K - 1 - jj] + gB, K)
        gAs = _set(gAs, K - 1 - jj, gAs[K - 1 - jj] + gAah, K)
        if NEED_Y:
            ys = _set(ys, K - 1 - jj, ys[K - 1 - jj] + ypre, K)
        dbc_r = (reduce_scatter_np(pairs, lane, NP, BD),) + dbc_r
        if (jj + 1) % Q == 0:
            store_steps_masked(dbc_row, t + K - 1 - jj, dbc_r, wmask, BD, Q)
            dbc_r = ()
    return g, dA_acc, gBs, gAs, ys


@triton.jit
def _lanes_bwd_passes_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, pc_ptr, z_ptr, doc_ptr, states_ptr, dy_ptr, dlast_ptr,
    du_ptr, ddt_ptr, dz_ptr, dbc_ptr, dA_ptr, dpc_ptr, dh0_ptr, y_ptr, scr_ptr,
    fzero, dim, seqlen, n_chunks,
    su_b, su_d, sdt_b, sdt_d, sz_b, sz_d, sB_b, sB_n, sC_b, sC_n, sdoc_b, sdy_b, sdy_d,
    so_b, so_d, sy_b, sy_d,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_DOCS: tl.constexpr, HAS_DLAST: tl.constexpr, WRITE_Y: tl.constexpr, N: tl.constexpr,
    BD: tl.constexpr, K: tl.constexpr, PASSES: tl.constexpr, NP: tl.constexpr,
    RE_EXP: tl.constexpr,
):
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    d = pid_d * BD + tl.arange(0, BD)  # (BD,): one channel per thread
    lane = tl.arange(0, BD) % 32
    dn = b * dim * N + d * N  # (B, D, N) slabs, lanes N apart (lanes_fwd says why)
    MASK_N: tl.constexpr = NP * PASSES != N  # some passes hold padding states
    NEED_Y: tl.constexpr = HAS_Z or WRITE_Y
    NT: tl.constexpr = NP * PASSES
    zero = tl.zeros([BD], dtype=tl.float32)
    # g (a_{t+1} g_{t+1}, what the step after passes back; dL/dh_T at the end) and dA of every
    # state wait between their passes in a per-thread scratch, (B, 2, NT, D) fp32 (channels
    # contiguous: one line per warp), read at a pass's start and written at its end by the same
    # thread, so only the current pass's 2 NP values take registers.
    g_scr = scr_ptr + b * 2 * NT * dim + d
    dA_scr = g_scr + NT * dim
    for n in tl.static_range(NT):
        if HAS_DLAST and n < N:
            tl.store(g_scr + n * dim, tl.load(dlast_ptr + dn + n))
        else:
            tl.store(g_scr + n * dim, zero)
        tl.store(dA_scr + n * dim, zero)
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
    bc_row = tl.where(ln < 16, B_row, C_row)  # (BD, 1): the row each lane reads B or C from
    # After a pass's reduce-scatter lane i holds dB (i < 16) or dC of state n0 + jl, the same
    # sum as the lanes SUB apart in its group, of which the first stores it.
    SUB: tl.constexpr = 16 // NP
    jl = (ln % 16) // SUB  # (BD, 1)
    dbc_warp = dbc_ptr + (b * (dim // 32) + dcol // 32) * 32 * seqlen  # (BD, 1)
    dbc_row0 = dbc_warp + ((ln // 16) * 16 + jl) * seqlen
    st_row = states_ptr + b * n_chunks * N * dim + d
    u_ty: tl.constexpr = u_ptr.dtype.element_ty
    dt_ty: tl.constexpr = dt_ptr.dtype.element_ty
    z_ty: tl.constexpr = z_ptr.dtype.element_ty
    bc_ty: tl.constexpr = B_ptr.dtype.element_ty

    # Each chunk issues the loads of the forward's inputs for the chunk before it (the next one
    # processed) before its own work, as the one-pass kernel's PIPE 1.
    nxt = chunk_inputs(u_row, dt_row, z_row, bc_row, doc_row, lane, (n_chunks - 1) * K, HAS_Z,
                       HAS_DOCS, N, K)
    for it in range(n_chunks):
        c = n_chunks - 1 - it
        t = c * K
        cp = tl.maximum(c - 1, 0)  # chunk 0 loads itself again (in bounds, unused)
        cur = nxt
        nxt = chunk_inputs(u_row, dt_row, z_row, bc_row, doc_row, lane, cp * K, HAS_Z, HAS_DOCS,
                           N, K)
        u, dtr, z, bc, doc = unpack_inputs(cur, u_ty, dt_ty, z_ty, bc_ty, HAS_Z, HAS_DOCS, BD, K)
        dy = raw_steps(load_raw(dy_row, t, K), BD, K)
        dts = ()
        dout = ()
        gB = ()
        gAah = ()
        ypre = ()
        for j in tl.static_range(K):
            dtp = dtr[j]
            if HAS_BIAS:
                dtp += bias
            if SOFTPLUS:
                dts = dts + (softplus(dtp),)
            else:
                dts = dts + (dtp,)
            if HAS_Z:
                dout = dout + (dy[j] * z[j] * sigmoid(z[j]),)
            else:
                dout = dout + (dy[j],)
            gB = gB + (zero,)
            gAah = gAah + (zero,)
            ypre = ypre + (zero,)
        st_c = st_row + c * N * dim
        for ps in range(PASSES):
            n0 = ps * NP
            A2 = ()
            h0 = ()
            g = ()
            dA_acc = ()
            for i in tl.static_range(NP):
                if MASK_N:
                    ok = (d * 0 + n0 + i) < N  # (BD,): the interpreter wants a tensor mask
                    A2 = A2 + (tl.load(A_ptr + d * N + n0 + i, mask=ok, other=0.0)
                               * 1.4426950408889634,)
                    h0 = h0 + (tl.load(st_c + (n0 + i) * dim, mask=ok, other=0.0),)
                else:
                    A2 = A2 + (tl.load(A_ptr + d * N + n0 + i) * 1.4426950408889634,)
                    h0 = h0 + (tl.load(st_c + (n0 + i) * dim),)
                g = g + (tl.load(g_scr + (n0 + i) * dim),)
                dA_acc = dA_acc + (tl.load(dA_scr + (n0 + i) * dim),)
            hs = _pass_recompute(h0, dts, u, bc, doc, A2, n0, HAS_DOCS, NP, K, BD)
            wmask = ((ln % SUB) == 0) & (n0 + jl < N)
            g, dA_acc, gB, gAah, ypre = _pass_reverse(
                g, dA_acc, gB, gAah, ypre, hs, dts, u, dout, bc, doc, A2, n0, lane, zero, fzero,
                dbc_row0 + n0 * seqlen, t, wmask, RE_EXP, NEED_Y, HAS_DOCS, NP, K, BD)
            for i in tl.static_range(NP):
                tl.store(g_scr + (n0 + i) * dim, g[i])
                tl.store(dA_scr + (n0 + i) * dim, dA_acc[i])

        # The per-step outputs from the sums over all states. dt, z and dy are loaded again (from
        # cache: after the pass loop's stores, so the compiler cannot reuse the earlier values
        # and keep them live through the passes).
        dtr = raw_steps(load_raw(dt_row, t, K), BD, K)
        dy = raw_steps(load_raw(dy_row, t, K), BD, K)
        if HAS_Z:
            z = raw_steps(load_raw(z_row, t, K), BD, K)
        du_r = ()
        ddt_r = ()
        dz_r = ()
        y_r = ()
        for j in tl.static_range(K):
            ddt = gAah[j] * LN2 + u[j] * gB[j]  # A = A2 ln 2
            if SOFTPLUS:
                dtp = dtr[j]
                if HAS_BIAS:
                    dtp += bias
                ddt = ddt * sigmoid(dtp)
            du = dts[j] * gB[j]
            yp = ypre[j]
            if HAS_D:
                du += Dv * dout[j]
                dD_acc += dout[j] * u[j]
                if NEED_Y:
                    yp += Dv * u[j]
            dbias_acc += ddt
            du_r = du_r + (du,)
            ddt_r = ddt_r + (ddt,)
            if HAS_Z:
                sig = sigmoid(z[j])
                dz_r = dz_r + (dy[j] * yp * sig * (1.0 + z[j] * (1.0 - sig)),)
                if WRITE_Y:
                    y_r = y_r + (yp * z[j] * sig,)
            elif WRITE_Y:
                y_r = y_r + (yp,)
        store_steps(du_ptr + o_off, t, du_r, BD, K)
        store_steps(ddt_ptr + o_off, t, ddt_r, BD, K)
        if HAS_Z:
            store_steps(dz_ptr + o_off, t, dz_r, BD, K)
        if WRITE_Y:  # the forward's y, which the mixer needs and so need not rerun the forward
            store_steps(y_row, t, y_r, BD, K)

    # g now holds a_0 g_0 = dL/dh_{-1}: the initial state's gradient.
    for n in tl.static_range(N):
        tl.store(dh0_ptr + dn + n, tl.load(g_scr + n * dim))
        tl.store(dA_ptr + dn + n, tl.load(dA_scr + n * dim))
    tl.store(dpc_ptr + b * dim * 2 + d * 2, dD_acc)
    tl.store(dpc_ptr + b * dim * 2 + d * 2 + 1, dbias_acc)
