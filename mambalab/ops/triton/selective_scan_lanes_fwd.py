"""Forward kernel of the "lanes" selective scan (Mamba-1): one thread per (batch, channel).

Each thread holds the N (<= 16) fp32 states of its channel in registers, as a tuple of (BD,)
tensors (lanes.py says why 1-D), and advances them one step at a time, K steps per chunk, the
steps unrolled. Per chunk each lane loads its channel's K steps of u, dt and z as one vector, and
the K steps of B (lanes 0-15: state n = lane) and C (lanes 16-31) as one more; in each step a
state's B_n and C_n reach every lane by a shuffle. So the recurrence is one FMA per state and
step, y's sum over the states is register adds, and the per-(t, channel) work (softplus, the
gate) is done once, not once per lane of a channel as in the tile kernels.

Contract: seqlen % K == 0, dim % BD == 0, N <= 16, unit stride along time for u, dt, z, B, C and
y (selective_scan.py checks and otherwise takes the tile kernels).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mambalab.ops.triton import lanes_states
from mambalab.ops.triton.lanes import (load_raw, load_raw_masked, raw_steps, shfl_idx, store_steps,
                                      store_vec, take)
from mambalab.ops.triton.selective_scan_fwd import sigmoid, softplus
from mambalab.ops.triton.selective_scan_lanes_carry import (lanes_fwd_carry_launch,
                                                          resolve_segments, segment_chunks,
                                                          sm_count)

LOG2E = 1.4426950408889634
# the forward's warps an SM that "auto" segments aim at (at 128 registers 16 fit, at 168 12)
FWD_WARPS_PER_SM = 8
# the register cap maxnreg="auto" gives ptxas where it costs no extra wave: ptxas's own choice
# is 128, and it then places each chunk's loads (issued a chunk ahead in the source) at 78% of
# the loop (offline SASS); at 168 it schedules them earlier and the forward took 0.882 / 0.889
# against 1.015 / 1.027 ms at B=32 and 0.373 / 0.373 against 0.381 / 0.382 at B=8 (H200, two
# calls, the same outputs bit for bit; docs/kernels/selective_scan.md, twentieth session)
FWD_MAXNREG = 168
REGISTERS_PER_SM = 65536


def fwd_maxnreg(maxnreg: int | str | None, warps: int, sms: int | None) -> int | None:
    """ptxas's register cap for a forward launch of ``warps`` one-warp programs on ``sms`` SMs
    (None off CUDA): ``maxnreg`` itself (an int, or None for ptxas's choice), or for "auto"
    FWD_MAXNREG where the launch needs no more waves at FWD_MAXNREG registers a thread than at
    128 (on an H200 up to 1,584 warps: B=32 at D=1536), else None."""
    if maxnreg != "auto":
        if maxnreg is not None and (isinstance(maxnreg, bool) or not isinstance(maxnreg, int)
                                    or not 24 <= maxnreg <= 255):
            raise ValueError(f"selective_scan CONFIG['lanes_fwd_maxnreg'] must be \"auto\", None "
                             f"or a register count in [24, 255], got {maxnreg!r}")
        return maxnreg
    if sms is None:
        return None

    def waves(regs: int) -> int:
        return -(-warps // (sms * (REGISTERS_PER_SM // (32 * regs))))

    return FWD_MAXNREG if waves(FWD_MAXNREG) <= waves(128) else None


@triton.jit
def load_bc_raw(bc_row, lane, t, N: tl.constexpr, K: tl.constexpr):
    """K steps from t of B[n] (lanes n < 16) and C[n] (lanes 16 + n), zeros for n >= N, raw
    (lanes.load_raw); bc_row: each lane's row of B or C."""
    return load_raw_masked(bc_row, t, (lane[:, None] % 16) < N, K)


@triton.jit
def chunk_inputs(u_row, dt_row, z_row, bc_row, doc_row, lane, t, HAS_Z: tl.constexpr,
                 HAS_DOCS: tl.constexpr, N: tl.constexpr, K: tl.constexpr):
    """The raw loads of one chunk's inputs (u, dt, z, B/C, document starts), as one flat tuple:
    issued a chunk ahead of their use when the kernels pipeline (PIPE)."""
    out = load_raw(u_row, t, K) + load_raw(dt_row, t, K)
    if HAS_Z:
        out = out + load_raw(z_row, t, K)
    out = out + load_bc_raw(bc_row, lane, t, N, K)
    if HAS_DOCS:
        out = out + load_raw(doc_row, t, K)
    return out


@triton.jit
def unpack_inputs(raw, u_ty, dt_ty, z_ty, bc_ty, HAS_Z: tl.constexpr, HAS_DOCS: tl.constexpr,
                  BD: tl.constexpr, K: tl.constexpr):
    """chunk_inputs' tuple -> (u, dt, z, bc, doc), each K fp32 (BD,) tensors (z, doc: () when
    absent). The element types say how many tiles each input took (lanes.load_raw)."""
    nu: tl.constexpr = 1 if K * u_ty.primitive_bitwidth <= 128 else 2
    ndt: tl.constexpr = 1 if K * dt_ty.primitive_bitwidth <= 128 else 2
    nz: tl.constexpr = (1 if K * z_ty.primitive_bitwidth <= 128 else 2) if HAS_Z else 0
    nbc: tl.constexpr = 1 if K * bc_ty.primitive_bitwidth <= 128 else 2
    u = raw_steps(take(raw, 0, nu), BD, K)
    dt = raw_steps(take(raw, nu, ndt), BD, K)
    z = ()
    if HAS_Z:
        z = raw_steps(take(raw, nu + ndt, nz), BD, K)
    bc = raw_steps(take(raw, nu + ndt + nz, nbc), BD, K)
    doc = ()
    if HAS_DOCS:
        doc = raw_steps(take(raw, nu + ndt + nz + nbc, 1), BD, K)
    return u, dt, z, bc, doc


@triton.jit
def _lanes_fwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, pc_ptr, z_ptr, h0_ptr, doc_ptr,
    y_ptr, states_ptr, last_ptr, flag_ptr, segH_ptr, segP_ptr,
    dim, n_chunks, seg_chunks, n_segs, seg_blocks, n_blocks,
    su_b, su_d, sdt_b, sdt_d, sz_b, sz_d, sB_b, sB_n, sC_b, sC_n, sdoc_b, sy_b, sy_d,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr, HAS_DOCS: tl.constexpr, SAVE_STATES: tl.constexpr,
    STORE_LAST: tl.constexpr, N: tl.constexpr, BD: tl.constexpr, K: tl.constexpr,
    PIPE: tl.constexpr, ST_DN: tl.constexpr, WATCH: tl.constexpr, SEG: tl.constexpr,
):
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    s = 0
    if SEG:  # time segment: chunks [s * seg_chunks, ...) (selective_scan_lanes_carry.py)
        s = tl.program_id(2)
    d = pid_d * BD + tl.arange(0, BD)  # (BD,): one channel per thread
    lane = tl.arange(0, BD) % 32
    dn = b * dim * N + d * N  # (B, D, N) slabs: lanes N apart, never a vector along d
    # A, D and the dt bias are read with lanes N (or 2) elements apart, so no load is a vector
    # along channels: every (BD,) tensor keeps one element per thread, which the shuffles need.
    A2 = ()
    h = ()
    for n in tl.static_range(N):
        A2 = A2 + (tl.load(A_ptr + d * N + n) * 1.4426950408889634,)  # exp(x) = exp2(x log2 e)
        if HAS_H0:
            h = h + (tl.load(h0_ptr + dn + n),)
        else:
            h = h + (tl.zeros([BD], dtype=tl.float32),)
    if SEG:  # the state entering the segment: the blocks before it, first first: h <- H + P h
        for k in range(0, s * seg_blocks):
            sk = ((b * n_blocks + k) * dim + d) * N
            hk = ()
            for n in tl.static_range(N):
                hk = hk + (tl.load(segH_ptr + sk + n) + tl.load(segP_ptr + sk + n) * h[n],)
            h = hk
    if HAS_D:
        Dv = tl.load(pc_ptr + d * 2)
    if HAS_BIAS:
        bias = tl.load(pc_ptr + d * 2 + 1)

    dcol = d[:, None].to(tl.int64)
    u_row = u_ptr + b * su_b + dcol * su_d  # (BD, 1)
    dt_row = dt_ptr + b * sdt_b + dcol * sdt_d
    z_row = z_ptr + b * sz_b + dcol * sz_d
    y_row = y_ptr + b * sy_b + dcol * sy_d
    ln = lane[:, None].to(tl.int64)
    B_row = B_ptr + b * sB_b + (ln % 16) * sB_n
    C_row = C_ptr + b * sC_b + (ln % 16) * sC_n
    doc_row = doc_ptr + b * sdoc_b + dcol * 0
    bc_row = tl.where(ln < 16, B_row, C_row)  # (BD, 1): the row each lane reads B or C from
    seqlen = n_chunks * K
    u_ty: tl.constexpr = u_ptr.dtype.element_ty
    dt_ty: tl.constexpr = dt_ptr.dtype.element_ty
    z_ty: tl.constexpr = z_ptr.dtype.element_ty
    bc_ty: tl.constexpr = B_ptr.dtype.element_ty

    top = tl.zeros([BD], dtype=tl.float32)  # WATCH: the largest saved magnitude
    c_lo = 0
    c_hi = n_chunks
    if SEG:
        c_lo = s * seg_chunks
        c_hi = tl.minimum(c_lo + seg_chunks, n_chunks)
    if PIPE:  # the first chunk's loads; each chunk then asks for the next one's before its work
        nxt = chunk_inputs(u_row, dt_row, z_row, bc_row, doc_row, lane, c_lo * K, HAS_Z,
                           HAS_DOCS, N, K)
    for c in range(c_lo, c_hi):
        t = c * K
        if PIPE:
            cur = nxt
            # the last chunk loads itself again (in bounds, unused)
            nxt = chunk_inputs(u_row, dt_row, z_row, bc_row, doc_row, lane,
                               tl.minimum(t + K, seqlen - K), HAS_Z, HAS_DOCS, N, K)
        else:
            cur = chunk_inputs(u_row, dt_row, z_row, bc_row, doc_row, lane, t, HAS_Z, HAS_DOCS,
                               N, K)
        u, dt, z, bc, doc = unpack_inputs(cur, u_ty, dt_ty, z_ty, bc_ty, HAS_Z, HAS_DOCS, BD, K)
        if SAVE_STATES:  # lanes_states.py: dtypes and layouts
            if WATCH:  # fp16 states: is one beyond its range?
                for n in tl.static_range(N):
                    top = tl.maximum(top, tl.abs(h[n]))
            if ST_DN:  # (B, n_chunks, D, N): a thread's N states as 16-byte vectors
                store_vec(states_ptr + (b * n_chunks + c) * N * dim + dcol * N, h, BD, N)
            else:  # (B, n_chunks, N, D): each state's store is one line per warp
                st = states_ptr + (b * n_chunks + c) * N * dim + d
                for n in tl.static_range(N):
                    tl.store(st + n * dim, h[n].to(states_ptr.dtype.element_ty))
        ys = ()
        for j in tl.static_range(K):
            dtj = dt[j]
            if HAS_BIAS:
                dtj += bias
            if SOFTPLUS:
                dtj = softplus(dtj)
            dtu = dtj * u[j]
            y = tl.zeros([BD], dtype=tl.float32)
            hn = ()
            for n in tl.static_range(N):
                a = tl.exp2(dtj * A2[n])
                if HAS_DOCS:
                    a = tl.where(doc[j] != 0, 0.0, a)  # a document starts: forget the state
                hv = a * h[n] + dtu * shfl_idx(bc[j], n, BD)
                y += shfl_idx(bc[j], 16 + n, BD) * hv
                hn = hn + (hv,)
            h = hn
            if HAS_D:
                y += Dv * u[j]
            if HAS_Z:
                y = y * z[j] * sigmoid(z[j])
            ys = ys + (y,)
        store_steps(y_row, t, ys, BD, K)

    if STORE_LAST:
        if SEG:
            if s == n_segs - 1:
                for n in tl.static_range(N):
                    tl.store(last_ptr + dn + n, h[n])
        else:
            for n in tl.static_range(N):
                tl.store(last_ptr + dn + n, h[n])
    if WATCH:  # a NaN state compares False: the loss shows that one
        tl.store(flag_ptr + lane * 0, tl.full([BD], 1, tl.int32), mask=top > 65504.0)


def lanes_fwd_launch(
    *, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None, z: torch.Tensor | None, delta_bias: torch.Tensor | None,
    delta_softplus: bool, initial_state: torch.Tensor | None, doc_starts: torch.Tensor | None,
    save_states: bool, return_last_state: bool, chunk: int, num_warps: int,
    pipeline: bool = True, y_out: torch.Tensor | None = None,
    states_dtype: torch.dtype = torch.float32, segments: int | str = 1,
    maxnreg: int | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Launch the forward: (y (B, D, L), last_state (B, D, N) fp32 | None, states | None: h at
    every chunk start in ``states_dtype``, fp32 or fp16, laid out as lanes_states.py says).
    Inputs validated, contract above checked. Saving fp16 states raises lanes_states' overflow
    flag where one exceeds fp16's range. A batch too small to fill the device runs in
    ``segments`` time segments (an int, or "auto": time_segments at FWD_WARPS_PER_SM), each
    starting from the state lanes_fwd_carry_launch's blocks give it. ``maxnreg``: ptxas's
    register cap (fwd_maxnreg: an int, None, or "auto")."""
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    n_chunks = seqlen // chunk
    y = torch.empty((batch, dim, seqlen), device=u.device, dtype=u.dtype) if y_out is None else y_out
    states = (lanes_states.alloc(batch, n_chunks, dim, dstate, states_dtype, u.device)
              if save_states else None)
    watch = save_states and states_dtype == torch.float16
    last = (torch.empty((batch, dim, dstate), device=u.device, dtype=torch.float32)
            if return_last_state else None)
    pc = per_channel(D, delta_bias, dim, u.device)
    zz = z if z is not None else u
    docs = doc_starts if doc_starts is not None else u
    bd = 32 * num_warps
    segments = resolve_segments(segments, batch, dim // 32, n_chunks, u.device,
                                FWD_WARPS_PER_SM, "lanes_fwd_segments")
    seg_chunks, blk_chunks = segment_chunks(n_chunks, segments)
    n_blocks = -(-n_chunks // blk_chunks)
    segH = segP = A  # valid pointers, never read with one segment
    if segments > 1:
        segH, segP = lanes_fwd_carry_launch(
            u=u, delta=delta, A=A, B=B, pc=pc, has_bias=delta_bias is not None,
            delta_softplus=delta_softplus, doc_starts=doc_starts, chunk=chunk,
            blk_chunks=blk_chunks, n_needed=(segments - 1) * (seg_chunks // blk_chunks),
            num_warps=num_warps)
    cap = fwd_maxnreg(maxnreg, dim // bd * batch * segments,
                      sm_count(u.device) if u.device.type == "cuda" else None)
    _lanes_fwd_kernel[(dim // bd, batch, segments)](
        u, delta, A, B, C, pc, zz, initial_state if initial_state is not None else A, docs,
        y, states if states is not None else y, last if last is not None else y,
        lanes_states.overflow_flag(u.device) if watch else y, segH, segP,
        dim, n_chunks, seg_chunks, segments, seg_chunks // blk_chunks, n_blocks,
        u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), zz.stride(0), zz.stride(1),
        B.stride(0), B.stride(1), C.stride(0), C.stride(1),
        docs.stride(0) if doc_starts is not None else 0, y.stride(0), y.stride(1),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=delta_softplus, HAS_H0=initial_state is not None,
        HAS_DOCS=doc_starts is not None, SAVE_STATES=save_states, STORE_LAST=return_last_state,
        N=dstate, BD=bd, K=chunk, PIPE=pipeline,
        ST_DN=save_states and lanes_states.layout_dn(dstate, states_dtype), WATCH=watch,
        SEG=segments > 1, num_warps=num_warps, **({"maxnreg": cap} if cap else {}),
    )
    if watch:
        lanes_states.watch(u.device)
    return y, last, states


def per_channel(D: torch.Tensor | None, delta_bias: torch.Tensor | None, dim: int,
                device: torch.device) -> torch.Tensor:
    """(D, 2) fp32: the skip D and the dt bias side by side (0 where absent), so that the kernels
    read them with lanes two elements apart (a contiguous (BD,) load would be vectorised, giving
    its tensor several channels per thread). One stack when both are given (the mixer's case:
    one launch, not three, in each forward and backward)."""
    if D is not None and delta_bias is not None:
        return torch.stack((D.float(), delta_bias.float()), dim=1)
    pc = torch.zeros((dim, 2), device=device, dtype=torch.float32)
    if D is not None:
        pc[:, 0] = D
    if delta_bias is not None:
        pc[:, 1] = delta_bias
    return pc
