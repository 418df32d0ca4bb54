"""The fused Mamba-1 mixer on Triton kernels: conv -> x_proj -> dt_proj -> scan -> out_proj.

Same math as mamba_ssm's ``mamba_inner_fn`` (and ``mambalab.ops.mamba_inner.reference``), as one
autograd Function. For the backward it keeps the in_proj output ``xz`` (which autograd holds
anyway for in_proj's own weight gradient), the small ``x_dbl`` (R + 2N, B*L), the scan's chunk
states where its backward can start from them (``bwd_writes_y``), and, by ``CONFIG``, the conv
output, delta and the scan output y (each (D, B*L) in bf16: 50 MB a layer at 8 x 2048 x 1536);
whatever it does not keep, the backward recomputes. Per layer that is more than mamba_ssm's
``mamba_inner_fn`` keeps at Mamba-130M's shape (the lanes states are 200 MB at 8 x 2048; it keeps
its scan output, 50 MB, and 2 MB of scan intermediates, and recomputes the conv and delta), for
speed: the lanes backward starts from the states instead of rerunning the scan's forward. The
model's peak memory is still below mamba_ssm's at the same batch (docs/performance.md), because
its loss never builds the fp32 logits.

Layouts. The fast one is mamba_ssm's: ``xz`` a (B, 2D, L) view of the (2D, B*L) product
``in_proj.weight @ hidden.T`` (``dbl_view``; the mixer makes it). Then every (B, D, L) tensor of the
mixer is a view of a (D, B*L) matrix with unit stride along time: the conv and the scan read
them as they are, and x_proj, dt_proj, out_proj and all their gradients are single 2-D matmuls on
those matrices, with no transposing copy anywhere (the scan's backward writes dB and dC into
their rows of x_dbl's gradient). Any other xz takes the channel-last path: when ``xz`` is a
transposed view of a (B, L, 2D) in_proj output, the conv writes channel-last too and the
projections read rows, but the scan copies u, delta and z to (B, D, L) and its gradients are
transposed back (measured 1.2 ms more per layer at B=8, L=2048, D=1536 on an H100).
Under autocast the projection weights are cast to the autocast dtype, as mamba_inner_fn does; the
conv weights, A, D and delta_bias stay fp32 and are read in fp32 inside the kernels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mambalab.ops.triton import config_from_env
from mambalab.ops.triton.causal_conv1d import causal_conv1d_bwd, causal_conv1d_fwd, segment_starts
from mambalab.ops.triton.selective_scan import bwd_writes_y, selective_scan_bwd, selective_scan_fwd

# keep_conv_out: the forward keeps the conv output (B, D, L) for the backward instead of
# recomputing it there, on the model's layout (``is_dbl``). For Mamba-130M that is 24 conv
# kernels a training step fewer (the conv forward's 48 calls took 10.2 ms of a 32 x 2048 step on
# an H200, fifth session's profile) for D * B * L more activation memory per layer: 50 MB in bf16
# at 8 x 2048, 1.2 GB over 24 layers (docs/performance.md has the measured step time and peak
# memory). False: recompute it, as mamba_ssm's mamba_inner_fn does.
# keep_delta: the forward keeps delta (the dt_proj product, (D, B*L) in bf16) so that the backward
# need not run that matmul again (24 of the 48 calls of a 32 x 2048 step's dt_proj matmuls,
# 0.068 ms each on an H200: tenth session's profile), for another 50 MB a layer at 8 x 2048.
# keep_y: the forward keeps the scan output y (which out_proj read) for out_proj's weight gradient,
# as mamba_inner_fn does, so that the scan's backward need not write it again (it recomputes the
# pre-gate output for dz anyway; writing y cost 23 instructions of 3,521 a chunk, offline, and a
# (D, B*L) store); 50 MB a layer at 8 x 2048. Only where the scan's backward could give y back
# (``bwd_writes_y``); elsewhere the backward reruns the scan's forward, which writes y.
# Measurements of keep_delta and keep_y: docs/performance.md (eleventh session).
CONFIG = {"keep_conv_out": True, "keep_delta": True, "keep_y": True}
# MAMBALAB_MIXER_CONFIG='{"keep_conv_out": false}' (JSON) overrides CONFIG keys for a process.
config_from_env(CONFIG, "MAMBALAB_MIXER_CONFIG")


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return None


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(B, C, L) -> (B*L, C) rows; a view when t is channel-last in memory."""
    return t.transpose(1, 2).reshape(-1, t.shape[1])


def _empty_like_layout(xz: torch.Tensor) -> torch.Tensor:
    bsz, channels, seqlen = xz.shape
    if xz.stride(1) == 1 and seqlen > 1:
        return torch.empty(bsz, seqlen, channels, device=xz.device, dtype=xz.dtype).transpose(1, 2)
    return torch.empty(bsz, channels, seqlen, device=xz.device, dtype=xz.dtype)


def is_dbl(xz: torch.Tensor) -> bool:
    """True when xz (B, C, L) is a view of a contiguous (C, B*L) matrix (strides (L, B*L, 1))."""
    bsz, channels, seqlen = xz.shape
    return (xz.stride(2) == 1 or seqlen == 1) and xz.stride(1) == bsz * seqlen \
        and (xz.stride(0) == seqlen or bsz == 1)


def dbl_view(mat: torch.Tensor, bsz: int) -> torch.Tensor:
    """(C, B*L) matrix -> (B, C, L) view."""
    return mat.view(mat.shape[0], bsz, -1).permute(1, 0, 2)


def _dbl_mat(t: torch.Tensor) -> torch.Tensor:
    """(B, C, L) view of a (C, B*L) matrix -> that matrix (a view)."""
    return t.permute(1, 0, 2).reshape(t.shape[1], -1)


def _scan_inputs(x_dbl, delta_proj_weight, bsz, seqlen, rank, n_state):
    """delta (B, D, L), B and C (B, N, L): strided views of row-major projections (no copies)."""
    delta = F.linear(x_dbl[:, :rank], delta_proj_weight)                  # (B*L, D)
    delta = delta.view(bsz, seqlen, -1).transpose(1, 2)
    b_mat = x_dbl[:, rank:rank + n_state].view(bsz, seqlen, n_state).transpose(1, 2)
    c_mat = x_dbl[:, rank + n_state:].view(bsz, seqlen, n_state).transpose(1, 2)
    return delta, b_mat, c_mat


def _forward_dbl(xz, conv_w, conv_b, x_proj_weight, delta_proj_weight, out_proj_weight,
                 out_proj_bias, A, D, delta_bias, doc_starts, seg, keep_states=False):
    """Forward on the (C, B*L) layout (see the module docstring) -> (out (B*L, d_model), x_dbl
    (R + 2N, B*L), the scan's states or None, and the (D, B*L) matrices of the conv output, delta
    and y). ``keep_states`` (a backward will run): where the scan's backward can give y back
    (``bwd_writes_y``: the step kernels, states h every 16 steps, 100 MB a layer at B=8, L=2048,
    D=1536; the lanes kernels, every 8 steps, 200 MB), return the states, so that the backward
    does not rerun the forward."""
    bsz, two_d, seqlen = xz.shape
    d_inner = two_d // 2
    rank, n_state = delta_proj_weight.shape[1], A.shape[1]
    x, z = xz.chunk(2, dim=1)                                                # (B, D, L) views
    conv_mat = torch.empty(d_inner, bsz * seqlen, device=xz.device, dtype=xz.dtype)
    conv_out = causal_conv1d_fwd(x, conv_w, conv_b, None, seg, silu=True,
                                 out=dbl_view(conv_mat, bsz))
    x_dbl = x_proj_weight @ conv_mat                                          # (R + 2N, B*L)
    delta_mat = delta_proj_weight @ x_dbl[:rank]                              # (D, B*L)
    delta = dbl_view(delta_mat, bsz)                                          # (B, D, L)
    b_mat = dbl_view(x_dbl[rank:rank + n_state], bsz)                        # (B, N, L)
    c_mat = dbl_view(x_dbl[rank + n_state:], bsz)
    y_mat = torch.empty_like(conv_mat)                                        # (D, B*L)
    keep_states = keep_states and bwd_writes_y(conv_out, delta, b_mat, c_mat, z)
    _, _, states = selective_scan_fwd(conv_out, delta, A, b_mat, c_mat, D, z, delta_bias, True,
                                      None, doc_starts, save_states=keep_states,
                                      y_out=dbl_view(y_mat, bsz))
    out = y_mat.t() @ out_proj_weight.t()                                     # (B*L, d_model)
    if out_proj_bias is not None:
        out += out_proj_bias
    return out, x_dbl, states, conv_mat, delta_mat, y_mat


def _backward_dbl(dout, xz, conv_w, conv_b, x_dbl, x_proj_weight, delta_proj_weight,
                  out_proj_weight, A, D, delta_bias, doc_starts, seg, has_out_bias, states=None,
                  conv_mat=None, delta_mat=None, y_mat=None):
    """Backward on the (C, B*L) layout: recomputes what the forward did not keep (the conv
    output ``conv_mat``, ``delta_mat`` and ``y_mat``, each (D, B*L); y with the scan's chunk
    states: rerunning the scan's forward, or, given the forward's ``states``, from the scan's
    backward), then every gradient as 2-D matmuls on (C, B*L) matrices."""
    bsz, two_d, seqlen = xz.shape
    d_inner = two_d // 2
    rank, n_state = delta_proj_weight.shape[1], A.shape[1]
    x, z = xz.chunk(2, dim=1)
    dout = dout.reshape(bsz * seqlen, -1).to(out_proj_weight.dtype)          # (B*L, d_model)
    if conv_mat is None:
        conv_mat = torch.empty(d_inner, bsz * seqlen, device=xz.device, dtype=xz.dtype)
        causal_conv1d_fwd(x, conv_w, conv_b, None, seg, silu=True, out=dbl_view(conv_mat, bsz))
    conv_out = dbl_view(conv_mat, bsz)
    if delta_mat is None:
        delta_mat = delta_proj_weight @ x_dbl[:rank]
    delta = dbl_view(delta_mat, bsz)
    b_mat = dbl_view(x_dbl[rank:rank + n_state], bsz)
    c_mat = dbl_view(x_dbl[rank + n_state:], bsz)
    if states is None:  # rerun the scan's forward: the chunk states, and y with them
        y_mat = torch.empty_like(conv_mat)
        _, _, states = selective_scan_fwd(conv_out, delta, A, b_mat, c_mat, D, z, delta_bias,
                                          True, None, doc_starts, save_states=True,
                                          y_out=dbl_view(y_mat, bsz))
    y_from_bwd = y_mat is None
    dy_mat = out_proj_weight.t() @ dout.t()                                   # (D, B*L)
    dout_proj_bias = dout.sum(0) if has_out_bias else None
    if not y_from_bwd:
        dout_proj_weight = dout.t() @ y_mat.t()                               # (d_model, D)
        del y_mat
    else:
        y_mat = torch.empty_like(conv_mat)
    dxz_mat = torch.empty(two_d, bsz * seqlen, device=xz.device, dtype=xz.dtype)
    dconv_mat = torch.empty_like(conv_mat)                                    # du, then + x_proj
    ddelta_mat = torch.empty(d_inner, bsz * seqlen, device=xz.device, dtype=delta.dtype)
    # dB and dC go straight into their rows of x_dbl's gradient (R + 2N, B*L)
    dx_dbl = torch.empty_like(x_dbl)
    g = selective_scan_bwd(dbl_view(dy_mat, bsz), conv_out, delta, A, b_mat, c_mat, D, z,
                           delta_bias, True, doc_starts, states,
                           du_out=dbl_view(dconv_mat, bsz), ddelta_out=dbl_view(ddelta_mat, bsz),
                           dz_out=dbl_view(dxz_mat[d_inner:], bsz),
                           y_out=dbl_view(y_mat, bsz) if y_from_bwd else None,
                           dB_out=dbl_view(dx_dbl[rank:rank + n_state], bsz),
                           dC_out=dbl_view(dx_dbl[rank + n_state:], bsz))
    g_dA, g_dD, g_ddelta_bias = g["dA"], g["dD"], g["ddelta_bias"]
    del states, dy_mat, delta, delta_mat, g
    if y_from_bwd:
        dout_proj_weight = dout.t() @ y_mat.t()                               # (d_model, D)
        del y_mat
    ddelta_mat = ddelta_mat.to(x_dbl.dtype)
    ddelta_proj_weight = ddelta_mat @ x_dbl[:rank].t()                        # (D, R)
    torch.mm(delta_proj_weight.t(), ddelta_mat, out=dx_dbl[:rank])           # (R, B*L)
    del ddelta_mat
    dx_proj_weight = dx_dbl @ conv_mat.t()                                    # (R + 2N, D)
    dconv_mat.addmm_(x_proj_weight.t(), dx_dbl)                               # (D, B*L)
    _, dconv_w, dconv_b, _ = causal_conv1d_bwd(x, conv_w, conv_b, None, seg,
                                               dbl_view(dconv_mat, bsz), silu=True,
                                               dx=dbl_view(dxz_mat[:d_inner], bsz))
    return (dbl_view(dxz_mat, bsz), dconv_w, dconv_b, dx_proj_weight, ddelta_proj_weight,
            dout_proj_weight, dout_proj_bias, g_dA, g_dD, g_ddelta_bias)


class MambaInnerFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight,
                out_proj_weight, out_proj_bias, A, D, delta_bias, doc_starts):
        cast = _autocast_dtype(xz.device)
        if cast is not None:
            x_proj_weight = x_proj_weight.to(cast)
            delta_proj_weight = delta_proj_weight.to(cast)
            out_proj_weight = out_proj_weight.to(cast)
            out_proj_bias = out_proj_bias.to(cast) if out_proj_bias is not None else None
            xz = xz.to(cast)
        bsz, _, seqlen = xz.shape
        rank, n_state = delta_proj_weight.shape[1], A.shape[1]
        conv_w = conv1d_weight.reshape(conv1d_weight.shape[0], -1)           # (D, W)
        seg = segment_starts(doc_starts, conv_w.shape[1])
        ctx.dbl = is_dbl(xz)
        ctx.has_out_bias = out_proj_bias is not None
        ctx.conv_shape = conv1d_weight.shape
        if ctx.dbl:
            with torch.autocast(xz.device.type, enabled=False):
                # no states kept where no backward will run (evaluation, generation); whether
                # the scan can keep them for these shapes, _forward_dbl asks bwd_writes_y
                keep = any(ctx.needs_input_grad)
                out, x_dbl, states, conv_mat, delta_mat, y_mat = _forward_dbl(
                    xz, conv_w, conv1d_bias, x_proj_weight, delta_proj_weight, out_proj_weight,
                    out_proj_bias, A, D, delta_bias, doc_starts, seg, keep_states=keep)
            kept = {"keep_conv_out": conv_mat, "keep_delta": delta_mat, "keep_y": y_mat}
            conv_mat, delta_mat, y_mat = (t if keep and CONFIG[k] else None
                                          for k, t in kept.items())
            if states is None:  # the backward reruns the scan's forward, which writes y
                y_mat = None
            ctx.save_for_backward(xz, conv_w, conv1d_bias, x_dbl, x_proj_weight,
                                  delta_proj_weight, out_proj_weight, A, D, delta_bias,
                                  doc_starts, seg, states, conv_mat, delta_mat, y_mat)
            return out.view(bsz, seqlen, -1)
        with torch.autocast(xz.device.type, enabled=False):
            x, z = xz.chunk(2, dim=1)                                         # (B, D, L) each
            conv_out = causal_conv1d_fwd(x, conv_w, conv1d_bias, None, seg, silu=True)
            x_dbl = F.linear(_rows(conv_out), x_proj_weight)                 # (B*L, R + 2N)
            delta, b_mat, c_mat = _scan_inputs(x_dbl, delta_proj_weight, bsz, seqlen, rank,
                                               n_state)
            y, _, _ = selective_scan_fwd(conv_out, delta, A, b_mat, c_mat, D, z, delta_bias,
                                         True, None, doc_starts, save_states=False)
            out = F.linear(_rows(y), out_proj_weight, out_proj_bias)         # (B*L, d_model)
        ctx.save_for_backward(xz, conv_w, conv1d_bias, x_dbl, x_proj_weight, delta_proj_weight,
                              out_proj_weight, A, D, delta_bias, doc_starts, seg, None, None,
                              None, None)
        return out.view(bsz, seqlen, -1)

    @staticmethod
    def backward(ctx, dout):                                                 # (B, L, d_model)
        (xz, conv_w, conv_b, x_dbl, x_proj_weight, delta_proj_weight, out_proj_weight, A, D,
         delta_bias, doc_starts, seg, states, conv_mat, delta_mat, y_mat) = ctx.saved_tensors
        bsz, _, seqlen = xz.shape
        rank, n_state = delta_proj_weight.shape[1], A.shape[1]
        if ctx.dbl:
            with torch.autocast(xz.device.type, enabled=False):
                grads = _backward_dbl(dout, xz, conv_w, conv_b, x_dbl, x_proj_weight,
                                      delta_proj_weight, out_proj_weight, A, D, delta_bias,
                                      doc_starts, seg, ctx.has_out_bias, states, conv_mat,
                                      delta_mat, y_mat)
            dxz, dconv_w, dconv_b, dx_proj_w, ddt_proj_w, dout_w, dout_b, dA, dD, ddt_b = grads
            return (dxz, dconv_w.reshape(ctx.conv_shape), dconv_b, dx_proj_w, ddt_proj_w, dout_w,
                    dout_b, dA, dD, ddt_b, None)
        with torch.autocast(xz.device.type, enabled=False):
            x, z = xz.chunk(2, dim=1)
            dout = dout.reshape(bsz * seqlen, -1).to(out_proj_weight.dtype)  # (B*L, d_model)
            # recompute what the forward dropped: conv output, delta, the scan's chunk states
            conv_out = causal_conv1d_fwd(x, conv_w, conv_b, None, seg, silu=True)
            delta, b_mat, c_mat = _scan_inputs(x_dbl, delta_proj_weight, bsz, seqlen, rank,
                                               n_state)
            y, _, states = selective_scan_fwd(conv_out, delta, A, b_mat, c_mat, D, z, delta_bias,
                                              True, None, doc_starts, save_states=True)
            dy = (dout @ out_proj_weight).view(bsz, seqlen, -1).transpose(1, 2)  # (B, D, L)
            g = selective_scan_bwd(dy, conv_out, delta, A, b_mat, c_mat, D, z, delta_bias, True,
                                   doc_starts, states)
            del states
            dout_proj_weight = dout.t() @ _rows(y)                            # (d_model, D)
            dout_proj_bias = dout.sum(0) if ctx.has_out_bias else None
            del y
            dx_dbl = torch.empty_like(x_dbl)                                  # (B*L, R + 2N)
            dx_dbl[:, rank:rank + n_state] = g["dB"].transpose(1, 2).reshape(-1, n_state)
            dx_dbl[:, rank + n_state:] = g["dC"].transpose(1, 2).reshape(-1, n_state)
            ddelta = _rows(g["ddelta"]).to(x_dbl.dtype)                       # (B*L, D)
            ddelta_proj_weight = ddelta.t() @ x_dbl[:, :rank]                # (D, R)
            torch.mm(ddelta, delta_proj_weight, out=dx_dbl[:, :rank])
            del ddelta
            dx_proj_weight = dx_dbl.t() @ _rows(conv_out)                    # (R + 2N, D)
            dconv = g["du"]                                                   # (B, D, L)
            dconv += (dx_dbl @ x_proj_weight).view(bsz, seqlen, -1).transpose(1, 2)
            dxz = _empty_like_layout(xz)
            dx, dz = dxz.chunk(2, dim=1)
            dz.copy_(g["dz"])
            _, dconv_w, dconv_b, _ = causal_conv1d_bwd(x, conv_w, conv_b, None, seg, dconv,
                                                       silu=True, dx=dx)
        return (dxz, dconv_w.reshape(ctx.conv_shape), dconv_b, dx_proj_weight,
                ddelta_proj_weight, dout_proj_weight, dout_proj_bias, g["dA"], g["dD"],
                g["ddelta_bias"], None)


def mamba_inner_triton(xz: torch.Tensor, conv1d_weight: torch.Tensor,
                       conv1d_bias: torch.Tensor | None, x_proj_weight: torch.Tensor,
                       delta_proj_weight: torch.Tensor, out_proj_weight: torch.Tensor,
                       out_proj_bias: torch.Tensor | None, A: torch.Tensor, D: torch.Tensor | None,
                       delta_bias: torch.Tensor | None,
                       doc_starts: torch.Tensor | None = None) -> torch.Tensor:
    """xz (B, 2 * D_inner, L) any strides -> out (B, L, d_model). Shapes as the reference:
    conv1d_weight (D_inner, 1, W) or (D_inner, W), x_proj_weight (R + 2N, D_inner),
    delta_proj_weight (D_inner, R), out_proj_weight (d_model, D_inner), A (D_inner, N)."""
    if xz.dim() != 3 or xz.shape[1] % 2:
        raise ValueError(f"mamba_inner: xz must be (B, 2 * D_inner, L), got {tuple(xz.shape)}")
    d_inner = xz.shape[1] // 2
    rank, n_state = delta_proj_weight.shape[1], A.shape[-1]
    expect = {"conv1d_weight": (conv1d_weight.shape[0], d_inner),
              "x_proj_weight": (tuple(x_proj_weight.shape), (rank + 2 * n_state, d_inner)),
              "delta_proj_weight": (delta_proj_weight.shape[0], d_inner),
              "out_proj_weight": (out_proj_weight.shape[1], d_inner), "A": (A.shape[0], d_inner)}
    for name, (got, want) in expect.items():
        if got != want:
            raise ValueError(f"mamba_inner: {name} does not fit D_inner={d_inner}, dt_rank={rank}, "
                             f"d_state={n_state} (got {got}, expected {want})")
    if doc_starts is not None and tuple(doc_starts.shape) != (xz.shape[0], xz.shape[2]):
        raise ValueError(f"mamba_inner: doc_starts must be (B, L) = {(xz.shape[0], xz.shape[2])}, "
                         f"got {tuple(doc_starts.shape)}")
    return MambaInnerFn.apply(xz, conv1d_weight, conv1d_bias, x_proj_weight, delta_proj_weight,
                              out_proj_weight, out_proj_bias, A, D, delta_bias, doc_starts)
