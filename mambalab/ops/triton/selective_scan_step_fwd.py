"""Forward kernel of the Triton selective scan, one time step per tile ("step" kernels; not the
default: measured 2.1x slower than the tile kernels on an H200, docs/kernels/selective_scan.md).

One program per (block of BLOCK_D channels, batch, time segment). The state h is a 3-D tile
(N_IN, BLOCK_D, N_OUT) in fp32, state n = i * N_OUT + o, compiled with the lanes on the channels
and the N_IN states in registers (N_OUT 1 by default); the (d, n) tensors are laid out (N, D) and
B and C loaded as (states, 1) tiles so that Triton's coalescing keeps that layout (see the
kernel's comments: it put the lanes on the states otherwise). The time loop advances one step per tile operation (BLOCK_T steps unrolled per loop
iteration for instruction-level parallelism), so the recurrence is one FMA per element, with no
associative scan and its wasted decay products (the older kernels in selective_scan_fwd.py scan a
(N_IN, BLOCK_T, BLOCK_D, N_OUT) tile and compute the pair product a_l * a_r for every element).

Per-channel vectors are loaded through pointers broadcast over the N_OUT axis ((1, BLOCK_D,
N_OUT)); y is reduced with keep_dims. A chunk's loads are all issued before
its stores (a load after a store that may alias it would wait there). Any input strides work.
The state before every STATE_EVERY-th step is written to ``states`` (fp32,
(B, cdiv(L, STATE_EVERY), N, D)) for the backward, which recomputes the chunks from it. Time
segments: see step_fwd_launch and _step_fwd_summary_kernel.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mambalab.ops.triton.selective_scan_fwd import delta_of, sigmoid


@triton.jit
def _valid(t, seqlen, EVEN: tl.constexpr):
    """t < seqlen as an int1 tile (1, 1, 1); constant true (folded away) when L divides evenly."""
    if EVEN:
        return tl.full((1, 1, 1), True, tl.int1)
    else:
        return (tl.zeros((1, 1, 1), dtype=tl.int32) + t) < seqlen


@triton.jit
def _step_fwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr, doc_ptr,
    y_ptr, states_ptr, last_ptr, segP_ptr, segE_ptr,
    dim, seqlen, dstate, n_chunks, seg_chunks, n_segs,
    su_b, su_d, su_l, sdt_b, sdt_d, sdt_l, sz_b, sz_d, sz_l,
    sB_b, sB_n, sB_l, sC_b, sC_n, sC_l, sdoc_b, sdoc_l, sy_b, sy_d, sy_l,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr, HAS_DOCS: tl.constexpr, SAVE_STATES: tl.constexpr,
    STORE_LAST: tl.constexpr,
    BLOCK_D: tl.constexpr, N_IN: tl.constexpr, N_OUT: tl.constexpr, BLOCK_T: tl.constexpr,
    STATE_EVERY: tl.constexpr, EVEN: tl.constexpr,
):
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    pid_s = tl.program_id(2)  # time segment: chunks [pid_s * seg_chunks, (pid_s + 1) * seg_chunks)
    d3 = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)[None, :, None]  # (1, BD, 1)
    n3 = (tl.arange(0, N_IN)[:, None, None] * N_OUT
          + tl.arange(0, N_OUT)[None, None, :])  # (NI, 1, NO)
    if EVEN:  # no partial tiles: constant masks, which the compiler folds away
        mask_d = tl.full((1, BLOCK_D, 1), True, tl.int1)
        mask_n = tl.full((N_IN, 1, N_OUT), True, tl.int1)
    else:
        mask_d = d3 < dim
        mask_n = n3 < dstate
    mask_dn = mask_d & mask_n  # (NI, BD, NO)
    # Every (d, n) tensor the kernels touch (A^T, h0, the saved states, the last state, the
    # segment summaries) is laid out (N, D), channels contiguous: Triton's coalescing puts the
    # lanes on a tensor's contiguous axis, and that layout spreads to the state tile. With (D, N)
    # tensors (n contiguous) it put 16 lanes on the states of each channel: a shuffle butterfly
    # for every sum over states and layout conversions every step (Triton 3.6's SASS).
    dn_off = n3 * dim + d3
    seg_off = b * n_segs * dim * dstate + dn_off  # (B, S, N, D) segment summaries

    # Per-channel vectors are read through pointers broadcast over the N_OUT lanes, (1, BD, NO):
    # every lane that holds a state of a channel reads its value (one transaction), so the
    # values already have the state tile's layout (a (1, BD, 1) tile would take another layout
    # and a shared-memory round trip per step).
    lane_n = tl.zeros((1, 1, N_OUT), dtype=tl.int64)
    dl3 = d3 + lane_n  # (1, BD, NO)
    # log2(e) folded into A: the decay is one exp2 per element.
    A2 = tl.load(A_ptr + dn_off, mask=mask_dn, other=0.0) * 1.4426950408889634
    if HAS_D:
        Dv = tl.load(D_ptr + dl3, mask=mask_d, other=0.0)  # (1, BD, NO)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + dl3, mask=mask_d, other=0.0)
    else:
        bias = 0.0
    if HAS_H0:
        h = tl.load(h0_ptr + b * dim * dstate + dn_off, mask=mask_dn, other=0.0)
    else:
        h = tl.zeros((N_IN, BLOCK_D, N_OUT), dtype=tl.float32)
    if pid_s > 0:
        # The state entering this segment, from the summaries of the segments before it
        # (_step_fwd_summary_kernel): E_s is segment s's end state when it starts from 0 (from h0
        # for s = 0), P_s its total decay, so h_in(s + 1) = P_s * h_in(s) + E_s.
        h = tl.load(segE_ptr + seg_off, mask=mask_dn, other=0.0)
        for s in range(1, pid_s):
            sp = seg_off + s * dim * dstate
            h = (tl.load(segP_ptr + sp, mask=mask_dn, other=0.0) * h
                 + tl.load(segE_ptr + sp, mask=mask_dn, other=0.0))

    u_ptrs = u_ptr + b * su_b + dl3 * su_d  # (1, BD, NO), advanced one step at a time
    dt_ptrs = dt_ptr + b * sdt_b + dl3 * sdt_d
    z_ptrs = z_ptr + b * sz_b + dl3 * sz_d
    y_ptrs = y_ptr + b * sy_b + dl3 * sy_d
    # B and C as (NI, 1, NO) tiles, broadcast in the arithmetic. (Pointers broadcast over the
    # channel lanes made Triton's coalescing put the lanes on the states axis instead.)
    B_ptrs = B_ptr + b * sB_b + n3 * sB_n
    C_ptrs = C_ptr + b * sC_b + n3 * sC_n
    doc_ptrs = doc_ptr + b * sdoc_b + tl.zeros((1, 1, 1), dtype=tl.int64)
    st_ptrs = states_ptr + b * tl.cdiv(n_chunks, STATE_EVERY // BLOCK_T) * dim * dstate + dn_off

    K: tl.constexpr = STATE_EVERY // BLOCK_T  # chunks per saved state
    for c in range(pid_s * seg_chunks, tl.minimum((pid_s + 1) * seg_chunks, n_chunks)):
        # All of the chunk's loads first: a load after a store to y could alias it, so the
        # compiler would not move it up, and every step would wait for memory on its own.
        us = ()
        dts = ()
        zs = ()
        Bs = ()
        Cs = ()
        docs = ()
        for j in tl.static_range(BLOCK_T):
            t = c * BLOCK_T + j
            valid = _valid(t, seqlen, EVEN)
            m = mask_d & valid
            us = us + (tl.load(u_ptrs + t * su_l, mask=m, other=0.0),)
            dts = dts + (tl.load(dt_ptrs + t * sdt_l, mask=m, other=0.0),)
            if HAS_Z:
                zs = zs + (tl.load(z_ptrs + t * sz_l, mask=m, other=0.0),)
            Bs = Bs + (tl.load(B_ptrs + t * sB_l, mask=mask_n & valid, other=0.0),)
            Cs = Cs + (tl.load(C_ptrs + t * sC_l, mask=mask_n & valid, other=0.0),)
            if HAS_DOCS:
                docs = docs + (tl.load(doc_ptrs + t * sdoc_l, mask=valid, other=0),)
        if SAVE_STATES:
            tl.store(st_ptrs + (c // K) * dim * dstate, h, mask=mask_dn & (c % K == 0))
        for j in tl.static_range(BLOCK_T):
            t = c * BLOCK_T + j
            valid = _valid(t, seqlen, EVEN)
            m = mask_d & valid
            u = us[j].to(tl.float32)  # (1, BD, NO)
            dt, _ = delta_of(dts[j].to(tl.float32), bias, HAS_BIAS, SOFTPLUS)
            a = tl.exp2(dt * A2)  # (NI, BD, NO)
            if HAS_DOCS:
                a = tl.where(docs[j] != 0, 0.0, a)  # a document starts here: forget the state
            # past the end (last partial chunk) the step is the identity, so h is the final state
            a = tl.where(valid, a, 1.0)
            h = a * h + (dt * u) * Bs[j].to(tl.float32)
            y = tl.sum(tl.sum(h * Cs[j].to(tl.float32), axis=0, keep_dims=True), axis=2,
                       keep_dims=True)  # (1, BD, 1)
            if HAS_D:
                y += Dv * u
            if HAS_Z:
                z = zs[j].to(tl.float32)
                y = y * z * sigmoid(z)
            tl.store(y_ptrs + t * sy_l, y.to(y_ptr.dtype.element_ty), mask=m)

    if STORE_LAST:
        tl.store(last_ptr + b * dim * dstate + dn_off, h, mask=mask_dn & ((tl.zeros((1, 1, 1), dtype=tl.int32) + pid_s) == n_segs - 1))


@triton.jit
def _step_fwd_summary_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, bias_ptr, h0_ptr, doc_ptr, segP_ptr, segE_ptr,
    dim, seqlen, dstate, n_chunks, seg_chunks, n_segs,
    su_b, su_d, su_l, sdt_b, sdt_d, sdt_l, sB_b, sB_n, sB_l, sdoc_b, sdoc_l,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_H0: tl.constexpr,
    HAS_DOCS: tl.constexpr,
    BLOCK_D: tl.constexpr, N_IN: tl.constexpr, N_OUT: tl.constexpr, BLOCK_T: tl.constexpr,
    EVEN: tl.constexpr,
):
    """Segment s (every one but the last): its end state E_s when it starts from 0 (from h0 for
    s = 0) and its total decay P_s = prod_t a_t = exp(A * sum_t dt_t), 0 when a document starts
    in it. Only the recurrence: no C, z or y. Same tiles as _step_fwd_kernel."""
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    pid_s = tl.program_id(2)
    d3 = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)[None, :, None]
    n3 = (tl.arange(0, N_IN)[:, None, None] * N_OUT + tl.arange(0, N_OUT)[None, None, :])
    if EVEN:
        mask_d = tl.full((1, BLOCK_D, 1), True, tl.int1)
        mask_n = tl.full((N_IN, 1, N_OUT), True, tl.int1)
    else:
        mask_d = d3 < dim
        mask_n = n3 < dstate
    mask_dn = mask_d & mask_n
    dn_off = n3 * dim + d3  # (N, D) tensors, as in _step_fwd_kernel
    lane_n = tl.zeros((1, 1, N_OUT), dtype=tl.int64)
    dl3 = d3 + lane_n
    A2 = tl.load(A_ptr + dn_off, mask=mask_dn, other=0.0) * 1.4426950408889634
    if HAS_BIAS:
        bias = tl.load(bias_ptr + dl3, mask=mask_d, other=0.0)
    else:
        bias = 0.0
    if HAS_H0:
        h = tl.load(h0_ptr + b * dim * dstate + dn_off, mask=mask_dn & ((tl.zeros((1, 1, 1), dtype=tl.int32) + pid_s) == 0),
                    other=0.0)
    else:
        h = tl.zeros((N_IN, BLOCK_D, N_OUT), dtype=tl.float32)
    dt_sum = tl.zeros((1, BLOCK_D, N_OUT), dtype=tl.float32)  # per channel: P_s = exp(A * sum dt)
    alive = tl.full((1, 1, 1), 1.0, tl.float32)  # 0 once a document starts in the segment
    u_ptrs = u_ptr + b * su_b + dl3 * su_d
    dt_ptrs = dt_ptr + b * sdt_b + dl3 * sdt_d
    B_ptrs = B_ptr + b * sB_b + n3 * sB_n
    doc_ptrs = doc_ptr + b * sdoc_b + tl.zeros((1, 1, 1), dtype=tl.int64)
    for c in range(pid_s * seg_chunks, tl.minimum((pid_s + 1) * seg_chunks, n_chunks)):
        us = ()
        dts = ()
        Bs = ()
        docs = ()
        for j in tl.static_range(BLOCK_T):
            t = c * BLOCK_T + j
            valid = _valid(t, seqlen, EVEN)
            m = mask_d & valid
            us = us + (tl.load(u_ptrs + t * su_l, mask=m, other=0.0),)
            dts = dts + (tl.load(dt_ptrs + t * sdt_l, mask=m, other=0.0),)
            Bs = Bs + (tl.load(B_ptrs + t * sB_l, mask=mask_n & valid, other=0.0),)
            if HAS_DOCS:
                docs = docs + (tl.load(doc_ptrs + t * sdoc_l, mask=valid, other=0),)
        for j in tl.static_range(BLOCK_T):
            t = c * BLOCK_T + j
            valid = _valid(t, seqlen, EVEN)
            dt, _ = delta_of(dts[j].to(tl.float32), bias, HAS_BIAS, SOFTPLUS)
            dt = tl.where(valid, dt, 0.0)  # identity past the end
            a = tl.exp2(dt * A2)
            if HAS_DOCS:
                a = tl.where(docs[j] != 0, 0.0, a)
                alive = tl.where(docs[j] != 0, 0.0, alive)
            dt_sum += dt
            h = a * h + (dt * us[j].to(tl.float32)) * Bs[j].to(tl.float32)
    seg_off = (b * n_segs + pid_s) * dim * dstate + dn_off
    tl.store(segE_ptr + seg_off, h, mask=mask_dn)
    tl.store(segP_ptr + seg_off, tl.exp2(dt_sum * A2) * alive, mask=mask_dn)


def out_like(u: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A (B, D, L) output in u's memory order: channel-last when u is (a transposed view of a
    (B, L, D) tensor, stride 1 along D), so the mixer reads it as rows without a copy."""
    batch, dim, seqlen = u.shape
    dtype = dtype or u.dtype
    if u.stride(1) == 1 and seqlen > 1:
        return torch.empty(batch, seqlen, dim, device=u.device, dtype=dtype).transpose(1, 2)
    return torch.empty(batch, dim, seqlen, device=u.device, dtype=dtype)


def step_fwd_launch(
    *, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None, z: torch.Tensor | None, delta_bias: torch.Tensor | None,
    delta_softplus: bool, initial_state: torch.Tensor | None, doc_starts: torch.Tensor | None,
    save_states: bool, return_last_state: bool, state_every: int, block_d: int, block_t: int,
    n_in: int, num_warps: int, y_out: torch.Tensor | None = None, seg_len: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Launch the forward. Returns (y (B, D, L) in u's dtype and memory order, last_state
    (B, D, N) fp32 or None, states (B, cdiv(L, state_every), N, D) fp32 or None: h before
    every state_every-th step, a multiple of block_t, channels contiguous); inputs already
    validated.
    ``seg_len``: time steps per segment (a multiple of state_every), scanned in parallel after a
    summary pass over all segments but the last (None: one segment, no summary pass)."""
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
    y = out_like(u) if y_out is None else y_out  # any (B, D, L) strides
    # (d, n) tensors go in and come out as (N, D), channels contiguous (see _step_fwd_kernel)
    A = A.t().contiguous()
    if initial_state is not None:
        initial_state = initial_state.transpose(1, 2).contiguous()
    states = (torch.empty((batch, triton.cdiv(seqlen, state_every), dstate, dim), device=u.device,
                          dtype=torch.float32)
              if save_states else None)
    last = (torch.empty((batch, dstate, dim), device=u.device, dtype=torch.float32)
            if return_last_state else None)
    zz = z if z is not None else u  # a valid pointer when the flag is off; never read
    docs = doc_starts if doc_starts is not None else u
    sdoc = (docs.stride(0), docs.stride(1)) if doc_starts is not None else (0, 0)
    bn = triton.next_power_of_2(dstate)
    n_in = min(n_in, bn)
    even = seqlen % block_t == 0 and dim % block_d == 0 and dstate == bn
    segP = segE = A  # valid pointers, never read with one segment
    if n_segs > 1:
        segP = torch.empty((batch, n_segs, dstate, dim), device=u.device, dtype=torch.float32)
        segE = torch.empty_like(segP)
        _step_fwd_summary_kernel[(triton.cdiv(dim, block_d), batch, n_segs - 1)](
            u, delta, A, B, delta_bias if delta_bias is not None else A,
            initial_state if initial_state is not None else A, docs, segP, segE,
            dim, seqlen, dstate, n_chunks, seg_chunks, n_segs,
            *u.stride(), *delta.stride(), *B.stride(), *sdoc,
            HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
            HAS_H0=initial_state is not None, HAS_DOCS=doc_starts is not None,
            BLOCK_D=block_d, N_IN=n_in, N_OUT=bn // n_in, BLOCK_T=block_t, EVEN=even,
            num_warps=num_warps,
        )
    grid = (triton.cdiv(dim, block_d), batch, n_segs)
    _step_fwd_kernel[grid](
        u, delta, A, B, C, D if D is not None else A, zz,
        delta_bias if delta_bias is not None else A,
        initial_state if initial_state is not None else A, docs,
        y, states if states is not None else A, last if last is not None else A, segP, segE,
        dim, seqlen, dstate, n_chunks, seg_chunks, n_segs,
        *u.stride(), *delta.stride(), *zz.stride(), *B.stride(), *C.stride(), *sdoc, *y.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=delta_softplus, HAS_H0=initial_state is not None,
        HAS_DOCS=doc_starts is not None, SAVE_STATES=save_states, STORE_LAST=return_last_state,
        BLOCK_D=block_d, N_IN=n_in, N_OUT=bn // n_in, BLOCK_T=block_t, STATE_EVERY=state_every,
        EVEN=even, num_warps=num_warps,
    )
    return y, (last.transpose(1, 2).contiguous() if last is not None else None), states
