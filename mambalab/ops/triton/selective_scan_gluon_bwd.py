"""The lanes scan's backward written in Gluon (Triton's explicit-layout dialect): two threads a
channel, the chunk's inputs and outputs in shared memory. An experiment beside the Triton kernel
(selective_scan_lanes_bwd.py), which computes the same gradients from the same saved states.

Why: in Triton the lanes backward holds a channel's 16 states for K = 8 steps, the chunk's
unpacked inputs and its outputs in registers, 255 of them a thread, so at most 8 warps run on an
SM and the kernel issues in about a third of its cycles (docs/kernels/selective_scan.md); every
restructuring in Triton moved ptxas into spills. Gluon lets a kernel place values explicitly:

- a thread holds 8 of a channel's 16 states (lanes 2c and 2c + 1 share channel c of the
  program's 16), so the K recomputed states are 64 registers, not 128;
- the chunk's per-channel inputs (u, delta, its softplus' derivative, the gated dout, the gate's
  factor for dz, the document mask) are computed once a chunk and kept in shared memory, each
  step loading its values; the per-step outputs (du, ddelta, dz) go to shared memory and leave
  as one vector store a thread at the chunk's end; B and C are read per step from shared memory
  as two 16-byte broadcasts each;
- dB and dC, sums over channels per (t, n): each step stores a thread's 16 terms into a padded
  shared buffer of the chunk's terms, and after the chunk's last step each lane sums rows of it
  over the 16 channels (CONFIG["defer_dbc"]; else per step through a (32, 16) tile, three
  barriers a step instead of one): partials (B, D / 16, 32, L), summed by dbc_sum as the Triton
  kernel's (B, D / 32, 32, L);
- the chunk's per-channel work (softplus, the gate, loading and storing the chunk) is split
  between a channel's two threads, 4 steps each (CONFIG["split_chunk"]).

Contract (else the Triton kernel runs): N = 16, K = 8, D a multiple of 16, fp16 saved states in
the (B, L / K, D, N) layout (lanes_states.py's default), no y written (the fused mixer keeps its
own). Time segments, document starts, the last state's gradient, z, D and the dt bias as in the
Triton kernel. Gluon kernels cannot run under TRITON_INTERPRET=1: they are tested on the GPU
(tests/ops/test_gluon_scan_bwd.py) against the CPU-tested Triton kernel.
"""
from __future__ import annotations

import os

import torch

from mambalab.ops.triton import config_from_env
# softplus and sigmoid are the Triton kernels' (triton.jit functions run inside a Gluon kernel)
from mambalab.ops.triton.selective_scan_fwd import sigmoid, softplus

try:  # Triton >= 3.5; the package still imports without it (CPU runs use the Triton kernels)
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
except ImportError:  # pragma: no cover - depends on the installed Triton
    gluon = None
    gl = None

# pipe: issue the next chunk's loads before this chunk's work (on an H200, B=32: 3.33 against
# 3.62 ms); maxnreg: ptxas's register cap (None: its choice, 255; 168 was slower:
# docs/kernels/selective_scan.md, sixteenth session)
# defer_dbc: keep a chunk's dB/dC terms in shared memory and sum them over the channels at its
# end (one barrier a step, not three: B=8 0.908 against 1.031 ms with split_chunk; summed every
# 4 steps, 13.5 KB of shared memory not 22, it was slower: docs/kernels/selective_scan.md,
# seventeenth session), or sum them every step
# split_chunk: the two threads of a channel share its per-chunk work (4 steps each)
# (Either exponential of a step by a polynomial's FFMAs instead of MUFU ex2 was slower on
# the H200: 1.056 / 1.237 ms against 0.894 at B=8 for one / both, nineteenth session; removed.)
CONFIG = {"pipe": True, "maxnreg": None, "defer_dbc": True, "split_chunk": True}
# MAMBALAB_GLUON_BWD_CONFIG='{"defer_dbc": false}' (JSON) overrides CONFIG keys for a process.
config_from_env(CONFIG, "MAMBALAB_GLUON_BWD_CONFIG")

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


def available() -> bool:
    return gluon is not None


if gluon is not None:

    @gluon.jit
    def _pair_sum(x):
        """(8, 2, 16) -> (1, 1, 16): the sum over a channel's 16 states (8 in each of its 2
        threads), in both threads."""
        return gl.sum(gl.sum(x, axis=0, keep_dims=True), axis=1, keep_dims=True)

    @gluon.jit
    def _chunk_loads(u_t, dt_t, dy_t, z_t, bc_t, st_t, doc_t, c, dim, HAS_Z: gl.constexpr,
                     HAS_DOCS: gl.constexpr):
        """Chunk c's raw loads: u, delta, dy, z, B/C, the saved state, document starts."""
        t = c * 8
        z = gl.load(z_t + t) if HAS_Z else gl.load(u_t + t)
        doc = gl.load(doc_t + t) if HAS_DOCS else gl.load(u_t + t)
        return (gl.load(u_t + t), gl.load(dt_t + t), gl.load(dy_t + t), z, gl.load(bc_t + t),
                gl.load(st_t + c * dim * 16), doc)

    @gluon.jit
    def _step(sm, J: gl.constexpr, L3: gl.constexpr):
        """Step J's per-channel values, (1, 1, 16), from a (K, 1, 16) shared tile."""
        return sm.slice(J, 1, dim=0).load(L3)

    @gluon.jit
    def _gluon_bwd_kernel(
        u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, pc_ptr, z_ptr, doc_ptr, states_ptr, dy_ptr,
        dlast_ptr, du_ptr, ddt_ptr, dz_ptr, dbc_ptr, dA_ptr, dpc_ptr, dh0_ptr, segG_ptr,
        segP_ptr,
        dim, seqlen, n_chunks, seg_chunks, n_segs, seg_blocks, n_blocks,
        su_b, su_d, sdt_b, sdt_d, sz_b, sz_d, sB_b, sB_n, sC_b, sC_n, sdoc_b, sdy_b, sdy_d,
        so_b, so_d,
        HAS_D: gl.constexpr, HAS_Z: gl.constexpr, HAS_BIAS: gl.constexpr,
        SOFTPLUS: gl.constexpr, HAS_DOCS: gl.constexpr, HAS_DLAST: gl.constexpr,
        SEG: gl.constexpr, PIPE: gl.constexpr, DEFER: gl.constexpr, SPLIT: gl.constexpr,
    ):
        K: gl.constexpr = 8    # steps a chunk, and states a thread
        N: gl.constexpr = 16
        # (8 states or steps, 2 halves, 16 channels): lane 2c + h holds channel c's states
        # 8h .. 8h + 7 (or its K steps of a per-channel input), one warp a program
        L3: gl.constexpr = gl.BlockedLayout([8, 1, 1], [1, 2, 16], [1, 1, 1], [0, 1, 2])
        LC: gl.constexpr = gl.SliceLayout(0, L3)    # (2, 16) or (1, 16): one value a thread
        LCH: gl.constexpr = gl.SliceLayout(0, LC)   # (16,)
        LS: gl.constexpr = gl.SliceLayout(2, L3)    # (8, 2): a thread's states' constants
        # per-channel tiles (K, 1, 16) are computed at a chunk's start and stored at its end
        # in LT: with SPLIT the two threads of a channel take 4 steps each (lane 2c + h steps
        # 4h .. 4h + 3), else both its K steps (L3: the work done twice, as before). The steps
        # read them from shared memory in L3
        LT: gl.constexpr = gl.BlockedLayout([4, 1, 1], [2, 1, 16], [1, 1, 1],
                                            [0, 1, 2]) if SPLIT else L3
        # the dB/dC terms (8 states s, 4 = (dB or dC, half h), 16 channels): a row a lane,
        # the row of state 8 h + s of dB (or dC)
        LR: gl.constexpr = gl.BlockedLayout([1, 1, 16], [8, 4, 1], [1, 1, 1], [2, 1, 0])
        # the chunk's sums (8, 4, K): a row's K steps in one lane
        LP: gl.constexpr = gl.BlockedLayout([1, 1, 8], [8, 4, 1], [1, 1, 1], [2, 1, 0])
        PLAIN3: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [2, 1, 0])
        # rows padded by a word: a lane reading its row, or a warp writing a column, hits
        # distinct banks
        PADR: gl.constexpr = gl.PaddedSharedLayout.with_identity_for([[16, 4]], [8, 4, 16],
                                                                     [2, 1, 0])

        # DEFER: the chunk's terms (2 t + i for step t and i = dB or dC, half h, 16 channels,
        # 8 states s), summed over the channels at the chunk's end: a thread's 8 states
        # contiguous, a step's dB and dC terms one store (four 16 bytes; one store, so that
        # the next step's is the only access that needs a barrier after it); four words of
        # padding every row of 128 spread both the steps' stores and the sums' loads over
        # distinct banks. The sums read (row, 16 channels, 4 states) a thread, row
        # 2 (2 t + i) + h in that lane, four states a pass
        NS: gl.constexpr = 4                           # states a pass sums
        LRED: gl.constexpr = gl.BlockedLayout([1, 1, 16, 4], [16, 2, 1, 1], [1, 1, 1, 1],
                                              [3, 2, 1, 0])
        LSUM: gl.constexpr = gl.SliceLayout(2, LRED)   # (2 t + i, h, NS states)
        # a step's terms (dB or dC, s, h, c), a thread's states in consecutive registers (a
        # register renaming of the joined tensor's layout) so that its stores are 16 bytes wide
        LJ: gl.constexpr = gl.BlockedLayout([2, 8, 1, 1], [1, 1, 2, 16], [1, 1, 1, 1],
                                            [1, 0, 2, 3])
        PADQ: gl.constexpr = gl.PaddedSharedLayout.with_identity_for([[128, 4]],
                                                                     [2 * K, 2, 16, 8],
                                                                     [3, 2, 1, 0])

        pid_d = gl.program_id(0)
        b = gl.program_id(1).to(gl.int64)
        s = 0
        if SEG:
            s = gl.program_id(2)
        # coordinates in L3
        k1 = gl.arange(0, 8, layout=gl.SliceLayout(1, LS))
        h1 = gl.arange(0, 2, layout=gl.SliceLayout(0, LS))
        c1 = gl.arange(0, 16, layout=LCH)
        hc = gl.arange(0, 2, layout=gl.SliceLayout(1, LC))
        n3 = gl.expand_dims(gl.expand_dims(k1, 1) + 8 * gl.expand_dims(h1, 0), 2)  # (8, 2, 1)
        d1 = pid_d * 16 + c1                                                        # (16,)
        d2 = gl.expand_dims(d1, 0)                                                  # (1, 16)
        d3 = gl.expand_dims(d2, 0)                                                  # (1, 1, 16)
        dn3 = (b * dim + d3) * N + n3                                               # (8, 2, 16)
        A2 = gl.load(A_ptr + d3 * N + n3) * 1.4426950408889634
        if HAS_DLAST:
            g = gl.load(dlast_ptr + dn3)
        else:
            g = gl.zeros([8, 2, 16], gl.float32, L3)
        if SEG:  # what enters from the carry blocks after this segment, last first
            for si in range(0, n_blocks - (s + 1) * seg_blocks):
                sp = ((b * n_blocks + n_blocks - 1 - si) * dim + d3) * N + n3
                g = gl.load(segG_ptr + sp) + gl.load(segP_ptr + sp) * g
        dA_acc = gl.zeros([8, 2, 16], gl.float32, L3)
        # per-channel (K, 1, 16) tiles: the channel's row + t + k
        k3 = gl.expand_dims(gl.expand_dims(k1, 1), 2)   # (8, 1, 1)
        kk = gl.expand_dims(gl.expand_dims(gl.arange(0, 8, layout=gl.SliceLayout(
            1, gl.SliceLayout(2, LT))), 1), 2)                                      # (8, 1, 1)
        ch_t = pid_d * 16 + gl.expand_dims(gl.expand_dims(gl.arange(0, 16, layout=gl.SliceLayout(
            0, gl.SliceLayout(0, LT))), 0), 0)                                      # (1, 1, 16)
        dt64 = ch_t.to(gl.int64)
        u_t = u_ptr + b * su_b + dt64 * su_d + kk
        dt_t = dt_ptr + b * sdt_b + dt64 * sdt_d + kk
        z_t = z_ptr + b * sz_b + dt64 * sz_d + kk
        dy_t = dy_ptr + b * sdy_b + dt64 * sdy_d + kk
        doc_t = doc_ptr + b * sdoc_b + kk + 0 * dt64
        o_t = b * so_b + dt64 * so_d + kk
        # B and C tiles as (K, 2, 16): [k, h, c] is B_(8h + c) for c < 8, C_(8h + c - 8) after
        c3 = gl.expand_dims(gl.expand_dims(c1, 0) + 0 * gl.expand_dims(hc, 1), 0)   # (1, 2, 16)
        h3 = gl.expand_dims(gl.expand_dims(0 * c1, 0) + gl.expand_dims(hc, 1), 0)   # (1, 2, 16)
        nbc = (8 * h3 + c3 % 8).to(gl.int64)
        bc_t = gl.where(c3 < 8, B_ptr + b * sB_b + nbc * sB_n, C_ptr + b * sC_b + nbc * sC_n) + k3
        st_t = states_ptr + (b * n_chunks * dim + d3) * N + n3   # + c * dim * N
        # the partials (B, D / 16, 32, L): row 16 i + 8 h + s holds the sum of dB (i = 0) or dC
        # (i = 1) for state 8 h + s; LP's (s, 2 i + h, k)
        ps = gl.arange(0, 8, layout=gl.SliceLayout(1, gl.SliceLayout(2, LP)))
        pq = gl.arange(0, 4, layout=gl.SliceLayout(0, gl.SliceLayout(2, LP)))
        pk = gl.arange(0, 8, layout=gl.SliceLayout(0, gl.SliceLayout(1, LP)))
        prow = gl.expand_dims(gl.expand_dims(ps, 1) + 8 * gl.expand_dims(pq, 0), 2)  # (8, 4, 1)
        pkk = gl.expand_dims(gl.expand_dims(pk, 0), 1)                               # (1, 1, 8)
        dbc_t = dbc_ptr + ((b * (dim // 16) + pid_d) * 32 + prow.to(gl.int64)) * seqlen + pkk
        # DEFER's addresses: row 16 i + 8 h + s, column t, for a pass's first state
        rti = gl.arange(0, 2 * K, layout=gl.SliceLayout(1, gl.SliceLayout(2, LSUM)))
        rh = gl.arange(0, 2, layout=gl.SliceLayout(0, gl.SliceLayout(2, LSUM)))
        rs = gl.arange(0, NS, layout=gl.SliceLayout(0, gl.SliceLayout(1, LSUM)))
        rti3 = gl.expand_dims(gl.expand_dims(rti, 1), 2)   # (2 K, 1, 1)
        rrow = 16 * (rti3 % 2) + 8 * gl.expand_dims(gl.expand_dims(rh, 0), 2) + gl.expand_dims(
            gl.expand_dims(rs, 0), 1)                       # (2 K, 2, NS)
        rdbc_t = (dbc_ptr + ((b * (dim // 16) + pid_d) * 32 + rrow.to(gl.int64)) * seqlen
                  + rti3 // 2)

        sm_u = gl.allocate_shared_memory(gl.float32, [K, 1, 16], PLAIN3)
        sm_dt = gl.allocate_shared_memory(gl.float32, [K, 1, 16], PLAIN3)
        sm_sdt = gl.allocate_shared_memory(gl.float32, [K, 1, 16], PLAIN3)
        sm_dout = gl.allocate_shared_memory(gl.float32, [K, 1, 16], PLAIN3)
        sm_zf = gl.allocate_shared_memory(gl.float32, [K, 1, 16], PLAIN3)
        sm_keep = gl.allocate_shared_memory(gl.float32, [K, 1, 16], PLAIN3)
        sm_bc = gl.allocate_shared_memory(gl.float32, [K, 2, 16], PLAIN3)
        sm_du = gl.allocate_shared_memory(gl.float32, [K, 1, 16], PLAIN3)
        sm_ddt = gl.allocate_shared_memory(gl.float32, [K, 1, 16], PLAIN3)
        sm_dz = gl.allocate_shared_memory(gl.float32, [K, 1, 16], PLAIN3)
        # the dB/dC terms: the chunk's (DEFER), or a step's summed over the channels at once,
        # the chunk's sums in registers ((8, 4, K) in LP); an allocation the kernel does not
        # use takes no shared memory
        sm_q = gl.allocate_shared_memory(gl.float32, [2 * K, 2, 16, 8], PADQ)
        sm_red = gl.allocate_shared_memory(gl.float32, [8, 4, 16], PADR)

        # per-channel constants and sums in the tiles' layout (a channel's 2 threads alike)
        zero_t = gl.zeros([1, 1, 16], gl.float32, LT)
        Dv = zero_t
        bias = zero_t
        if HAS_D:
            Dv = gl.load(pc_ptr + ch_t * 2)
        if HAS_BIAS:
            bias = gl.load(pc_ptr + ch_t * 2 + 1)
        Dv2 = Dv
        bias2 = bias
        dD_acc = zero_t
        dbias_acc = zero_t

        c_lo = 0
        c_hi = n_chunks
        if SEG:
            c_lo = s * seg_chunks
            c_hi = gl.minimum(c_lo + seg_chunks, n_chunks)
        # PIPE: each chunk issues the next chunk's loads (the one before it in time) before its
        # own work, so that their latency hides behind it
        if PIPE:
            nxt = _chunk_loads(u_t, dt_t, dy_t, z_t, bc_t, st_t, doc_t, c_hi - 1, dim, HAS_Z,
                               HAS_DOCS)
        for i in range(c_hi - c_lo):
            c = c_hi - 1 - i
            t = c * K
            if PIPE:
                cur = nxt
                nxt = _chunk_loads(u_t, dt_t, dy_t, z_t, bc_t, st_t, doc_t,
                                   gl.maximum(c - 1, c_lo), dim, HAS_Z, HAS_DOCS)
            else:
                cur = _chunk_loads(u_t, dt_t, dy_t, z_t, bc_t, st_t, doc_t, c, dim, HAS_Z,
                                   HAS_DOCS)
            # the chunk's per-channel values, computed once on (K, 16) tiles and kept in shared
            # memory for the steps (and for the chunk's end: du and dz's D terms)
            u_k = cur[0].to(gl.float32)
            dtp = cur[1].to(gl.float32)
            dy_k = cur[2].to(gl.float32)
            if HAS_BIAS:
                dtp = dtp + bias2
            if SOFTPLUS:
                sm_dt.store(softplus(dtp))
                sm_sdt.store(sigmoid(dtp))
            else:
                sm_dt.store(dtp)
            if HAS_Z:
                z_k = cur[3].to(gl.float32)
                sz = sigmoid(z_k)
                dout = dy_k * z_k * sz
                sm_zf.store(dy_k * sz * (1.0 + z_k * (1.0 - sz)))
            else:
                dout = dy_k
            if HAS_DOCS:  # log2 of the decay's factor: -inf where a document starts, added
                # in the decay's FMA (exp2(-inf) = 0) rather than a multiply a state
                sm_keep.store(gl.where(cur[6] != 0, float("-inf"), 0.0))
            sm_u.store(u_k)
            sm_dout.store(dout)
            dD_acc += gl.sum(dout * u_k, axis=0, keep_dims=True)
            sm_bc.store(cur[4].to(gl.float32))
            h0c = cur[5].to(gl.float32)   # the state before the chunk
            part = gl.zeros([8, 4, K], gl.float32, LP)

            # h over the chunk from the saved state, all K steps live (64 registers a thread)
            hs = ()
            hp = h0c
            for j in gl.static_range(K):
                dtj = _step(sm_dt, j, L3)
                uj = _step(sm_u, j, L3)
                Bj = sm_bc.slice(j, 1, dim=0).slice(0, 8, dim=2).permute([2, 1, 0]).load(L3)
                if HAS_DOCS:
                    a = gl.exp2(dtj * A2 + _step(sm_keep, j, L3))
                else:
                    a = gl.exp2(dtj * A2)
                hp = a * hp + (dtj * uj) * Bj
                hs = hs + (hp,)

            # the reverse recurrence, last step first
            for jj in gl.static_range(K):
                if K - 1 - jj > 0:
                    hprev = hs[K - 2 - jj]
                else:
                    hprev = h0c
                hj = hs[K - 1 - jj]
                dtj = _step(sm_dt, K - 1 - jj, L3)
                uj = _step(sm_u, K - 1 - jj, L3)
                doutj = _step(sm_dout, K - 1 - jj, L3)
                bcj = sm_bc.slice(K - 1 - jj, 1, dim=0)      # (1, 2, 16) -> (8, 2, 1) each
                Bj = bcj.slice(0, 8, dim=2).permute([2, 1, 0]).load(L3)
                Cj = bcj.slice(8, 8, dim=2).permute([2, 1, 0]).load(L3)
                dtu = dtj * uj
                gv = g + Cj * doutj
                # the terms of dB (g dt u) and dC (h dout), summed over the channels below
                if DEFER:  # this step's rows, seen as (s, h, c, dB or dC)
                    terms = gl.permute(gl.join(gv * dtu, hj * doutj), [3, 0, 1, 2])
                    sm_q.slice(2 * (K - 1 - jj), 2, dim=0).permute([0, 3, 1, 2]).store(
                        gl.convert_layout(terms, LJ))
                    if jj == K - 1:  # the chunk's sums over the channels
                        for sb in gl.static_range(8 // NS):
                            v = gl.sum(sm_q.slice(NS * sb, NS, dim=3).load(LRED), axis=2)
                            gl.store(rdbc_t + (NS * sb * seqlen + t),
                                     v.to(dbc_ptr.dtype.element_ty))
                else:  # a row (one n of dB or dC) a lane, summed over the 16 channels, put
                    # in place among the chunk's K sums (a select on a constant: a move)
                    sm_red.slice(0, 2, dim=1).store(gv * dtu)
                    sm_red.slice(2, 2, dim=1).store(hj * doutj)
                    v = gl.sum(sm_red.load(LR), axis=2, keep_dims=True)
                    part = gl.where(pkk == K - 1 - jj, gl.convert_layout(v, LP), part)
                ypre = _pair_sum(Cj * hj)
                gB = _pair_sum(gv * Bj)
                # the step's decay computed again (kept from the recomputation above, in
                # registers or shared memory, it was slower: sixteenth session)
                if HAS_DOCS:
                    a = gl.exp2(dtj * A2 + _step(sm_keep, K - 1 - jj, L3))
                else:
                    a = gl.exp2(dtj * A2)
                g = a * gv
                gah = g * hprev    # g_t a_t h_(t-1): one FMUL, with the gradient passed on
                dA_acc += gah * dtj
                gAah = _pair_sum(gah * A2)
                ddt = gAah * 0.6931471805599453 + uj * gB
                if SOFTPLUS:
                    ddt = ddt * _step(sm_sdt, K - 1 - jj, L3)
                sm_du.slice(K - 1 - jj, 1, dim=0).store(dtj * gB)
                sm_ddt.slice(K - 1 - jj, 1, dim=0).store(ddt)
                # C h summed over the states; dz's factors come at the chunk's end
                sm_dz.slice(K - 1 - jj, 1, dim=0).store(ypre)

            # the chunk's outputs: (K, 16) tiles, a channel's K steps one 16-byte store
            dout_k = sm_dout.load(LT)
            u_k = sm_u.load(LT)
            du_k = sm_du.load(LT)
            if HAS_D:
                du_k += Dv2 * dout_k
            ddt_k = sm_ddt.load(LT)
            dbias_acc += gl.sum(ddt_k, axis=0, keep_dims=True)
            gl.store(du_ptr + o_t + t, du_k.to(du_ptr.dtype.element_ty))
            gl.store(ddt_ptr + o_t + t, ddt_k.to(ddt_ptr.dtype.element_ty))
            if HAS_Z:
                y_k = sm_dz.load(LT)
                if HAS_D:
                    y_k += Dv2 * u_k
                gl.store(dz_ptr + o_t + t, (y_k * sm_zf.load(LT)).to(dz_ptr.dtype.element_ty))
            if not DEFER:
                gl.store(dbc_t + t, part.to(dbc_ptr.dtype.element_ty))

        # g is a g at the segment's first step; in segment 0 dL/dh_(-1)
        if SEG:
            dsn = ((b * n_segs + s) * dim + d3) * N + n3
            gl.store(dA_ptr + dsn, dA_acc)
            if s == 0:
                gl.store(dh0_ptr + dn3, g)
            dpc = ((b * n_segs + s) * dim + ch_t) * 2
        else:
            gl.store(dh0_ptr + dn3, g)
            gl.store(dA_ptr + dn3, dA_acc)
            dpc = (b * dim + ch_t) * 2
        gl.store(dpc_ptr + dpc, dD_acc)
        gl.store(dpc_ptr + dpc + 1, dbias_acc)


def supported(*, dstate: int, chunk: int, dim: int, states: torch.Tensor, states_dn: bool,
              writes_y: bool, device: torch.device) -> bool:
    """Whether the Gluon kernel takes this call (the module docstring's contract): on a CUDA
    device (Gluon kernels do not run under TRITON_INTERPRET=1), for the shapes it was written
    for."""
    return (gluon is not None and device.type == "cuda"
            and os.environ.get("TRITON_INTERPRET", "0") != "1"
            and dstate == 16 and chunk == 8 and dim % 16 == 0
            and states.dtype == torch.float16 and states_dn and not writes_y)


def partials(batch: int, dim: int, seqlen: int, device: torch.device,
             dtype: torch.dtype) -> torch.Tensor:
    """The dB/dC partials the kernel writes: (B, D / 16, 32, L), one tile per 16 channels."""
    return torch.empty((batch, dim // 16, 32, seqlen), device=device, dtype=dtype)


def launch(*, dy, u, delta, A, B, C, pc, z, doc_starts, states, dlast_state, du, ddelta, dz,
           dbc, dA, dpc, dh0, segG, segP, has_d: bool, has_bias: bool, delta_softplus: bool,
           n_chunks: int, seg_chunks: int, segments: int, seg_blocks: int,
           n_blocks: int) -> None:
    """One launch over the batch rows of its tensors, as selective_scan_lanes_bwd._launch."""
    batch, dim, seqlen = u.shape
    zz = z if z is not None else u
    docs = doc_starts if doc_starts is not None else u
    _gluon_bwd_kernel[(dim // 16, batch, segments)](
        u, delta, A, B, C, pc, zz, docs, states, dy,
        dlast_state if dlast_state is not None else A,
        du, ddelta, dz, dbc, dA, dpc, dh0, segG, segP,
        dim, seqlen, n_chunks, seg_chunks, segments, seg_blocks, n_blocks,
        u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), zz.stride(0), zz.stride(1),
        B.stride(0), B.stride(1), C.stride(0), C.stride(1),
        docs.stride(0) if doc_starts is not None else 0, dy.stride(0), dy.stride(1),
        du.stride(0), du.stride(1),
        HAS_D=has_d, HAS_Z=z is not None, HAS_BIAS=has_bias, SOFTPLUS=delta_softplus,
        HAS_DOCS=doc_starts is not None, HAS_DLAST=dlast_state is not None,
        SEG=segments > 1, PIPE=bool(CONFIG["pipe"]), DEFER=bool(CONFIG["defer_dbc"]),
        SPLIT=bool(CONFIG["split_chunk"]), num_warps=1,
        **({"maxnreg": int(CONFIG["maxnreg"])} if CONFIG["maxnreg"] else {}),
    )
