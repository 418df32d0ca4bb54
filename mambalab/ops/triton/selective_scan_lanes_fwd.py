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

from mambalab.ops.triton.lanes import load_steps, prefetch, shfl_idx, split_steps, store_steps
from mambalab.ops.triton.selective_scan_fwd import sigmoid, softplus

LOG2E = 1.4426950408889634


@triton.jit
def load_bc_steps(B_row, C_row, lane, t, N: tl.constexpr, BD: tl.constexpr, K: tl.constexpr):
    """Lane n < 16 gets B[n], lane 16 + n gets C[n], K steps from t, as (BD,) fp32 tensors."""
    tk = t + tl.arange(0, K)[None, :]
    ln = lane[:, None]
    bv = tl.load(B_row + tk, mask=ln < N, other=0.0).to(tl.float32)
    cv = tl.load(C_row + tk, mask=(ln >= 16) & (ln < 16 + N), other=0.0).to(tl.float32)
    return split_steps(bv + cv, BD, K)


@triton.jit
def load_bc(B_row, C_row, lane, t, N: tl.constexpr, BD: tl.constexpr, K: tl.constexpr):
    """load_bc_steps in loads of at most 16 bytes (see lanes.load_steps)."""
    BITS: tl.constexpr = B_row.dtype.element_ty.primitive_bitwidth
    if K * BITS <= 128:
        return load_bc_steps(B_row, C_row, lane, t, N, BD, K)
    else:
        H: tl.constexpr = K // 2
        return (load_bc_steps(B_row, C_row, lane, t, N, BD, H)
                + load_bc_steps(B_row, C_row, lane, t + H, N, BD, H))


@triton.jit
def _lanes_fwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, pc_ptr, z_ptr, h0_ptr, doc_ptr,
    y_ptr, states_ptr, last_ptr,
    dim, n_chunks,
    su_b, su_d, sdt_b, sdt_d, sz_b, sz_d, sB_b, sB_n, sC_b, sC_n, sdoc_b, sy_b, sy_d,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr, HAS_DOCS: tl.constexpr, SAVE_STATES: tl.constexpr,
    STORE_LAST: tl.constexpr, N: tl.constexpr, BD: tl.constexpr, K: tl.constexpr,
    PF: tl.constexpr,
):
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
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
    kk = tl.arange(0, K)[None, :]
    bc_row = tl.where(ln < 16, B_row, C_row)  # (BD, 1): the row each lane reads B or C from
    seqlen = n_chunks * K

    for c in range(n_chunks):
        t = c * K
        if PF > 0:  # chunk c + PF's inputs (the last chunk's, near the end: in bounds)
            tp = tl.minimum(t + PF * K, seqlen - K)
            prefetch(u_row + tp)
            prefetch(dt_row + tp)
            prefetch(bc_row + tp)
            if HAS_Z:
                prefetch(z_row + tp)
        u = load_steps(u_row, t, BD, K)
        dt = load_steps(dt_row, t, BD, K)
        if HAS_Z:
            z = load_steps(z_row, t, BD, K)
        bc = load_bc(B_row, C_row, lane, t, N, BD, K)
        if HAS_DOCS:
            doc = split_steps(tl.load(doc_row + t + kk).to(tl.float32), BD, K)
        if SAVE_STATES:
            st = states_ptr + (b * n_chunks + c) * dim * N + d * N
            for n in tl.static_range(N):
                tl.store(st + n, h[n])
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
        for n in tl.static_range(N):
            tl.store(last_ptr + dn + n, h[n])


def lanes_fwd_launch(
    *, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None, z: torch.Tensor | None, delta_bias: torch.Tensor | None,
    delta_softplus: bool, initial_state: torch.Tensor | None, doc_starts: torch.Tensor | None,
    save_states: bool, return_last_state: bool, chunk: int, num_warps: int,
    prefetch_chunks: int = 2, y_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Launch the forward: (y (B, D, L), last_state (B, D, N) fp32 | None, states (B, L / chunk,
    D, N) fp32 | None: h at every chunk start). Inputs validated, contract above checked."""
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    n_chunks = seqlen // chunk
    y = torch.empty((batch, dim, seqlen), device=u.device, dtype=u.dtype) if y_out is None else y_out
    states = (torch.empty((batch, n_chunks, dim, dstate), device=u.device, dtype=torch.float32)
              if save_states else None)
    last = (torch.empty((batch, dim, dstate), device=u.device, dtype=torch.float32)
            if return_last_state else None)
    pc = per_channel(D, delta_bias, dim, u.device)
    zz = z if z is not None else u
    docs = doc_starts if doc_starts is not None else u
    bd = 32 * num_warps
    _lanes_fwd_kernel[(dim // bd, batch)](
        u, delta, A, B, C, pc, zz, initial_state if initial_state is not None else A, docs,
        y, states if states is not None else y, last if last is not None else y,
        dim, n_chunks,
        u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), zz.stride(0), zz.stride(1),
        B.stride(0), B.stride(1), C.stride(0), C.stride(1),
        docs.stride(0) if doc_starts is not None else 0, y.stride(0), y.stride(1),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=delta_softplus, HAS_H0=initial_state is not None,
        HAS_DOCS=doc_starts is not None, SAVE_STATES=save_states, STORE_LAST=return_last_state,
        N=dstate, BD=bd, K=chunk, PF=prefetch_chunks, num_warps=num_warps,
    )
    return y, last, states


def per_channel(D: torch.Tensor | None, delta_bias: torch.Tensor | None, dim: int,
                device: torch.device) -> torch.Tensor:
    """(D, 2) fp32: the skip D and the dt bias side by side (0 where absent), so that the kernels
    read them with lanes two elements apart (a contiguous (BD,) load would be vectorised, giving
    its tensor several channels per thread)."""
    pc = torch.zeros((dim, 2), device=device, dtype=torch.float32)
    if D is not None:
        pc[:, 0] = D
    if delta_bias is not None:
        pc[:, 1] = delta_bias
    return pc
