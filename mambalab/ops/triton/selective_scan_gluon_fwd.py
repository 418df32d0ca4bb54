"""The lanes scan's forward written in Gluon (Triton's explicit-layout dialect): one thread a
channel as in the Triton forward (selective_scan_lanes_fwd.py), with B and C read per step from
shared memory as 16-byte broadcasts instead of shuffled from the lanes that loaded them.

Why: the Triton forward issues 1,173 instructions a chunk (K = 8 steps, 16 states; Triton 3.6,
sm_90), 256 of them the shuffles that bring each step's 16 B and 16 C values to every lane;
Triton cannot address shared memory, Gluon can. Here each chunk's B and C (lanes 0-15 load
B_0..15's K steps, lanes 16-31 C's, as in the Triton kernel) are stored once to a (K, 32) fp32
tile, and every step reads its row as 8 broadcast loads of 16 bytes. The chunk's per-channel
values (softplus(dt + bias), dt u, -inf where a document starts) are computed once on (K, 32) tiles, a
channel's K steps in its thread, and read back per step; y is assembled in registers and leaves
as one 16-byte store a thread. (A Gluon forward with two threads a channel, sixteenth session,
issued more instructions a channel than the Triton one and was no faster: its per-step work was
done twice.)

Same outputs as the Triton forward, from the same inputs: y, the last state, the chunk states in
fp16 ((B, L / K, D, N), a thread's 16 states two 16-byte stores) with the overflow flag, time
segments from the same carry kernel. Contract (else the Triton kernel): N = 16, K = 8, D a
multiple of 32, states not saved or saved as fp16 in (D, N) layout, a CUDA device, Triton not in
interpreter mode. Gluon kernels do not run under TRITON_INTERPRET=1, so the CPU tests keep
testing the Triton kernel and this one is tested on the GPU against it
(tests/ops/test_gluon_scan_fwd.py).
"""
from __future__ import annotations

import os

import torch

from mambalab.ops.triton import config_from_env
from mambalab.ops.triton.selective_scan_fwd import sigmoid, softplus

try:  # Triton >= 3.5; the package still imports without it (CPU runs use the Triton kernels)
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.ampere import async_copy
except ImportError:  # pragma: no cover - depends on the installed Triton
    gluon = None
    gl = None

# pipe: issue the next chunk's loads before this chunk's work. async: those loads as cp.async
# copies into shared memory (two stages), waited on by their group count, instead of loads
# into registers: ptxas gives a register load one of a warp's six scoreboards and lets later
# exponentials and shared-memory loads share it, so the chunk's first steps wait for the next
# chunk's loads (Nsight Compute, twentieth session: 25% of the forward's stall samples at
# B=32 on two such instructions)
CONFIG = {"pipe": True, "async": True}
# MAMBALAB_GLUON_FWD_CONFIG='{"pipe": false}' (JSON) overrides CONFIG keys for a process.
config_from_env(CONFIG, "MAMBALAB_GLUON_FWD_CONFIG")


def available() -> bool:
    return gluon is not None


if gluon is not None:

    @gluon.jit
    def _fwd_loads(u_t, dt_t, z_t, bc_t, doc_t, t, HAS_Z: gl.constexpr, HAS_DOCS: gl.constexpr):
        """The raw loads of the chunk at step t: u, delta, z, B/C, document starts ((K, 32)
        tiles, a thread's K steps one vector)."""
        z = gl.load(z_t + t) if HAS_Z else gl.load(u_t + t)
        doc = gl.load(doc_t + t) if HAS_DOCS else gl.load(u_t + t)
        return (gl.load(u_t + t), gl.load(dt_t + t), z, gl.load(bc_t + t), doc)

    @gluon.jit
    def _fwd_copies(s_u, s_dt, s_z, s_bc, s_doc, u_t, dt_t, z_t, bc_t, doc_t, t,
                    HAS_Z: gl.constexpr, HAS_DOCS: gl.constexpr):
        """_fwd_loads as cp.async copies into one stage of the raw buffers, one group."""
        async_copy.async_copy_global_to_shared(s_u, u_t + t)
        async_copy.async_copy_global_to_shared(s_dt, dt_t + t)
        if HAS_Z:
            async_copy.async_copy_global_to_shared(s_z, z_t + t)
        async_copy.async_copy_global_to_shared(s_bc, bc_t + t)
        if HAS_DOCS:
            async_copy.async_copy_global_to_shared(s_doc, doc_t + t)
        async_copy.commit_group()

    @gluon.jit
    def _gluon_fwd_kernel(
        u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, pc_ptr, z_ptr, h0_ptr, doc_ptr,
        y_ptr, states_ptr, last_ptr, flag_ptr, segH_ptr, segP_ptr,
        dim, n_chunks, seg_chunks, n_segs, seg_blocks, n_blocks,
        su_b, su_d, sdt_b, sdt_d, sz_b, sz_d, sB_b, sB_n, sC_b, sC_n, sdoc_b, sy_b, sy_d,
        HAS_D: gl.constexpr, HAS_Z: gl.constexpr, HAS_BIAS: gl.constexpr,
        SOFTPLUS: gl.constexpr, HAS_H0: gl.constexpr, HAS_DOCS: gl.constexpr,
        SAVE_STATES: gl.constexpr, STORE_LAST: gl.constexpr, WATCH: gl.constexpr,
        SEG: gl.constexpr, PIPE: gl.constexpr, ASYNC: gl.constexpr,
    ):
        K: gl.constexpr = 8
        N: gl.constexpr = 16
        # (16 states, 32 channels): lane c holds channel c's 16 states, one warp a program
        L2: gl.constexpr = gl.BlockedLayout([16, 1], [1, 32], [1, 1], [0, 1])
        # (K steps, 32 channels) tiles: lane c holds channel c's K steps
        LT: gl.constexpr = gl.BlockedLayout([8, 1], [1, 32], [1, 1], [0, 1])
        SM2: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])
        # ASYNC's raw chunks ((K, 32) a stage, 2 stages): a channel's K steps contiguous,
        # as in global memory, so that each thread's copy is one 16-byte cp.async
        SMR: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [0, 1])

        pid_d = gl.program_id(0)
        b = gl.program_id(1).to(gl.int64)
        s = 0
        if SEG:
            s = gl.program_id(2)
        n2 = gl.expand_dims(gl.arange(0, 16, layout=gl.SliceLayout(1, L2)), 1)       # (16, 1)
        d2 = gl.expand_dims(pid_d * 32 + gl.arange(0, 32, layout=gl.SliceLayout(0, L2)), 0)
        dn2 = (b * dim + d2) * N + n2                                                 # (16, 32)
        A2 = gl.load(A_ptr + d2 * N + n2) * 1.4426950408889634   # exp(x) = exp2(x log2 e)
        if HAS_H0:
            h = gl.load(h0_ptr + dn2)
        else:
            h = gl.zeros([16, 32], gl.float32, L2)
        if SEG:  # the state entering the segment: the blocks before it, first first
            for kb in range(0, s * seg_blocks):
                sk = ((b * n_blocks + kb) * dim + d2) * N + n2
                h = gl.load(segH_ptr + sk) + gl.load(segP_ptr + sk) * h

        kk = gl.expand_dims(gl.arange(0, 8, layout=gl.SliceLayout(1, LT)), 1)        # (8, 1)
        ct = gl.expand_dims(gl.arange(0, 32, layout=gl.SliceLayout(0, LT)), 0)       # (1, 32)
        dT = (pid_d * 32 + ct).to(gl.int64)
        Dv = gl.zeros([1, 32], gl.float32, LT)
        bias = gl.zeros([1, 32], gl.float32, LT)
        if HAS_D:
            Dv = gl.load(pc_ptr + dT * 2)
        if HAS_BIAS:
            bias = gl.load(pc_ptr + dT * 2 + 1)
        u_t = u_ptr + b * su_b + dT * su_d + kk
        dt_t = dt_ptr + b * sdt_b + dT * sdt_d + kk
        z_t = z_ptr + b * sz_b + dT * sz_d + kk
        y_t = y_ptr + b * sy_b + dT * sy_d + kk
        doc_t = doc_ptr + b * sdoc_b + kk + 0 * dT
        # lane n < 16 loads B_n's K steps, lane 16 + n C_n's: the chunk's (K, 32) B/C tile
        nbc = (ct % 16).to(gl.int64)
        bc_t = gl.where(ct < 16, B_ptr + b * sB_b + nbc * sB_n, C_ptr + b * sC_b + nbc * sC_n) + kk
        st_t = states_ptr + (b * n_chunks * dim + d2) * N + n2   # + c * dim * N

        sm_dt = gl.allocate_shared_memory(gl.float32, [K, 32], SM2)
        sm_dtu = gl.allocate_shared_memory(gl.float32, [K, 32], SM2)
        sm_keep = gl.allocate_shared_memory(gl.float32, [K, 32], SM2)
        sm_bc = gl.allocate_shared_memory(gl.float32, [K, 32], SM2)

        top = gl.zeros([16, 32], gl.float32, L2)   # WATCH: the largest saved magnitude
        seqlen = n_chunks * K
        c_lo = 0
        c_hi = n_chunks
        if SEG:
            c_lo = s * seg_chunks
            c_hi = gl.minimum(c_lo + seg_chunks, n_chunks)
        if ASYNC:
            raw_u = gl.allocate_shared_memory(u_ptr.dtype.element_ty, [2, K, 32], SMR)
            raw_dt = gl.allocate_shared_memory(dt_ptr.dtype.element_ty, [2, K, 32], SMR)
            raw_z = gl.allocate_shared_memory(z_ptr.dtype.element_ty, [2, K, 32], SMR)
            raw_bc = gl.allocate_shared_memory(B_ptr.dtype.element_ty, [2, K, 32], SMR)
            raw_doc = gl.allocate_shared_memory(doc_ptr.dtype.element_ty, [2, K, 32], SMR)
            _fwd_copies(raw_u.index(0), raw_dt.index(0), raw_z.index(0), raw_bc.index(0),
                        raw_doc.index(0), u_t, dt_t, z_t, bc_t, doc_t, c_lo * K, HAS_Z,
                        HAS_DOCS)
        elif PIPE:
            nxt = _fwd_loads(u_t, dt_t, z_t, bc_t, doc_t, c_lo * K, HAS_Z, HAS_DOCS)
        for c in range(c_lo, c_hi):
            t = c * K
            if ASYNC:  # the next chunk's copies (the last chunk copies itself again, unused),
                # then wait for this chunk's
                st = (c - c_lo) % 2
                _fwd_copies(raw_u.index(1 - st), raw_dt.index(1 - st), raw_z.index(1 - st),
                            raw_bc.index(1 - st), raw_doc.index(1 - st), u_t, dt_t, z_t, bc_t,
                            doc_t, gl.minimum(t + K, seqlen - K), HAS_Z, HAS_DOCS)
                async_copy.wait_group(1)
                zr = raw_u.index(st).load(LT)
                if HAS_Z:
                    zr = raw_z.index(st).load(LT)
                docr = raw_u.index(st).load(LT)
                if HAS_DOCS:
                    docr = raw_doc.index(st).load(LT)
                cur = (raw_u.index(st).load(LT), raw_dt.index(st).load(LT), zr,
                       raw_bc.index(st).load(LT), docr)
            elif PIPE:
                cur = nxt
                # the last chunk loads itself again (in bounds, unused)
                nxt = _fwd_loads(u_t, dt_t, z_t, bc_t, doc_t, gl.minimum(t + K, seqlen - K),
                                 HAS_Z, HAS_DOCS)
            else:
                cur = _fwd_loads(u_t, dt_t, z_t, bc_t, doc_t, t, HAS_Z, HAS_DOCS)
            if SAVE_STATES:  # the state before the chunk: a thread's 16, two 16-byte stores
                if WATCH:
                    top = gl.maximum(top, gl.abs(h))
                gl.store(st_t + c * dim * N, h.to(states_ptr.dtype.element_ty))
            # the chunk's per-channel values, once, on (K, 32) tiles
            u_k = cur[0].to(gl.float32)
            dtp = cur[1].to(gl.float32)
            if HAS_BIAS:
                dtp = dtp + bias
            if SOFTPLUS:
                dtp = softplus(dtp)
            sm_dt.store(dtp)
            sm_dtu.store(dtp * u_k)
            if HAS_DOCS:  # log2 of the decay's factor: -inf where a document starts
                sm_keep.store(gl.where(cur[4] != 0, float("-inf"), 0.0))
            sm_bc.store(cur[3].to(gl.float32))
            y_k = gl.zeros([8, 32], gl.float32, LT)
            for j in gl.static_range(K):
                dtj = sm_dt.slice(j, 1, dim=0).load(L2)                     # (1, 32)
                row = sm_bc.slice(j, 1, dim=0)
                Bj = row.slice(0, 16, dim=1).permute([1, 0]).load(L2)       # (16, 1)
                Cj = row.slice(16, 16, dim=1).permute([1, 0]).load(L2)
                if HAS_DOCS:   # a document starts: exp2(-inf) = 0 forgets the state, in the
                    # decay's FMA rather than a multiply a state
                    a = gl.exp2(dtj * A2 + sm_keep.slice(j, 1, dim=0).load(L2))
                else:
                    a = gl.exp2(dtj * A2)
                h = a * h + sm_dtu.slice(j, 1, dim=0).load(L2) * Bj
                yj = gl.convert_layout(gl.sum(Cj * h, axis=0, keep_dims=True), LT)  # (1, 32)
                y_k = gl.where(kk == j, yj, y_k)   # register j of the thread's K: a move
            if HAS_D:
                y_k += Dv * u_k
            if HAS_Z:
                z_k = cur[2].to(gl.float32)
                y_k = y_k * z_k * sigmoid(z_k)
            gl.store(y_t + t, y_k.to(y_ptr.dtype.element_ty))

        if STORE_LAST:
            if SEG:
                if s == n_segs - 1:
                    gl.store(last_ptr + dn2, h)
            else:
                gl.store(last_ptr + dn2, h)
        if WATCH:  # a NaN state compares False: the loss shows that one
            gl.store(flag_ptr + 0 * dn2, gl.full([16, 32], 1, gl.int32, L2), mask=top > 65504.0)


def supported(*, dstate: int, chunk: int, dim: int, save_states: bool,
              states_dtype: torch.dtype, states_dn: bool, device: torch.device) -> bool:
    """Whether the Gluon forward takes this call (the module docstring's contract)."""
    return (gluon is not None and device.type == "cuda"
            and os.environ.get("TRITON_INTERPRET", "0") != "1"
            and dstate == 16 and chunk == 8 and dim % 32 == 0
            and (not save_states or (states_dtype == torch.float16 and states_dn)))


def launch(*, u, delta, A, B, C, pc, z, initial_state, doc_starts, y, states, last, flag, segH,
           segP, has_d: bool, has_bias: bool, delta_softplus: bool, n_chunks: int,
           seg_chunks: int, segments: int, seg_blocks: int, n_blocks: int) -> None:
    """One launch, as selective_scan_lanes_fwd.lanes_fwd_launch's Triton one (``flag``: the
    fp16 overflow flag, or None when the states are not watched)."""
    batch, dim, _ = u.shape
    zz = z if z is not None else u
    docs = doc_starts if doc_starts is not None else u
    _gluon_fwd_kernel[(dim // 32, batch, segments)](
        u, delta, A, B, C, pc, zz, initial_state if initial_state is not None else A, docs,
        y, states if states is not None else y, last if last is not None else y,
        flag if flag is not None else y, segH, segP,
        dim, n_chunks, seg_chunks, segments, seg_blocks, n_blocks,
        u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), zz.stride(0), zz.stride(1),
        B.stride(0), B.stride(1), C.stride(0), C.stride(1),
        docs.stride(0) if doc_starts is not None else 0, y.stride(0), y.stride(1),
        HAS_D=has_d, HAS_Z=z is not None, HAS_BIAS=has_bias, SOFTPLUS=delta_softplus,
        HAS_H0=initial_state is not None, HAS_DOCS=doc_starts is not None,
        SAVE_STATES=states is not None, STORE_LAST=last is not None, WATCH=flag is not None,
        SEG=segments > 1, PIPE=bool(CONFIG["pipe"]),
        ASYNC=bool(CONFIG["pipe"] and CONFIG["async"]), num_warps=1,
    )
