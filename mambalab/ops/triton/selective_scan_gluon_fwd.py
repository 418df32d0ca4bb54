"""The lanes scan's forward written in Gluon, in the layout of the Gluon backward
(selective_scan_gluon_bwd.py): two threads a channel, 8 of its 16 states each, B and C read per
step from shared memory as 16-byte broadcasts (the Triton forward, selective_scan_lanes_fwd.py,
spends 256 of its 1,177 instructions a chunk on the shuffles that bring them), the chunk's
per-channel values computed once on (K, 1, 16) tiles, y staged in shared memory and stored as one
16-byte vector a thread per chunk.

Same outputs as the Triton forward: y, the last state, the chunk states (fp16, (B, L / K, D, N):
a thread's 8 states one 16-byte store) with the fp16 overflow flag, time segments from the same
carry kernel. Contract (else the Triton kernel): N = 16, K = 8, D a multiple of 16, states not
saved or saved in fp16, a CUDA device, Triton not in interpreter mode.
"""
from __future__ import annotations

import os

import torch

from mambalab.ops.triton import selective_scan_gluon_bwd as gb

gluon, gl = gb.gluon, gb.gl

# pipe: issue the next chunk's loads before this chunk's work
CONFIG = {"pipe": True}


def available() -> bool:
    return gluon is not None


if gluon is not None:

    @gluon.jit
    def _fwd_loads(u_t, dt_t, z_t, bc_t, doc_t, t, HAS_Z: gl.constexpr, HAS_DOCS: gl.constexpr):
        """The raw loads of the chunk at step t: u, delta, z, B/C, document starts."""
        z = gl.load(z_t + t) if HAS_Z else gl.load(u_t + t)
        doc = gl.load(doc_t + t) if HAS_DOCS else gl.load(u_t + t)
        return (gl.load(u_t + t), gl.load(dt_t + t), z, gl.load(bc_t + t), doc)

    @gluon.jit
    def _gluon_fwd_kernel(
        u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, pc_ptr, z_ptr, h0_ptr, doc_ptr,
        y_ptr, states_ptr, last_ptr, flag_ptr, segH_ptr, segP_ptr,
        dim, n_chunks, seg_chunks, n_segs, seg_blocks, n_blocks,
        su_b, su_d, sdt_b, sdt_d, sz_b, sz_d, sB_b, sB_n, sC_b, sC_n, sdoc_b, sy_b, sy_d,
        HAS_D: gl.constexpr, HAS_Z: gl.constexpr, HAS_BIAS: gl.constexpr,
        SOFTPLUS: gl.constexpr, HAS_H0: gl.constexpr, HAS_DOCS: gl.constexpr,
        SAVE_STATES: gl.constexpr, STORE_LAST: gl.constexpr, WATCH: gl.constexpr,
        SEG: gl.constexpr, PIPE: gl.constexpr,
    ):
        K: gl.constexpr = 8
        N: gl.constexpr = 16
        L3: gl.constexpr = gl.BlockedLayout([8, 1, 1], [1, 2, 16], [1, 1, 1], [0, 1, 2])
        LC: gl.constexpr = gl.SliceLayout(0, L3)
        LCH: gl.constexpr = gl.SliceLayout(0, LC)
        LS: gl.constexpr = gl.SliceLayout(2, L3)
        PLAIN3: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [2, 1, 0])

        pid_d = gl.program_id(0)
        b = gl.program_id(1).to(gl.int64)
        s = 0
        if SEG:
            s = gl.program_id(2)
        k1 = gl.arange(0, 8, layout=gl.SliceLayout(1, LS))
        h1 = gl.arange(0, 2, layout=gl.SliceLayout(0, LS))
        c1 = gl.arange(0, 16, layout=LCH)
        hc = gl.arange(0, 2, layout=gl.SliceLayout(1, LC))
        n3 = gl.expand_dims(gl.expand_dims(k1, 1) + 8 * gl.expand_dims(h1, 0), 2)  # (8, 2, 1)
        d3 = gl.expand_dims(gl.expand_dims(pid_d * 16 + c1, 0), 0)                  # (1, 1, 16)
        k3 = gl.expand_dims(gl.expand_dims(k1, 1), 2)                               # (8, 1, 1)
        dn3 = (b * dim + d3) * N + n3
        A2 = gl.load(A_ptr + d3 * N + n3) * 1.4426950408889634
        if HAS_H0:
            h = gl.load(h0_ptr + dn3)
        else:
            h = gl.zeros([8, 2, 16], gl.float32, L3)
        if SEG:  # the state entering the segment: the blocks before it, first first
            for kb in range(0, s * seg_blocks):
                sk = ((b * n_blocks + kb) * dim + d3) * N + n3
                h = gl.load(segH_ptr + sk) + gl.load(segP_ptr + sk) * h
        Dv = gl.zeros([1, 1, 16], gl.float32, L3)
        bias = gl.zeros([1, 1, 16], gl.float32, L3)
        if HAS_D:
            Dv = gl.load(pc_ptr + d3 * 2)
        if HAS_BIAS:
            bias = gl.load(pc_ptr + d3 * 2 + 1)

        d64 = d3.to(gl.int64)
        u_t = u_ptr + b * su_b + d64 * su_d + k3
        dt_t = dt_ptr + b * sdt_b + d64 * sdt_d + k3
        z_t = z_ptr + b * sz_b + d64 * sz_d + k3
        y_t = y_ptr + b * sy_b + d64 * sy_d + k3
        doc_t = doc_ptr + b * sdoc_b + k3 + 0 * d64
        c3 = gl.expand_dims(gl.expand_dims(c1, 0) + 0 * gl.expand_dims(hc, 1), 0)   # (1, 2, 16)
        h3 = gl.expand_dims(gl.expand_dims(0 * c1, 0) + gl.expand_dims(hc, 1), 0)   # (1, 2, 16)
        nbc = (8 * h3 + c3 % 8).to(gl.int64)
        bc_t = gl.where(c3 < 8, B_ptr + b * sB_b + nbc * sB_n, C_ptr + b * sC_b + nbc * sC_n) + k3
        st_t = states_ptr + (b * n_chunks * dim + d3) * N + n3

        sm_dt = gl.allocate_shared_memory(gl.float32, [K, 1, 16], PLAIN3)
        sm_dtu = gl.allocate_shared_memory(gl.float32, [K, 1, 16], PLAIN3)
        sm_keep = gl.allocate_shared_memory(gl.float32, [K, 1, 16], PLAIN3)
        sm_y = gl.allocate_shared_memory(gl.float32, [K, 1, 16], PLAIN3)
        sm_bc = gl.allocate_shared_memory(gl.float32, [K, 2, 16], PLAIN3)

        top = gl.zeros([8, 2, 16], gl.float32, L3)   # WATCH: the largest saved magnitude
        seqlen = n_chunks * K
        c_lo = 0
        c_hi = n_chunks
        if SEG:
            c_lo = s * seg_chunks
            c_hi = gl.minimum(c_lo + seg_chunks, n_chunks)
        if PIPE:
            nxt = _fwd_loads(u_t, dt_t, z_t, bc_t, doc_t, c_lo * K, HAS_Z, HAS_DOCS)
        for c in range(c_lo, c_hi):
            t = c * K
            if PIPE:
                cur = nxt
                nxt = _fwd_loads(u_t, dt_t, z_t, bc_t, doc_t, gl.minimum(t + K, seqlen - K),
                                 HAS_Z, HAS_DOCS)
            else:
                cur = _fwd_loads(u_t, dt_t, z_t, bc_t, doc_t, t, HAS_Z, HAS_DOCS)
            if SAVE_STATES:  # the state before the chunk: a thread's 8 one 16-byte store
                if WATCH:
                    top = gl.maximum(top, gl.abs(h))
                gl.store(st_t + c * dim * N, h.to(states_ptr.dtype.element_ty))
            # the chunk's per-channel values, once, on (K, 1, 16) tiles
            u_k = cur[0].to(gl.float32)
            dtp = cur[1].to(gl.float32)
            if HAS_BIAS:
                dtp = dtp + bias
            if SOFTPLUS:
                dtp = gb._softplus(dtp)
            sm_dt.store(dtp)
            sm_dtu.store(dtp * u_k)
            if HAS_DOCS:
                sm_keep.store(gl.where(cur[4] != 0, 0.0, 1.0))
            sm_bc.store(cur[3].to(gl.float32))
            for j in gl.static_range(K):
                dtj = gb._step(sm_dt, j, L3)
                bcj = sm_bc.slice(j, 1, dim=0)
                Bj = bcj.slice(0, 8, dim=2).permute([2, 1, 0]).load(L3)
                Cj = bcj.slice(8, 8, dim=2).permute([2, 1, 0]).load(L3)
                a = gl.exp2(dtj * A2)
                if HAS_DOCS:
                    a = a * gb._step(sm_keep, j, L3)   # a document starts: forget the state
                h = a * h + gb._step(sm_dtu, j, L3) * Bj
                sm_y.slice(j, 1, dim=0).store(gb._pair_sum(Cj * h))
            y_k = sm_y.load(L3)
            if HAS_D:
                y_k += Dv * u_k
            if HAS_Z:
                z_k = cur[2].to(gl.float32)
                y_k = y_k * z_k * gb._sigmoid(z_k)
            gl.store(y_t + t, y_k.to(y_ptr.dtype.element_ty))

        if STORE_LAST:
            if SEG:
                if s == n_segs - 1:
                    gl.store(last_ptr + dn3, h)
            else:
                gl.store(last_ptr + dn3, h)
        if WATCH:  # a NaN state compares False: the loss shows that one
            gl.store(flag_ptr + 0 * n3 + 0 * d3, gl.full([8, 2, 16], 1, gl.int32, L3),
                     mask=top > 65504.0)


def supported(*, dstate: int, chunk: int, dim: int, save_states: bool,
              states_dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the Gluon forward takes this call (the module docstring's contract)."""
    return (gluon is not None and device.type == "cuda"
            and os.environ.get("TRITON_INTERPRET", "0") != "1"
            and dstate == 16 and chunk == 8 and dim % 16 == 0
            and (not save_states or states_dtype == torch.float16))


def launch(*, u, delta, A, B, C, pc, z, initial_state, doc_starts, y, states, last, flag, segH,
           segP, has_d: bool, has_bias: bool, delta_softplus: bool, n_chunks: int,
           seg_chunks: int, segments: int, seg_blocks: int, n_blocks: int, watch: bool) -> None:
    """One launch, as selective_scan_lanes_fwd.lanes_fwd_launch's Triton one."""
    batch, dim, _ = u.shape
    zz = z if z is not None else u
    docs = doc_starts if doc_starts is not None else u
    _gluon_fwd_kernel[(dim // 16, batch, segments)](
        u, delta, A, B, C, pc, zz, initial_state if initial_state is not None else A, docs,
        y, states if states is not None else y, last if last is not None else y,
        flag if flag is not None else y, segH, segP,
        dim, n_chunks, seg_chunks, segments, seg_blocks, n_blocks,
        u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), zz.stride(0), zz.stride(1),
        B.stride(0), B.stride(1), C.stride(0), C.stride(1),
        docs.stride(0) if doc_starts is not None else 0, y.stride(0), y.stride(1),
        HAS_D=has_d, HAS_Z=z is not None, HAS_BIAS=has_bias, SOFTPLUS=delta_softplus,
        HAS_H0=initial_state is not None, HAS_DOCS=doc_starts is not None,
        SAVE_STATES=states is not None, STORE_LAST=last is not None, WATCH=watch,
        SEG=segments > 1, PIPE=bool(CONFIG["pipe"]), num_warps=1,
    )
