"""Forward kernel of the Triton selective scan (Mamba-1): one program per (channel block, batch).

A program holds a tile of BLOCK_D channels x BLOCK_N states x BLOCK_T time steps, scans the tile
along time with ``tl.associative_scan`` on the pairs (decay, input), folds in the state carried from
the previous chunk, reduces over the states against C for y, and carries the last column on. The
state at the start of every chunk is written to ``states`` (fp32, (B, n_chunks, D, N)) so that the
backward can recompute h inside each chunk instead of storing all of it.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def softplus(x):
    # Same threshold as torch.nn.functional.softplus: above 20 it is the identity in fp32.
    return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))


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
    sB_b, sB_n, sB_l, sC_b, sC_n, sC_l, sdoc_b, sdoc_l,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr, HAS_DOCS: tl.constexpr, SAVE_STATES: tl.constexpr,
    STORE_LAST: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
):
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)  # (BD,)
    offs_n = tl.arange(0, BLOCK_N)  # (BN,)
    offs_t0 = tl.arange(0, BLOCK_T)  # (BT,)
    mask_d = offs_d < dim
    mask_n = offs_n < dstate
    mask_dn = mask_d[:, None] & mask_n[None, :]  # (BD, BN)

    # log2(e) folded into A, so the decay is one exp2 per (d, n, t).
    A2 = tl.load(A_ptr + offs_d[:, None] * dstate + offs_n[None, :], mask=mask_dn, other=0.0)
    A2 = A2.to(tl.float32) * 1.4426950408889634  # (BD, BN)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    dn_off = offs_d[:, None] * dstate + offs_n[None, :]  # (BD, BN) offsets in a (D, N) slab
    if HAS_H0:
        h = tl.load(h0_ptr + b * dim * dstate + dn_off, mask=mask_dn, other=0.0).to(tl.float32)
    else:
        h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)

    u_base = u_ptr + b * su_b + offs_d[:, None] * su_d
    dt_base = dt_ptr + b * sdt_b + offs_d[:, None] * sdt_d
    z_base = z_ptr + b * sz_b + offs_d[:, None] * sz_d
    y_base = y_ptr + b * dim * seqlen + offs_d[:, None] * seqlen
    B_base = B_ptr + b * sB_b + offs_n[:, None] * sB_n
    C_base = C_ptr + b * sC_b + offs_n[:, None] * sC_n
    is_last_col = (offs_t0 == BLOCK_T - 1)[None, None, :]  # (1, 1, BT)

    for c in range(n_chunks):
        offs_t = c * BLOCK_T + offs_t0
        mask_t = offs_t < seqlen
        mask_dt = mask_d[:, None] & mask_t[None, :]  # (BD, BT)
        mask_nt = mask_n[:, None] & mask_t[None, :]  # (BN, BT)
        u = tl.load(u_base + offs_t[None, :] * su_l, mask=mask_dt, other=0.0).to(tl.float32)
        dt = tl.load(dt_base + offs_t[None, :] * sdt_l, mask=mask_dt, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt = dt + bias[:, None]
        if SOFTPLUS:
            dt = softplus(dt)
        Bt = tl.load(B_base + offs_t[None, :] * sB_l, mask=mask_nt, other=0.0).to(tl.float32)
        Ct = tl.load(C_base + offs_t[None, :] * sC_l, mask=mask_nt, other=0.0).to(tl.float32)

        dA = tl.exp2(dt[:, None, :] * A2[:, :, None])  # (BD, BN, BT)
        if HAS_DOCS:
            doc = tl.load(doc_ptr + b * sdoc_b + offs_t * sdoc_l, mask=mask_t, other=0)
            dA = tl.where((doc != 0)[None, None, :], 0.0, dA)  # a document starts: forget h
        # Past the end the pair is the identity (1, 0), so the last column holds the final state.
        dA = tl.where(mask_t[None, None, :], dA, 1.0)
        dBu = (dt * u)[:, None, :] * Bt[None, :, :]  # (BD, BN, BT); 0 past the end (u = 0)

        if SAVE_STATES:
            tl.store(states_ptr + (b * n_chunks + c) * dim * dstate + dn_off, h, mask=mask_dn)
        acum, hloc = tl.associative_scan((dA, dBu), axis=2, combine_fn=linear_combine)
        hs = hloc + acum * h[:, :, None]  # (BD, BN, BT): h_t
        y = tl.sum(hs * Ct[None, :, :], axis=1)  # (BD, BT)
        if HAS_D:
            y += Dv[:, None] * u
        if HAS_Z:
            z = tl.load(z_base + offs_t[None, :] * sz_l, mask=mask_dt, other=0.0).to(tl.float32)
            y = y * z * tl.sigmoid(z)
        tl.store(y_base + offs_t[None, :], y.to(y_ptr.dtype.element_ty), mask=mask_dt)
        h = tl.sum(tl.where(is_last_col, hs, 0.0), axis=2)  # (BD, BN)

    if STORE_LAST:
        tl.store(last_ptr + b * dim * dstate + dn_off, h, mask=mask_dn)


def scan_fwd_launch(
    *, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None, z: torch.Tensor | None, delta_bias: torch.Tensor | None,
    delta_softplus: bool, initial_state: torch.Tensor | None, doc_starts: torch.Tensor | None,
    save_states: bool, return_last_state: bool, block_d: int, block_t: int, num_warps: int,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Launch the forward. Returns (y (B, D, L) in u's dtype, last_state (B, D, N) fp32 or None,
    states (B, n_chunks, D, N) fp32 or None); inputs are already validated."""
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    n_chunks = triton.cdiv(seqlen, block_t)
    y = torch.empty((batch, dim, seqlen), device=u.device, dtype=u.dtype)
    states = (torch.empty((batch, n_chunks, dim, dstate), device=u.device, dtype=torch.float32)
              if save_states else None)
    last = (torch.empty((batch, dim, dstate), device=u.device, dtype=torch.float32)
            if return_last_state else None)
    zz = z if z is not None else u  # a valid pointer when the flag is off; never read
    docs = doc_starts if doc_starts is not None else u
    sdoc = (docs.stride(0), docs.stride(1)) if doc_starts is not None else (0, 0)
    grid = (triton.cdiv(dim, block_d), batch)
    _scan_fwd_kernel[grid](
        u, delta, A, B, C, D if D is not None else A, zz,
        delta_bias if delta_bias is not None else A,
        initial_state if initial_state is not None else A, docs,
        y, states if states is not None else y, last if last is not None else y,
        dim, seqlen, dstate, n_chunks,
        *u.stride(), *delta.stride(), *zz.stride(), *B.stride(), *C.stride(), *sdoc,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=delta_softplus, HAS_H0=initial_state is not None,
        HAS_DOCS=doc_starts is not None, SAVE_STATES=save_states, STORE_LAST=return_last_state,
        BLOCK_D=block_d, BLOCK_N=triton.next_power_of_2(dstate), BLOCK_T=block_t,
        num_warps=num_warps,
    )
    return y, last, states
