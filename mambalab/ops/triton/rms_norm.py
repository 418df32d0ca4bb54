"""Triton RMSNorm fused with the residual add, forward and backward.

Semantics of mamba_ssm's ``layer_norm_fn(..., is_rms_norm=True)`` without a bias:
    residual_out = x + residual          (fp32 when residual_in_fp32; x alone without a residual)
    out = residual_out * rsqrt(mean(residual_out ** 2) + eps) * weight     (in x's dtype)
returning ``out``, or ``(out, residual_out)`` with ``prenorm``. One pass over memory each way: the
add, the statistics and the scaling happen in registers, and the backward recomputes the
normalised row from residual_out and the saved 1/rms instead of storing it.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mambalab.ops.triton import config_from_env

# tile: elements of a tile of rows x the whole (padded) feature dimension, 2048 with 4 warps: 16
# values per thread per live tensor (no register spills at d_model = 768 .. 2560). warps: per
# program, forward and backward. bwd_programs_per_sm: the backward's programs, each looping over
# its rows and writing one dweight partial (few partials to sum). scripts/bench_norm.py on an H200
# (seventh session, docs/performance.md): at 65,536 rows of 768 (32 x 2048) the backward took
# 0.242 ms with 4 warps and 2048, 0.324 with the earlier 8 warps and 4096; the forward 0.149
# either way, and at 16,384 rows both 0.100. The training step at 32 x 2048: 247.6 and 247.9 ms
# against 249.7.
CONFIG = {"tile": 2048, "warps": 4, "bwd_programs_per_sm": 4}
# MAMBALAB_NORM_CONFIG='{"tile": 2048}' (JSON) overrides CONFIG keys for a process.
config_from_env(CONFIG, "MAMBALAB_NORM_CONFIG")


def _block_m(block_n: int) -> int:
    return max(1, int(CONFIG["tile"]) // block_n)


@triton.jit
def _rms_fwd_kernel(x_ptr, res_ptr, w_ptr, out_ptr, res_out_ptr, rstd_ptr, M, N, eps,
                    stride_x, stride_r, stride_o, stride_ro,
                    HAS_RES: tl.constexpr, STORE_RES: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    h = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0)
    h = h.to(tl.float32)
    if HAS_RES:
        h += tl.load(res_ptr + rows[:, None] * stride_r + cols[None, :], mask=mask,
                     other=0.0).to(tl.float32)
    if STORE_RES:
        # rounded to residual_out's dtype before the statistics, as mamba_ssm does
        h = h.to(res_out_ptr.dtype.element_ty)
        tl.store(res_out_ptr + rows[:, None] * stride_ro + cols[None, :], h, mask=mask)
        h = h.to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(h * h, axis=1) / N + eps)  # (BLOCK_M,)
    tl.store(rstd_ptr + rows, rstd, mask=rows < M)
    w = tl.load(w_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)
    y = h * rstd[:, None] * w[None, :]
    tl.store(out_ptr + rows[:, None] * stride_o + cols[None, :], y.to(out_ptr.dtype.element_ty),
             mask=mask)


@triton.jit
def _rms_bwd_kernel(h_ptr, w_ptr, rstd_ptr, dy_ptr, dres_out_ptr, dh_ptr, dres_ptr, dw_part_ptr,
                    M, N, rows_per_prog, stride_h, stride_dy, stride_dro, stride_dh, stride_dr,
                    HAS_DRES_OUT: tl.constexpr, STORE_DRES: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask_n = cols < N
    w = tl.load(w_ptr + cols, mask=mask_n, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK_N,), dtype=tl.float32)
    row_start = pid * rows_per_prog
    for r0 in range(row_start, row_start + rows_per_prog, BLOCK_M):
        rows = r0 + tl.arange(0, BLOCK_M)
        mask_m = (rows < M) & (rows < row_start + rows_per_prog)
        mask = mask_m[:, None] & mask_n[None, :]
        h = tl.load(h_ptr + rows[:, None] * stride_h + cols[None, :], mask=mask,
                    other=0.0).to(tl.float32)
        rstd = tl.load(rstd_ptr + rows, mask=mask_m, other=0.0)
        dy = tl.load(dy_ptr + rows[:, None] * stride_dy + cols[None, :], mask=mask,
                     other=0.0).to(tl.float32)
        xhat = h * rstd[:, None]
        dw += tl.sum(dy * xhat, axis=0)
        wdy = dy * w[None, :]
        c = tl.sum(xhat * wdy, axis=1) / N
        dh = (wdy - xhat * c[:, None]) * rstd[:, None]
        if HAS_DRES_OUT:
            dh += tl.load(dres_out_ptr + rows[:, None] * stride_dro + cols[None, :], mask=mask,
                          other=0.0).to(tl.float32)
        tl.store(dh_ptr + rows[:, None] * stride_dh + cols[None, :],
                 dh.to(dh_ptr.dtype.element_ty), mask=mask)
        if STORE_DRES:
            tl.store(dres_ptr + rows[:, None] * stride_dr + cols[None, :],
                     dh.to(dres_ptr.dtype.element_ty), mask=mask)
    tl.store(dw_part_ptr + pid * N + cols, dw, mask=mask_n)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(..., N) -> (M, N) with unit column stride (a view when possible)."""
    t = t.reshape(-1, t.shape[-1])
    return t if t.stride(-1) == 1 else t.contiguous()


def _block_n(n: int) -> int:
    block = triton.next_power_of_2(n)
    if block > 65536 // 4:
        raise ValueError(f"rms_norm: feature size {n} is too large for one row per block; "
                         "use impl='reference' for it")
    return block


def rms_norm_fwd(x, weight, eps, residual=None, residual_dtype=None):
    """Low-level forward on (M, N) rows -> out, residual_out, rstd (M,) fp32."""
    m, n = x.shape
    out = torch.empty_like(x)
    store_res = residual is not None or (residual_dtype is not None and residual_dtype != x.dtype)
    res_out = torch.empty(m, n, device=x.device, dtype=residual_dtype or x.dtype) \
        if store_res else x
    rstd = torch.empty(m, device=x.device, dtype=torch.float32)
    block_n = _block_n(n)
    block_m = _block_m(block_n)
    grid = (triton.cdiv(m, block_m),)
    _rms_fwd_kernel[grid](x, residual if residual is not None else x, weight, out, res_out, rstd,
                          m, n, eps, x.stride(0),
                          residual.stride(0) if residual is not None else 0, out.stride(0),
                          res_out.stride(0), HAS_RES=residual is not None, STORE_RES=store_res,
                          BLOCK_M=block_m, BLOCK_N=block_n, num_warps=int(CONFIG["warps"]))
    return out, res_out, rstd


def rms_norm_bwd(h, weight, rstd, dy, dres_out=None, x_dtype=None, res_dtype=None):
    """Low-level backward on (M, N) rows of residual_out ``h`` -> dx, dresidual (or None),
    dweight."""
    m, n = h.shape
    x_dtype = x_dtype or h.dtype
    dx = torch.empty(m, n, device=h.device, dtype=x_dtype)
    # dresidual equals dx, but gets its own buffer: one tensor handed back as the gradient of two
    # inputs could end up as both leaves' .grad, aliased
    store_dres = res_dtype is not None
    dres = torch.empty(m, n, device=h.device, dtype=res_dtype) if store_dres else None
    block_n = _block_n(n)
    block_m = _block_m(block_n)
    # a few programs per SM, each looping over its rows: few dweight partials to sum
    n_prog = min(triton.cdiv(m, block_m),
                 int(CONFIG["bwd_programs_per_sm"]) * _sm_count(h.device))
    rows_per_prog = triton.cdiv(triton.cdiv(m, n_prog), block_m) * block_m
    n_prog = triton.cdiv(m, rows_per_prog)
    dw_part = torch.empty(n_prog, n, device=h.device, dtype=torch.float32)
    _rms_bwd_kernel[(n_prog,)](h, weight, rstd, dy, dres_out if dres_out is not None else dy, dx,
                               dres if dres is not None else dx, dw_part, m, n, rows_per_prog,
                               h.stride(0), dy.stride(0),
                               dres_out.stride(0) if dres_out is not None else 0, dx.stride(0),
                               dres.stride(0) if dres is not None else 0,
                               HAS_DRES_OUT=dres_out is not None, STORE_DRES=store_dres,
                               BLOCK_M=block_m, BLOCK_N=block_n,
                               num_warps=int(CONFIG["warps"]))
    return dx, dres, dw_part.sum(0).to(weight.dtype)


def _sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


class _RMSNormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, residual, eps, prenorm, residual_in_fp32):
        shape = x.shape
        x2 = _rows(x)
        res2 = _rows(residual) if residual is not None else None
        residual_dtype = torch.float32 if residual_in_fp32 else (
            residual.dtype if residual is not None else None)
        out, res_out, rstd = rms_norm_fwd(x2, weight, eps, res2, residual_dtype)
        ctx.save_for_backward(res_out, weight, rstd)
        ctx.shape, ctx.x_dtype = shape, x.dtype
        ctx.res_dtype = residual.dtype if residual is not None else None
        ctx.prenorm = prenorm
        out = out.reshape(shape)
        if not prenorm:
            return out
        return out, res_out.reshape(shape)

    @staticmethod
    def backward(ctx, dy, dres_out=None):
        res_out, weight, rstd = ctx.saved_tensors
        dy2 = _rows(dy)
        dres2 = _rows(dres_out) if (ctx.prenorm and dres_out is not None) else None
        dx, dres, dweight = rms_norm_bwd(res_out, weight, rstd, dy2, dres2, ctx.x_dtype,
                                         ctx.res_dtype)
        dres = dres.reshape(ctx.shape) if dres is not None else None
        return dx.reshape(ctx.shape), dweight, dres, None, None, None


def rms_norm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5,
                    residual: torch.Tensor | None = None, prenorm: bool = False,
                    residual_in_fp32: bool = True):
    """x (..., N), weight (N,) [, residual (..., N)] -> out [, residual_out] (see module doc)."""
    if weight.dim() != 1 or x.shape[-1] != weight.shape[0]:
        raise ValueError(f"rms_norm: weight must be ({x.shape[-1]},) for x of shape "
                         f"{tuple(x.shape)}, got {tuple(weight.shape)}")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"rms_norm: residual must have x's shape {tuple(x.shape)}, got "
                         f"{tuple(residual.shape)}")
    return _RMSNormFn.apply(x, weight, residual, float(eps), bool(prenorm), bool(residual_in_fp32))
