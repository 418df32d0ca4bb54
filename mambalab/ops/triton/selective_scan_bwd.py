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

from mambalab.ops.triton.selective_scan_fwd import linear_combine, sigmoid, softplus


@triton.jit
def _scan_bwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, doc_ptr, states_ptr,
    dy_ptr, dlast_ptr,
    du_ptr, ddt_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr, dh0_ptr,
    dim, seqlen, dstate, n_chunks,
    su_b, su_d, su_l, sdt_b, sdt_d, sdt_l, sz_b, sz_d, sz_l,
    sB_b, sB_n, sB_l, sC_b, sC_n, sC_l, sdoc_b, sdoc_l, sdy_b, sdy_d, sdy_l, so_b, so_d,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_DOCS: tl.constexpr, HAS_DLAST: tl.constexpr,
    BLOCK_D: tl.constexpr, N_IN: tl.constexpr, N_OUT: tl.constexpr, BLOCK_T: tl.constexpr,
):
    # Tiles are 4-D (N_IN, BLOCK_T, BLOCK_D, N_OUT), state n = i * N_OUT + o, as in the forward.
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
    dn_off = d3 * dstate + n3  # (NI, BD, NO)

    A = tl.load(A_ptr + dn_off, mask=mask_dn, other=0.0).to(tl.float32)[:, None, :, :]
    A2 = A * 1.4426950408889634  # (NI, 1, BD, NO)
    if HAS_D:
        Dv = tl.load(D_ptr + d1, mask=mask_d, other=0.0).to(tl.float32)[None, :]  # (1, BD)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d1, mask=mask_d, other=0.0).to(tl.float32)[None, :]

    u_base = u_ptr + b * su_b + d1[None, :] * su_d  # (1, BD)
    dt_base = dt_ptr + b * sdt_b + d1[None, :] * sdt_d
    z_base = z_ptr + b * sz_b + d1[None, :] * sz_d
    dy_base = dy_ptr + b * sdy_b + d1[None, :] * sdy_d
    out_base = b * so_b + d1[None, :] * so_d  # du, ddt, dz: one layout, unit stride along L
    B_base = B_ptr + b * sB_b + n3 * sB_n  # (NI, 1, NO)
    C_base = C_ptr + b * sC_b + n3 * sC_n
    dBC_base = b * dstate * seqlen + n3 * seqlen  # dB, dC: fp32 (B, N, L)
    is_first_col = (t0 == 0)[None, :, None, None]  # (1, T, 1, 1)
    is_last_col = (t0 == BLOCK_T - 1)[None, :, None, None]

    g_carry = tl.zeros((N_IN, BLOCK_D, N_OUT), dtype=tl.float32)  # g at the next chunk's start
    dA_acc = tl.zeros((N_IN, BLOCK_D, N_OUT), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if HAS_DLAST:
        dlast = tl.load(dlast_ptr + b * dim * dstate + dn_off, mask=mask_dn, other=0.0)

    for i in range(n_chunks):
        c = n_chunks - 1 - i
        t1 = c * BLOCK_T + t0  # (T,)
        mask_t = t1 < seqlen
        tc = t1[:, None]  # (T, 1)
        mask_td = mask_t[:, None] & mask_d[None, :]  # (T, BD)
        t3 = t1[None, :, None]  # (1, T, 1)
        mask_nt = mask_n3 & (t3 < seqlen)  # (NI, T, NO)
        # The reversed-time inputs of the second half are loaded here, before this chunk's
        # stores and atomics: a load after them could alias them, so the compiler would keep
        # it there and the chunk would wait for memory twice.
        tr = c * BLOCK_T + (BLOCK_T - 1) - t0  # (T,) time of reversed position i
        mask_r = tr < seqlen
        trc = tr[:, None]
        mask_rd = mask_r[:, None] & mask_d[None, :]
        tr3 = tr[None, :, None]
        mask_rn = mask_n3 & (tr3 < seqlen)
        u_r = tl.load(u_base + trc * su_l, mask=mask_rd, other=0.0)
        dtp_r = tl.load(dt_base + trc * sdt_l, mask=mask_rd, other=0.0)
        dy_r = tl.load(dy_base + trc * sdy_l, mask=mask_rd, other=0.0)
        B_r = tl.load(B_base + tr3 * sB_l, mask=mask_rn, other=0.0)
        C_r = tl.load(C_base + tr3 * sC_l, mask=mask_rn, other=0.0)
        if HAS_Z:
            z_r = tl.load(z_base + trc * sz_l, mask=mask_rd, other=0.0)
        # dt one step later, for a_{t+1}
        tr1 = tr + 1
        mask_r1 = tr1 < seqlen
        mask_rd1 = mask_r1[:, None] & mask_d[None, :]
        dt1_r = tl.load(dt_base + tr1[:, None] * sdt_l, mask=mask_rd1, other=0.0)
        if HAS_DOCS:
            doc1 = tl.load(doc_ptr + b * sdoc_b + tr1 * sdoc_l, mask=mask_r1, other=0)

        u = tl.load(u_base + tc * su_l, mask=mask_td, other=0.0).to(tl.float32)  # (T, BD)
        dt_pre = tl.load(dt_base + tc * sdt_l, mask=mask_td, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt_pre = dt_pre + bias
        if SOFTPLUS:
            dt = softplus(dt_pre)
        else:
            dt = dt_pre
        Bt = tl.load(B_base + t3 * sB_l, mask=mask_nt, other=0.0).to(tl.float32)  # (NI, T, NO)
        Ct = tl.load(C_base + t3 * sC_l, mask=mask_nt, other=0.0).to(tl.float32)

        # Recompute h_t in this chunk from the state saved at its start.
        dA = tl.exp2(dt[None, :, :, None] * A2)  # (NI, T, BD, NO)
        if HAS_DOCS:
            doc = tl.load(doc_ptr + b * sdoc_b + t1 * sdoc_l, mask=mask_t, other=0)
            dA = tl.where((doc != 0)[None, :, None, None], 0.0, dA)
        dA = tl.where(mask_t[None, :, None, None], dA, 1.0)
        dtu = dt * u  # (T, BD)
        dBu = dtu[None, :, :, None] * Bt[:, :, None, :]  # (NI, T, BD, NO)
        h_start = tl.load(states_ptr + (b * n_chunks + c) * dim * dstate + dn_off,
                          mask=mask_dn, other=0.0)  # (NI, BD, NO)
        # The saved state enters through the first step, so the scan's b output is h_t.
        _, hs = tl.associative_scan(
            (dA, dBu + tl.where(is_first_col, dA * h_start[:, None, :, :], 0.0)),
            axis=1, combine_fn=linear_combine)  # (NI, T, BD, NO): h_t

        dy = tl.load(dy_base + tc * sdy_l, mask=mask_td, other=0.0).to(tl.float32)  # (T, BD)
        if HAS_Z:
            z = tl.load(z_base + tc * sz_l, mask=mask_td, other=0.0).to(tl.float32)
            sig = sigmoid(z)
            y_pre = tl.sum(tl.sum(hs * Ct[:, :, None, :], axis=0), axis=2)  # (T, BD)
            if HAS_D:
                y_pre += Dv * u
            dz = dy * y_pre * sig * (1.0 + z * (1.0 - sig))
            tl.store(dz_ptr + out_base + tc, dz.to(dz_ptr.dtype.element_ty), mask=mask_td)
            dout = dy * z * sig
        else:
            dout = dy  # (T, BD)
        # dC: summed over this program's channels, one atomic add per (n, t) per tile.
        dC = tl.sum(hs * dout[None, :, :, None], axis=2)  # (NI, T, NO)
        tl.atomic_add(dC_ptr + dBC_base + t3, dC, mask=mask_nt, sem="relaxed")
        ha = hs - dBu  # (NI, T, BD, NO): a_t * h_{t-1}
        # Triton lowers reverse=True scans with lane shuffles even along an in-register axis, so
        # the reverse pass runs forward over the chunk in reversed time, r = T - 1 - i: the few
        # (T, BD) and (NI, T, NO) inputs were loaded a second time reversed at the top of the
        # chunk (cache hits), ha is flipped.
        ha = tl.flip(ha, 1)
        u = u_r.to(tl.float32)
        dt_pre = dtp_r.to(tl.float32)
        dy = dy_r.to(tl.float32)
        Bt = B_r.to(tl.float32)
        Ct = C_r.to(tl.float32)
        if HAS_BIAS:
            dt_pre = dt_pre + bias
        if SOFTPLUS:
            dt = softplus(dt_pre)
        else:
            dt = dt_pre
        if HAS_Z:
            z = z_r.to(tl.float32)
            dout = dy * z * sigmoid(z)
        else:
            dout = dy  # (T, BD), reversed

        # Decay one step later, a_{t+1}: it links g_t to g_{t+1} (0 past the end).
        dt1 = dt1_r.to(tl.float32)
        if HAS_BIAS:
            dt1 = dt1 + bias
        if SOFTPLUS:
            dt1 = softplus(dt1)
        dA1 = tl.exp2(dt1[None, :, :, None] * A2)  # (NI, T, BD, NO), reversed
        if HAS_DOCS:
            dA1 = tl.where((doc1 != 0)[None, :, None, None], 0.0, dA1)
        dA1 = tl.where(mask_r1[None, :, None, None], dA1, 0.0)

        x = Ct[:, :, None, :] * dout[None, :, :, None]  # (NI, T, BD, NO): dL/dh_t through y_t
        if HAS_DLAST:
            x += tl.where((tr == seqlen - 1)[None, :, None, None], dlast[:, None, :, :], 0.0)
        # g from the next chunk enters through the first reversed step (the chunk's last time);
        # then g_t = x_t + a_{t+1} g_{t+1} is a forward recurrence in reversed time.
        x += tl.where(is_first_col, dA1 * g_carry[:, None, :, :], 0.0)
        _, g = tl.associative_scan((dA1, x), axis=1, combine_fn=linear_combine)
        g_carry = tl.sum(tl.where(is_last_col, g, 0.0), axis=1)  # g at the chunk's start

        dtu = dt * u  # (T, BD), reversed
        dB = tl.sum(g * dtu[None, :, :, None], axis=2)  # (NI, T, NO)
        tl.atomic_add(dB_ptr + dBC_base + tr3, dB, mask=mask_rn, sem="relaxed")
        gB = tl.sum(tl.sum(g * Bt[:, :, None, :], axis=0), axis=2)  # (T, BD)
        ga = g * ha  # (NI, T, BD, NO): g_t * a_t * h_{t-1}
        dA_acc += tl.sum(ga * dt[None, :, :, None], axis=1)
        ddt = u * gB + tl.sum(tl.sum(ga * A, axis=0), axis=2)  # (T, BD)
        du = dt * gB
        if HAS_D:
            du += Dv * dout
            dD_acc += tl.sum(dout * u, axis=0)
        if SOFTPLUS:
            ddt = ddt * sigmoid(dt_pre)
        ddt = tl.where(mask_rd, ddt, 0.0)
        dbias_acc += tl.sum(ddt, axis=0)
        tl.store(du_ptr + out_base + trc, du.to(du_ptr.dtype.element_ty), mask=mask_rd)
        tl.store(ddt_ptr + out_base + trc, ddt.to(ddt_ptr.dtype.element_ty), mask=mask_rd)

    # Gradient of the initial state: through a_0 (0 when a document starts at t = 0).
    dt0 = tl.load(dt_ptr + b * sdt_b + d3 * sdt_d, mask=d3 < dim, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt0 = dt0 + tl.load(bias_ptr + d3, mask=d3 < dim, other=0.0)
    if SOFTPLUS:
        dt0 = softplus(dt0)
    a0 = tl.exp2(dt0 * A2.reshape(N_IN, BLOCK_D, N_OUT))  # (NI, BD, NO)
    if HAS_DOCS:
        doc0 = tl.load(doc_ptr + b * sdoc_b)
        a0 = tl.where(doc0 != 0, 0.0, a0)
    part = b * dim * dstate + dn_off
    tl.store(dh0_ptr + part, a0 * g_carry, mask=mask_dn)
    tl.store(dA_ptr + part, dA_acc, mask=mask_dn)
    tl.store(dD_ptr + b * dim + d1, dD_acc, mask=mask_d)
    tl.store(dbias_ptr + b * dim + d1, dbias_acc, mask=mask_d)


def grad_buffers(u, delta, z, du_out, ddelta_out, dz_out, make, unit_stride_l: bool):
    """du, ddelta, dz (B, D, L): the given buffers, else ``make(dtype)`` new ones; all three must
    share one layout (the kernels take one set of output strides), with unit stride along L when
    ``unit_stride_l``. dz is du when there is no z (never written then)."""
    du = make(u.dtype) if du_out is None else du_out
    ddt = make(delta.dtype) if ddelta_out is None else ddelta_out
    dz = du if z is None else (make(z.dtype) if dz_out is None else dz_out)
    for name, t in (("du_out", du), ("ddelta_out", ddt), ("dz_out", dz)):
        if (t.shape != u.shape or t.stride() != du.stride()
                or (unit_stride_l and u.shape[2] > 1 and t.stride(2) != 1)):
            raise ValueError(f"{name} must be {tuple(u.shape)}, one layout for all three"
                             + (" with unit stride along L" if unit_stride_l else "")
                             + f"; got {tuple(t.shape)} strides {t.stride()}")
    return du, ddt, dz


def partial_buffers(batch: int, dim: int, dstate: int, seqlen: int, device, n_parts: int = 1):
    """fp32 dB, dC (B, N, L), zeroed: the programs add into them atomically; dh0 (B, D, N); dA
    (P * B, D, N), dD, dbias (P * B, D): partials per batch (and per time segment, P of them),
    summed over dim 0 by the caller."""
    f32 = dict(device=device, dtype=torch.float32)
    parts = n_parts * batch
    return (torch.zeros((batch, dstate, seqlen), **f32), torch.zeros((batch, dstate, seqlen), **f32),
            torch.empty((parts, dim, dstate), **f32), torch.empty((batch, dim, dstate), **f32),
            torch.empty((parts, dim), **f32), torch.empty((parts, dim), **f32))


def scan_bwd_launch(
    *, dy: torch.Tensor, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
    C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
    delta_bias: torch.Tensor | None, delta_softplus: bool, doc_starts: torch.Tensor | None,
    states: torch.Tensor, dlast_state: torch.Tensor | None, block_d: int, block_t: int,
    n_in: int, num_warps: int, du_out: torch.Tensor | None = None,
    ddelta_out: torch.Tensor | None = None, dz_out: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Launch the backward; returns the gradients by name, partial sums already reduced.
    ``du_out``, ``ddelta_out``, ``dz_out``: where to write those (B, D, L) gradients (all three
    one layout with unit stride along L, e.g. views of (D, B * L) matrices); default new
    contiguous ones."""
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    n_chunks = triton.cdiv(seqlen, block_t)
    assert states.shape == (batch, n_chunks, dim, dstate), "states saved with another block_t"
    du, ddt, dz = grad_buffers(u, delta, z, du_out, ddelta_out, dz_out,
                               lambda dtype: torch.empty_like(u, dtype=dtype,
                                                          memory_format=torch.contiguous_format),
                               unit_stride_l=True)
    dB, dC, dA, dh0, dD, dbias = partial_buffers(batch, dim, dstate, seqlen, u.device)
    zz = z if z is not None else u
    docs = doc_starts if doc_starts is not None else u
    sdoc = (docs.stride(0), docs.stride(1)) if doc_starts is not None else (0, 0)
    bn = triton.next_power_of_2(dstate)
    n_in = min(n_in, bn)
    grid = (triton.cdiv(dim, block_d), batch)
    _scan_bwd_kernel[grid](
        u, delta, A, B, C, D if D is not None else A, zz,
        delta_bias if delta_bias is not None else A, docs, states,
        dy, dlast_state if dlast_state is not None else A,
        du, ddt, dz, dB, dC, dA, dD, dbias, dh0,
        dim, seqlen, dstate, n_chunks,
        *u.stride(), *delta.stride(), *zz.stride(), *B.stride(), *C.stride(), *sdoc, *dy.stride(),
        du.stride(0), du.stride(1),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=delta_softplus, HAS_DOCS=doc_starts is not None,
        HAS_DLAST=dlast_state is not None,
        BLOCK_D=block_d, N_IN=n_in, N_OUT=bn // n_in, BLOCK_T=block_t,
        num_warps=num_warps,
    )
    return {
        "du": du, "ddelta": ddt, "dz": dz if z is not None else None,
        "dA": dA.sum(0), "dB": dB, "dC": dC, "dD": dD.sum(0) if D is not None else None,
        "ddelta_bias": dbias.sum(0) if delta_bias is not None else None,
        "dinitial_state": dh0,
    }
