"""Backward kernel of the "lanes" selective scan (Mamba-1): one thread per (batch, channel).

The program walks its chunks of K steps from last to first. In each it recomputes h_t for the K
steps from the state the forward saved at the chunk start (all K states in registers), then
runs the reverse recurrence step by step:
    g_t = C_t dout_t + a_{t+1} g_{t+1}        (a_t = exp(dt_t A), 0 where a document starts)
carrying a_t g_t into the step before. Per step and state that is a handful of FMAs, the sums
over the states (for ddt and du) are register adds, and the sums over channels that dB and dC
need (per (batch, t, n): sum over d of g dt u, and of h dout) are one 32-value reduce-scatter per
warp (lanes.reduce_scatter32: lane n ends with dB_n, lane 16 + n with dC_n), stored as a
per-warp partial, (B, D / 32, 32, L) fp32, that the launcher sums over the warps. dA, dD and the
dt bias gradient stay in registers over the sequence, written once per (batch, channel).

Contract as the forward's (selective_scan_lanes_fwd.py), with the states it saved at the same K.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mambalab.ops.triton.lanes import (load_steps, prefetch, reduce_scatter32, shfl_idx, split_steps,
                                      store_steps)
from mambalab.ops.triton.selective_scan_fwd import sigmoid, softplus
from mambalab.ops.triton.selective_scan_lanes_fwd import load_bc, per_channel


@triton.jit
def _reversed(ts, K: tl.constexpr):
    out = ()
    for i in tl.static_range(K):
        out = out + (ts[K - 1 - i],)
    return out


@triton.jit
def _lanes_bwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, pc_ptr, z_ptr, doc_ptr, states_ptr, dy_ptr, dlast_ptr,
    du_ptr, ddt_ptr, dz_ptr, dbc_ptr, dA_ptr, dpc_ptr, dh0_ptr, y_ptr,
    dim, seqlen, n_chunks,
    su_b, su_d, sdt_b, sdt_d, sz_b, sz_d, sB_b, sB_n, sC_b, sC_n, sdoc_b, sdy_b, sdy_d,
    so_b, so_d, sy_b, sy_d,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_DOCS: tl.constexpr, HAS_DLAST: tl.constexpr, WRITE_Y: tl.constexpr, N: tl.constexpr,
    BD: tl.constexpr,
    K: tl.constexpr, PF: tl.constexpr,
):
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
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
    if HAS_D:
        Dv = tl.load(pc_ptr + d * 2)
    if HAS_BIAS:
        bias = tl.load(pc_ptr + d * 2 + 1)
    dD_acc = tl.zeros([BD], dtype=tl.float32)
    dbias_acc = tl.zeros([BD], dtype=tl.float32)
    zero = tl.zeros([BD], dtype=tl.float32)

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
    kk = tl.arange(0, K)[None, :]
    bc_row = tl.where(ln < 16, B_row, C_row)  # (BD, 1): the row each lane reads B or C from

    for i in range(n_chunks):
        c = n_chunks - 1 - i
        t = c * K
        if PF > 0:  # chunk c - PF's inputs and saved states (chunk 0's, near the start)
            cp = tl.maximum(c - PF, 0)
            tp = cp * K
            prefetch(u_row + tp)
            prefetch(dt_row + tp)
            prefetch(dy_row + tp)
            prefetch(bc_row + tp)
            if HAS_Z:
                prefetch(z_row + tp)
            sp = states_ptr + (b * n_chunks + cp) * dim * N + d * N
            prefetch(sp)
            prefetch(sp + N // 2)
        u = load_steps(u_row, t, BD, K)
        dtr = load_steps(dt_row, t, BD, K)
        dy = load_steps(dy_row, t, BD, K)
        if HAS_Z:
            z = load_steps(z_row, t, BD, K)
        bc = load_bc(B_row, C_row, lane, t, N, BD, K)
        if HAS_DOCS:
            doc = split_steps(tl.load(doc_row + t + kk).to(tl.float32), BD, K)
        st = states_ptr + (b * n_chunks + c) * dim * N + d * N
        h0c = ()
        for n in tl.static_range(N):
            h0c = h0c + (tl.load(st + n),)

        # Recompute h_t over the chunk, keeping every step's states (K * N registers).
        dts = ()
        dtps = ()
        hs = ()
        hp = h0c
        for j in tl.static_range(K):
            dtp = dtr[j]
            if HAS_BIAS:
                dtp += bias
            if SOFTPLUS:
                dtj = softplus(dtp)
            else:
                dtj = dtp
            dtu = dtj * u[j]
            hn = ()
            for n in tl.static_range(N):
                a = tl.exp2(dtj * A2[n])
                if HAS_DOCS:
                    a = tl.where(doc[j] != 0, 0.0, a)
                hn = hn + (a * hp[n] + dtu * shfl_idx(bc[j], n, BD),)
            hs = hs + (hn,)
            hp = hn
            dts = dts + (dtj,)
            dtps = dtps + (dtp,)

        # The reverse recurrence, last step first.
        du_r = ()
        ddt_r = ()
        dz_r = ()
        dbc_r = ()
        y_r = ()
        for jj in tl.static_range(K):
            # step K - 1 - jj (written out: Triton 3.6 does not keep a name assigned here constexpr)
            if K - 1 - jj > 0:
                hprev = hs[K - 2 - jj]
            else:
                hprev = h0c
            hj = hs[K - 1 - jj]
            dtj = dts[K - 1 - jj]
            uj = u[K - 1 - jj]
            dyj = dy[K - 1 - jj]
            bcj = bc[K - 1 - jj]
            if HAS_DOCS:
                docj = doc[K - 1 - jj]
            if HAS_Z:
                zj = z[K - 1 - jj]
                sig = sigmoid(zj)
                dout = dyj * zj * sig
            else:
                dout = dyj
            dtu = dtj * uj
            gB = zero
            gAah = zero
            ypre = zero
            gn = ()
            dB_p = ()
            dC_p = ()
            dA_n = ()
            for n in tl.static_range(N):
                Cn = shfl_idx(bcj, 16 + n, BD)
                gv = g[n] + Cn * dout
                if HAS_Z or WRITE_Y:
                    ypre += Cn * hj[n]
                dC_p = dC_p + (hj[n] * dout,)
                dB_p = dB_p + (gv * dtu,)
                gB += gv * shfl_idx(bcj, n, BD)
                a = tl.exp2(dtj * A2[n])
                if HAS_DOCS:
                    a = tl.where(docj != 0, 0.0, a)
                gah = gv * (a * hprev[n])  # g_t a_t h_{t-1}
                dA_n = dA_n + (dA_acc[n] + gah * dtj,)
                gAah += gah * A2[n]
                gn = gn + (a * gv,)
            g = gn
            dA_acc = dA_n
            for n in tl.static_range(N, 16):  # pad to 16 + 16 values
                dB_p = dB_p + (zero,)
                dC_p = dC_p + (zero,)
            dbc_r = dbc_r + (reduce_scatter32(dB_p + dC_p, lane, BD),)
            ddt = gAah * 0.6931471805599453 + uj * gB  # A = A2 ln 2
            if SOFTPLUS:
                ddt = ddt * sigmoid(dtps[K - 1 - jj])
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

        store_steps(du_ptr + o_off, t, _reversed(du_r, K), BD, K)
        store_steps(ddt_ptr + o_off, t, _reversed(ddt_r, K), BD, K)
        if HAS_Z:
            store_steps(dz_ptr + o_off, t, _reversed(dz_r, K), BD, K)
        store_steps(dbc_row, t, _reversed(dbc_r, K), BD, K)
        if WRITE_Y:
            store_steps(y_row, t, _reversed(y_r, K), BD, K)

    # g now holds a_0 g_0 = dL/dh_{-1}: the initial state's gradient.
    for n in tl.static_range(N):
        tl.store(dh0_ptr + dn + n, g[n])
        tl.store(dA_ptr + dn + n, dA_acc[n])
    tl.store(dpc_ptr + b * dim * 2 + d * 2, dD_acc)
    tl.store(dpc_ptr + b * dim * 2 + d * 2 + 1, dbias_acc)


def lanes_bwd_launch(
    *, dy: torch.Tensor, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
    C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
    delta_bias: torch.Tensor | None, delta_softplus: bool, doc_starts: torch.Tensor | None,
    states: torch.Tensor, dlast_state: torch.Tensor | None, chunk: int, num_warps: int,
    du: torch.Tensor, ddelta: torch.Tensor, dz: torch.Tensor, prefetch_chunks: int = 2,
    y_out: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Launch the backward into du, ddelta, dz (one layout, unit stride along L); returns the
    gradients by name, partials reduced. dB, dC come back fp32 (B, N, L). ``y_out`` (B, D, L),
    unit stride along L: also write the forward's y there (recomputed here anyway)."""
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    n_chunks = seqlen // chunk
    assert states.shape == (batch, n_chunks, dim, dstate), "states saved with another chunk"
    f32 = dict(device=u.device, dtype=torch.float32)
    dbc = torch.empty((batch, dim // 32, 32, seqlen), **f32)
    dA = torch.empty((batch, dim, dstate), **f32)
    dpc = torch.empty((batch, dim, 2), **f32)
    dh0 = torch.empty((batch, dim, dstate), **f32)
    pc = per_channel(D, delta_bias, dim, u.device)
    zz = z if z is not None else u
    docs = doc_starts if doc_starts is not None else u
    bd = 32 * num_warps
    _lanes_bwd_kernel[(dim // bd, batch)](
        u, delta, A, B, C, pc, zz, docs, states, dy,
        dlast_state if dlast_state is not None else A,
        du, ddelta, dz, dbc, dA, dpc, dh0, y_out if y_out is not None else du,
        dim, seqlen, n_chunks,
        u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), zz.stride(0), zz.stride(1),
        B.stride(0), B.stride(1), C.stride(0), C.stride(1),
        docs.stride(0) if doc_starts is not None else 0, dy.stride(0), dy.stride(1),
        du.stride(0), du.stride(1),
        y_out.stride(0) if y_out is not None else 0, y_out.stride(1) if y_out is not None else 0,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=delta_softplus, HAS_DOCS=doc_starts is not None,
        HAS_DLAST=dlast_state is not None, WRITE_Y=y_out is not None, N=dstate, BD=bd, K=chunk, PF=prefetch_chunks,
        num_warps=num_warps,
    )
    dbc = dbc.sum(1)  # (B, 32, L)
    return {
        "du": du, "ddelta": ddelta, "dz": dz if z is not None else None,
        "dA": dA.sum(0), "dB": dbc[:, :dstate], "dC": dbc[:, 16:16 + dstate],
        "dD": dpc[..., 0].sum(0) if D is not None else None,
        "ddelta_bias": dpc[..., 1].sum(0) if delta_bias is not None else None,
        "dinitial_state": dh0,
    }
