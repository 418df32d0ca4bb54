"""Forward kernel of the Triton selective scan (Mamba-1): one program per (channel block, batch).

A program holds a tile of BLOCK_D channels x N states x BLOCK_T time steps, scans the tile
along time with ``tl.associative_scan`` on the pairs (decay, input), folds in the state carried from
the previous chunk, reduces over the states against C for y, and carries the last column on. The
state at the start of every chunk is written to ``states`` (fp32, (B, n_chunks, D, N)) so that the
backward can recompute h inside each chunk instead of storing all of it.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634
# The interpreter (CPU tests) cannot run inline PTX; compiled kernels use the fast lg2 unit.
FAST_LOG2: tl.constexpr = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") != "1")


@triton.jit
def log2_fast(x):
    if FAST_LOG2:
        # tl.log2 lowers to a precise polynomial (~15 FMAs); lg2.approx is one MUFU op (2^-22).
        return tl.inline_asm_elementwise("lg2.approx.f32 $0, $1;", "=r,r", [x],
                                         dtype=tl.float32, is_pure=True, pack=1)
    else:
        return tl.log2(x)


@triton.jit
def softplus(x):
    # log(1 + e^x) through the fast base-2 units (tl.log lowers to a long precise sequence);
    # above 20 it is the identity in fp32, as in torch.nn.functional.softplus.
    e = tl.exp2(tl.minimum(x, 20.0) * 1.4426950408889634)
    return tl.where(x > 20.0, x, log2_fast(1.0 + e) * 0.6931471805599453)


@triton.jit
def sigmoid(x):
    # 1 / (1 + e^-x) with the fast division (tl.sigmoid uses the IEEE one).
    return tl.fdiv(1.0, 1.0 + tl.exp2(-x * 1.4426950408889634), ieee_rounding=False)


@triton.jit
def delta_of(dt_raw, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """The step size from the dt projection: (dt + bias, bias added or not) through softplus or
    not; returns (delta, the pre-softplus value the backward's sigmoid needs)."""
    if HAS_BIAS:
        dt_raw += bias
    if SOFTPLUS:
        return softplus(dt_raw), dt_raw
    return dt_raw, dt_raw


@triton.jit
def linear_combine(a_l, b_l, a_r, b_r):
    # (a_l, b_l) first, then (a_r, b_r): h -> a_r * (a_l * h + b_l) + b_r.
    return a_l * a_r, b_l * a_r + b_r


@triton.jit
def _scan_fwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr, doc_ptr,
    y_ptr, states_ptr, last_ptr,
    dim, seqlen, dstate, n_chunks,
    su_b, su_d, su_l, sdt_b, sdt_d, sdt_l, sz_b, sz_d, sz_l,
    sB_b, sB_n, sB_l, sC_b, sC_n, sC_l, sdoc_b, sdoc_l, sy_b, sy_d,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr, HAS_DOCS: tl.constexpr, SAVE_STATES: tl.constexpr,
    STORE_LAST: tl.constexpr,
    BLOCK_D: tl.constexpr, N_IN: tl.constexpr, N_OUT: tl.constexpr, BLOCK_T: tl.constexpr,
):
    # Tiles are 4-D (N_IN, BLOCK_T, BLOCK_D, N_OUT), state n = i * N_OUT + o. Triton's default
    # layout spreads the lanes over the last two axes and keeps the first two in each thread, so
    # the time scan and part of the sum over n run in registers without shuffles.
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    t0 = tl.arange(0, BLOCK_T)  # (T,)
    d1 = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)  # (BD,)
    n3 = (tl.arange(0, N_IN)[:, None, None] * N_OUT
          + tl.arange(0, N_OUT)[None, None, :])  # (NI, 1, NO)
    d3 = d1[None, :, None]  # (1, BD, 1)
    mask_d = d1 < dim
    mask_n3 = n3 < dstate
    mask_dn = (d3 < dim) & mask_n3  # (NI, BD, NO)
    dn_off = d3 * dstate + n3  # (NI, BD, NO) offsets in a (D, N) slab

    # log2(e) folded into A, so the decay is one exp2 per (d, n, t).
    A2 = tl.load(A_ptr + dn_off, mask=mask_dn, other=0.0).to(tl.float32) * 1.4426950408889634
    A2 = A2[:, None, :, :]  # (NI, 1, BD, NO)
    if HAS_D:
        Dv = tl.load(D_ptr + d1, mask=mask_d, other=0.0).to(tl.float32)[None, :]  # (1, BD)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d1, mask=mask_d, other=0.0).to(tl.float32)[None, :]
    if HAS_H0:
        h = tl.load(h0_ptr + b * dim * dstate + dn_off, mask=mask_dn, other=0.0).to(tl.float32)
    else:
        h = tl.zeros((N_IN, BLOCK_D, N_OUT), dtype=tl.float32)

    u_base = u_ptr + b * su_b + d1[None, :] * su_d  # (1, BD)
    dt_base = dt_ptr + b * sdt_b + d1[None, :] * sdt_d
    z_base = z_ptr + b * sz_b + d1[None, :] * sz_d
    y_base = y_ptr + b * sy_b + d1[None, :] * sy_d  # unit stride along time
    B_base = B_ptr + b * sB_b + n3 * sB_n  # (NI, 1, NO)
    C_base = C_ptr + b * sC_b + n3 * sC_n
    is_first_col = (t0 == 0)[None, :, None, None]  # (1, T, 1, 1)
    is_last_col = (t0 == BLOCK_T - 1)[None, :, None, None]

    for c in range(n_chunks):
        t1 = c * BLOCK_T + t0  # (T,)
        mask_t = t1 < seqlen
        tc = t1[:, None]  # (T, 1)
        mask_td = mask_t[:, None] & mask_d[None, :]  # (T, BD)
        t3 = t1[None, :, None]  # (1, T, 1)
        mask_nt = mask_n3 & (t3 < seqlen)  # (NI, T, NO)
        u = tl.load(u_base + tc * su_l, mask=mask_td, other=0.0).to(tl.float32)  # (T, BD)
        dt = tl.load(dt_base + tc * sdt_l, mask=mask_td, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt = dt + bias
        if SOFTPLUS:
            dt = softplus(dt)
        Bt = tl.load(B_base + t3 * sB_l, mask=mask_nt, other=0.0).to(tl.float32)  # (NI, T, NO)
        Ct = tl.load(C_base + t3 * sC_l, mask=mask_nt, other=0.0).to(tl.float32)

        dA = tl.exp2(dt[None, :, :, None] * A2)  # (NI, T, BD, NO)
        if HAS_DOCS:
            doc = tl.load(doc_ptr + b * sdoc_b + t1 * sdoc_l, mask=mask_t, other=0)
            dA = tl.where((doc != 0)[None, :, None, None], 0.0, dA)  # a document starts: forget h
        # Past the end the pair is the identity (1, 0), so the last column holds the final state.
        dA = tl.where(mask_t[None, :, None, None], dA, 1.0)
        dBu = (dt * u)[None, :, :, None] * Bt[:, :, None, :]  # 0 past the end (u = 0)

        if SAVE_STATES:
            tl.store(states_ptr + (b * n_chunks + c) * dim * dstate + dn_off, h, mask=mask_dn)
        # The carried state enters through the first step, so the scan's b output is h_t itself
        # (and its a output dies at once: fewer live registers than folding it in afterwards).
        dBu += tl.where(is_first_col, dA * h[:, None, :, :], 0.0)
        _, hs = tl.associative_scan((dA, dBu), axis=1, combine_fn=linear_combine)
        y = tl.sum(tl.sum(hs * Ct[:, :, None, :], axis=0), axis=2)  # (T, BD)
        if HAS_D:
            y += Dv * u
        if HAS_Z:
            z = tl.load(z_base + tc * sz_l, mask=mask_td, other=0.0).to(tl.float32)
            y = y * z * sigmoid(z)
        tl.store(y_base + tc, y.to(y_ptr.dtype.element_ty), mask=mask_td)
        h = tl.sum(tl.where(is_last_col, hs, 0.0), axis=1)  # (NI, BD, NO)

    if STORE_LAST:
        tl.store(last_ptr + b * dim * dstate + dn_off, h, mask=mask_dn)


def scan_fwd_launch(
    *, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None, z: torch.Tensor | None, delta_bias: torch.Tensor | None,
    delta_softplus: bool, initial_state: torch.Tensor | None, doc_starts: torch.Tensor | None,
    save_states: bool, return_last_state: bool, block_d: int, block_t: int, n_in: int,
    num_warps: int, y_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Launch the forward. Returns (y (B, D, L) in u's dtype, last_state (B, D, N) fp32 or None,
    states (B, n_chunks, D, N) fp32 or None); inputs are already validated. ``y_out``: where to
    write y, any (B, D, L) buffer with unit stride along L (the fused mixer passes a view of a
    (D, B * L) matrix); default a new contiguous one."""
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    n_chunks = triton.cdiv(seqlen, block_t)
    y = torch.empty((batch, dim, seqlen), device=u.device, dtype=u.dtype) if y_out is None else y_out
    if y.shape != u.shape or (seqlen > 1 and y.stride(2) != 1):
        raise ValueError(f"y_out must be {tuple(u.shape)} with unit stride along L, "
                         f"got {tuple(y.shape)} strides {y.stride()}")
    states = (torch.empty((batch, n_chunks, dim, dstate), device=u.device, dtype=torch.float32)
              if save_states else None)
    last = (torch.empty((batch, dim, dstate), device=u.device, dtype=torch.float32)
            if return_last_state else None)
    zz = z if z is not None else u  # a valid pointer when the flag is off; never read
    docs = doc_starts if doc_starts is not None else u
    sdoc = (docs.stride(0), docs.stride(1)) if doc_starts is not None else (0, 0)
    bn = triton.next_power_of_2(dstate)
    n_in = min(n_in, bn)
    grid = (triton.cdiv(dim, block_d), batch)
    _scan_fwd_kernel[grid](
        u, delta, A, B, C, D if D is not None else A, zz,
        delta_bias if delta_bias is not None else A,
        initial_state if initial_state is not None else A, docs,
        y, states if states is not None else y, last if last is not None else y,
        dim, seqlen, dstate, n_chunks,
        *u.stride(), *delta.stride(), *zz.stride(), *B.stride(), *C.stride(), *sdoc,
        y.stride(0), y.stride(1),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=delta_softplus, HAS_H0=initial_state is not None,
        HAS_DOCS=doc_starts is not None, SAVE_STATES=save_states, STORE_LAST=return_last_state,
        BLOCK_D=block_d, N_IN=n_in, N_OUT=bn // n_in, BLOCK_T=block_t,
        num_warps=num_warps,
    )
    return y, last, states
