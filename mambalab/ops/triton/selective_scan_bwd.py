"""Backward kernel of the Triton selective scan (Mamba-1): one program per (channel block, batch).

The program walks its chunks from last to first. In each it recomputes h_t from the state saved at
the chunk start (a forward scan), then runs the reverse scan for g_t = dL/dh_t:
    g_t = C_t * dout_t + a_{t+1} * g_{t+1},   a_t = exp(dt_t * A)  (0 where a document starts)
with the pairs (a_{t+1}, C_t dout_t) (a_{t+1} comes from dt loaded one step later), and carries g
at the chunk start into the previous chunk. a_t h_{t-1} is h_t - dt_t B_t u_t, so no h_{t-1} (and
no division) is needed. dB and dC are summed over the program's channels first and added once per
tile (BLOCK_D channels share one atomic add, not one per channel); dA, dD and the dt bias gradient
are kept in registers over the whole sequence and written once per (batch, channel) as partials.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mambalab.ops.triton.selective_scan_fwd import linear_combine, softplus


@triton.jit
def _scan_bwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, doc_ptr, states_ptr,
    dy_ptr, dlast_ptr,
    du_ptr, ddt_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr, dh0_ptr,
    dim, seqlen, dstate, n_chunks,
    su_b, su_d, su_l, sdt_b, sdt_d, sdt_l, sz_b, sz_d, sz_l,
    sB_b, sB_n, sB_l, sC_b, sC_n, sC_l, sdoc_b, sdoc_l, sdy_b, sdy_d, sdy_l,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_DOCS: tl.constexpr, HAS_DLAST: tl.constexpr,
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
    dn_off = offs_d[:, None] * dstate + offs_n[None, :]  # (BD, BN)

    A = tl.load(A_ptr + dn_off, mask=mask_dn, other=0.0).to(tl.float32)  # (BD, BN)
    A2 = A * 1.4426950408889634
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)

    u_base = u_ptr + b * su_b + offs_d[:, None] * su_d
    dt_base = dt_ptr + b * sdt_b + offs_d[:, None] * sdt_d
    z_base = z_ptr + b * sz_b + offs_d[:, None] * sz_d
    dy_base = dy_ptr + b * sdy_b + offs_d[:, None] * sdy_d
    out_base = b * dim * seqlen + offs_d[:, None] * seqlen  # du, ddt, dz: contiguous (B, D, L)
    B_base = B_ptr + b * sB_b + offs_n[:, None] * sB_n
    C_base = C_ptr + b * sC_b + offs_n[:, None] * sC_n
    dBC_base = b * dstate * seqlen + offs_n[:, None] * seqlen  # dB, dC: fp32 (B, N, L)
    is_first_col = (offs_t0 == 0)[None, None, :]  # (1, 1, BT)

    g_carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # g at the next chunk's start
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if HAS_DLAST:
        dlast = tl.load(dlast_ptr + b * dim * dstate + dn_off, mask=mask_dn, other=0.0)

    for i in range(n_chunks):
        c = n_chunks - 1 - i
        offs_t = c * BLOCK_T + offs_t0
        mask_t = offs_t < seqlen
        mask_dt = mask_d[:, None] & mask_t[None, :]  # (BD, BT)
        mask_nt = mask_n[:, None] & mask_t[None, :]  # (BN, BT)
        u = tl.load(u_base + offs_t[None, :] * su_l, mask=mask_dt, other=0.0).to(tl.float32)
        dt_pre = tl.load(dt_base + offs_t[None, :] * sdt_l, mask=mask_dt, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt_pre = dt_pre + bias[:, None]
        if SOFTPLUS:
            dt = softplus(dt_pre)
        else:
            dt = dt_pre
        Bt = tl.load(B_base + offs_t[None, :] * sB_l, mask=mask_nt, other=0.0).to(tl.float32)
        Ct = tl.load(C_base + offs_t[None, :] * sC_l, mask=mask_nt, other=0.0).to(tl.float32)

        # Recompute h_t in this chunk from the state saved at its start.
        dA = tl.exp2(dt[:, None, :] * A2[:, :, None])  # (BD, BN, BT)
        if HAS_DOCS:
            doc = tl.load(doc_ptr + b * sdoc_b + offs_t * sdoc_l, mask=mask_t, other=0)
            dA = tl.where((doc != 0)[None, None, :], 0.0, dA)
        dA = tl.where(mask_t[None, None, :], dA, 1.0)
        dtu = dt * u  # (BD, BT)
        dBu = dtu[:, None, :] * Bt[None, :, :]  # (BD, BN, BT)
        h_start = tl.load(states_ptr + (b * n_chunks + c) * dim * dstate + dn_off,
                          mask=mask_dn, other=0.0)
        acum, hloc = tl.associative_scan((dA, dBu), axis=2, combine_fn=linear_combine)
        hs = hloc + acum * h_start[:, :, None]  # (BD, BN, BT): h_t

        dy = tl.load(dy_base + offs_t[None, :] * sdy_l, mask=mask_dt, other=0.0).to(tl.float32)
        if HAS_Z:
            z = tl.load(z_base + offs_t[None, :] * sz_l, mask=mask_dt, other=0.0).to(tl.float32)
            sig = tl.sigmoid(z)
            y_pre = tl.sum(hs * Ct[None, :, :], axis=1)  # (BD, BT)
            if HAS_D:
                y_pre += Dv[:, None] * u
            dz = dy * y_pre * sig * (1.0 + z * (1.0 - sig))
            tl.store(dz_ptr + out_base + offs_t[None, :], dz.to(dz_ptr.dtype.element_ty),
                     mask=mask_dt)
            dout = dy * z * sig
        else:
            dout = dy  # (BD, BT)

        # Decay one step later, a_{t+1}: it links g_t to g_{t+1} (0 past the end).
        offs_t1 = offs_t + 1
        mask_t1 = offs_t1 < seqlen
        mask_dt1 = mask_d[:, None] & mask_t1[None, :]
        dt1 = tl.load(dt_base + offs_t1[None, :] * sdt_l, mask=mask_dt1, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt1 = dt1 + bias[:, None]
        if SOFTPLUS:
            dt1 = softplus(dt1)
        dA1 = tl.exp2(dt1[:, None, :] * A2[:, :, None])  # (BD, BN, BT)
        if HAS_DOCS:
            doc1 = tl.load(doc_ptr + b * sdoc_b + offs_t1 * sdoc_l, mask=mask_t1, other=0)
            dA1 = tl.where((doc1 != 0)[None, None, :], 0.0, dA1)
        dA1 = tl.where(mask_t1[None, None, :], dA1, 0.0)

        x = Ct[None, :, :] * dout[:, None, :]  # (BD, BN, BT): dL/dh_t through y_t
        if HAS_DLAST:
            x += tl.where((offs_t == seqlen - 1)[None, None, :], dlast[:, :, None], 0.0)
        # Reverse scan: the pairs combine from the end, g_t = x_t + a_{t+1} g_{t+1}.
        prod, gloc = tl.associative_scan((dA1, x), axis=2, combine_fn=linear_combine,
                                         reverse=True)
        g = gloc + prod * g_carry[:, :, None]  # (BD, BN, BT)
        g_carry = tl.sum(tl.where(is_first_col, g, 0.0), axis=2)

        # dB, dC: summed over this program's channels, one atomic add per (n, t) per tile.
        dC = tl.sum(hs * dout[:, None, :], axis=0)  # (BN, BT)
        dB = tl.sum(g * dtu[:, None, :], axis=0)  # (BN, BT)
        tl.atomic_add(dC_ptr + dBC_base + offs_t[None, :], dC, mask=mask_nt, sem="relaxed")
        tl.atomic_add(dB_ptr + dBC_base + offs_t[None, :], dB, mask=mask_nt, sem="relaxed")

        gB = tl.sum(g * Bt[None, :, :], axis=1)  # (BD, BT)
        ga = g * (hs - dBu)  # (BD, BN, BT): g_t * a_t * h_{t-1}
        dA_acc += tl.sum(ga * dt[:, None, :], axis=2)
        ddt = u * gB + tl.sum(ga * A[:, :, None], axis=1)  # (BD, BT)
        du = dt * gB
        if HAS_D:
            du += Dv[:, None] * dout
            dD_acc += tl.sum(dout * u, axis=1)
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(dt_pre)
        ddt = tl.where(mask_dt, ddt, 0.0)
        dbias_acc += tl.sum(ddt, axis=1)
        tl.store(du_ptr + out_base + offs_t[None, :], du.to(du_ptr.dtype.element_ty), mask=mask_dt)
        tl.store(ddt_ptr + out_base + offs_t[None, :], ddt.to(ddt_ptr.dtype.element_ty),
                 mask=mask_dt)

    # Gradient of the initial state: through a_0 (0 when a document starts at t = 0).
    dt0 = tl.load(dt_base, mask=mask_d[:, None], other=0.0).to(tl.float32)  # (BD, 1)
    if HAS_BIAS:
        dt0 = dt0 + bias[:, None]
    if SOFTPLUS:
        dt0 = softplus(dt0)
    a0 = tl.exp2(dt0 * A2)  # (BD, BN)
    if HAS_DOCS:
        doc0 = tl.load(doc_ptr + b * sdoc_b)
        a0 = tl.where(doc0 != 0, 0.0, a0)
    part = b * dim * dstate + dn_off
    tl.store(dh0_ptr + part, a0 * g_carry, mask=mask_dn)
    tl.store(dA_ptr + part, dA_acc, mask=mask_dn)
    tl.store(dD_ptr + b * dim + offs_d, dD_acc, mask=mask_d)
    tl.store(dbias_ptr + b * dim + offs_d, dbias_acc, mask=mask_d)


def scan_bwd_launch(
    *, dy: torch.Tensor, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
    C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
    delta_bias: torch.Tensor | None, delta_softplus: bool, doc_starts: torch.Tensor | None,
    states: torch.Tensor, dlast_state: torch.Tensor | None, block_d: int, block_t: int,
    num_warps: int,
) -> dict[str, torch.Tensor]:
    """Launch the backward; returns the gradients by name, partial sums already reduced."""
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    n_chunks = triton.cdiv(seqlen, block_t)
    assert states.shape == (batch, n_chunks, dim, dstate), "states saved with another block_t"
    dev, f32 = u.device, torch.float32
    du = torch.empty((batch, dim, seqlen), device=dev, dtype=u.dtype)
    ddt = torch.empty((batch, dim, seqlen), device=dev, dtype=delta.dtype)
    dz = torch.empty((batch, dim, seqlen), device=dev, dtype=z.dtype) if z is not None else du
    dB = torch.zeros((batch, dstate, seqlen), device=dev, dtype=f32)  # atomics add into these
    dC = torch.zeros((batch, dstate, seqlen), device=dev, dtype=f32)
    dA = torch.empty((batch, dim, dstate), device=dev, dtype=f32)  # per-batch partials
    dh0 = torch.empty((batch, dim, dstate), device=dev, dtype=f32)
    dD = torch.empty((batch, dim), device=dev, dtype=f32)
    dbias = torch.empty((batch, dim), device=dev, dtype=f32)
    zz = z if z is not None else u
    docs = doc_starts if doc_starts is not None else u
    sdoc = (docs.stride(0), docs.stride(1)) if doc_starts is not None else (0, 0)
    grid = (triton.cdiv(dim, block_d), batch)
    _scan_bwd_kernel[grid](
        u, delta, A, B, C, D if D is not None else A, zz,
        delta_bias if delta_bias is not None else A, docs, states,
        dy, dlast_state if dlast_state is not None else A,
        du, ddt, dz, dB, dC, dA, dD, dbias, dh0,
        dim, seqlen, dstate, n_chunks,
        *u.stride(), *delta.stride(), *zz.stride(), *B.stride(), *C.stride(), *sdoc, *dy.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=delta_softplus, HAS_DOCS=doc_starts is not None,
        HAS_DLAST=dlast_state is not None,
        BLOCK_D=block_d, BLOCK_N=triton.next_power_of_2(dstate), BLOCK_T=block_t,
        num_warps=num_warps,
    )
    return {
        "du": du, "ddelta": ddt, "dz": dz if z is not None else None,
        "dA": dA.sum(0), "dB": dB, "dC": dC, "dD": dD.sum(0) if D is not None else None,
        "ddelta_bias": dbias.sum(0) if delta_bias is not None else None,
        "dinitial_state": dh0,
    }
