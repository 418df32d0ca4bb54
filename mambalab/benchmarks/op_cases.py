"""The op micro-benchmarks' inputs and implementations, at one Mamba layer's shape.

Each case builds its inputs once and names, per implementation, a function of those inputs, or
the reason it cannot run here. Inputs are bf16 activations and fp32 parameters, as a layer under
bf16 autocast sees them.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class OpCase:
    op: str
    shape: str                                          # human-readable, for the table
    inputs: list[torch.Tensor]                          # leaves; those with grad get gradients
    impls: dict[str, Callable | str] = field(default_factory=dict)  # name -> fn or skip reason
    autocast: bool = False                              # run under bf16 autocast


def _cuda_fn(module: str, attr: str, device: torch.device) -> Callable | str:
    if device.type != "cuda":
        return "CUDA kernels need a CUDA device"
    try:
        fn = getattr(importlib.import_module(module), attr)
    except Exception as exc:
        return f"{module}.{attr} does not import ({type(exc).__name__})"
    return fn if fn is not None else f"{module}.{attr} is None"


def _triton_fn(name: str, device: torch.device) -> Callable | str:
    from mambalab.ops import triton as triton_ops

    reason = triton_ops.unavailable_reason(device)
    if reason is not None:
        return reason
    try:
        return getattr(triton_ops, name)
    except Exception as exc:  # a kernel module not landed or broken: its rows say so
        return f"mambalab.ops.triton.{name} is unavailable ({type(exc).__name__}: {exc})"


def _ref_fn(fn: Callable, tokens: int, max_tokens: int) -> Callable | str:
    if tokens > max_tokens:
        return (f"reference skipped at {tokens} tokens (bench.reference_max_tokens="
                f"{max_tokens}): a plain loop over time")
    return fn


def _randn(*shape, device, dtype=torch.bfloat16, scale=1.0, grad=True):
    t = (torch.randn(*shape, device=device) * scale).to(dtype)
    return t.requires_grad_(grad)


def scan_case(batch: int, seq_len: int, d_inner: int, d_state: int, device, ref_max: int):
    from mambalab.ops.selective_scan.reference import selective_scan_ref

    u = _randn(batch, d_inner, seq_len, device=device)
    delta = _randn(batch, d_inner, seq_len, device=device, scale=0.5)
    z = _randn(batch, d_inner, seq_len, device=device)
    b_mat = _randn(batch, d_state, seq_len, device=device)
    c_mat = _randn(batch, d_state, seq_len, device=device)
    a_mat = -torch.arange(1, d_state + 1, device=device, dtype=torch.float32).repeat(d_inner, 1)
    a_mat.requires_grad_(True)
    d_skip = torch.ones(d_inner, device=device, requires_grad=True)
    dt_bias = (torch.rand(d_inner, device=device) - 4.0).requires_grad_(True)
    case = OpCase("selective_scan", f"B={batch} L={seq_len} D={d_inner} N={d_state} bf16",
                  [u, delta, a_mat, b_mat, c_mat, d_skip, z, dt_bias])

    def call(fn):
        return lambda u, dt, A, B, C, D, z, bias: fn(u, dt, A, B, C, D, z, bias, True)

    for name, fn in (("triton", _triton_fn("selective_scan_triton", device)),
                     ("cuda", _cuda_fn("mamba_ssm.ops.selective_scan_interface",
                                       "selective_scan_fn", device)),
                     ("reference", _ref_fn(selective_scan_ref, batch * seq_len, ref_max))):
        case.impls[name] = call(fn) if callable(fn) else fn
    return case


def conv_case(batch: int, seq_len: int, d_inner: int, width: int, device):
    from mambalab.ops.causal_conv1d.reference import causal_conv1d_ref

    # Both models now feed the conv the same layout: x a (B, D, L) view of the (2D, B*L) in_proj
    # product, unit stride along L (the reference gets it too). x_cl, a slice of a channel-last
    # (B, L, 2D) in_proj output, is what mambalab's Triton mixer took before 2026-11-28's second
    # session; it stays as an input so that the case's inputs (and saved JSON) keep their shape.
    x_cl = _randn(batch, seq_len, 2 * d_inner, device=device)
    x_l = _randn(2 * d_inner, batch * seq_len, device=device)[:d_inner].view(
        d_inner, batch, seq_len).permute(1, 0, 2)
    weight = _randn(d_inner, width, device=device, dtype=torch.float32, scale=0.5)
    bias = _randn(d_inner, device=device, dtype=torch.float32, scale=0.1)
    case = OpCase("causal_conv1d", f"B={batch} L={seq_len} D={d_inner} W={width} bf16",
                  [x_cl, x_l, weight, bias])

    def call(fn, channel_last: bool):
        if channel_last:
            return lambda x_cl, x_l, w, b: fn(x_cl.transpose(1, 2)[:, :d_inner], w, b,
                                              activation="silu")
        return lambda x_cl, x_l, w, b: fn(x_l, w, b, activation="silu")

    for name, fn, channel_last in (
            ("triton", _triton_fn("causal_conv1d_triton", device), False),
            ("cuda", _cuda_fn("causal_conv1d", "causal_conv1d_fn", device), False),
            ("reference", causal_conv1d_ref, False)):
        case.impls[name] = call(fn, channel_last) if callable(fn) else fn
    return case


def rms_norm_case(tokens: int, d_model: int, device):
    from mambalab.ops.rms_norm.reference import rms_norm_ref

    x = _randn(tokens, d_model, device=device)
    residual = _randn(tokens, d_model, device=device, dtype=torch.float32)
    weight = _randn(d_model, device=device, dtype=torch.float32)
    case = OpCase("rms_norm+residual", f"{tokens}x{d_model} bf16, fp32 residual, prenorm",
                  [x, residual, weight])
    triton_fn = _triton_fn("rms_norm_triton", device)
    if callable(triton_fn):
        case.impls["triton"] = lambda x, r, w: triton_fn(x, w, 1e-5, residual=r, prenorm=True)
    else:
        case.impls["triton"] = triton_fn
    cuda_fn = _cuda_fn("mamba_ssm.ops.triton.layer_norm", "layer_norm_fn", device)
    if callable(cuda_fn):
        case.impls["cuda"] = lambda x, r, w: cuda_fn(x, w, None, residual=r, eps=1e-5,
                                                      prenorm=True, residual_in_fp32=True,
                                                      is_rms_norm=True)
    else:
        case.impls["cuda"] = cuda_fn
    case.impls["reference"] = lambda x, r, w: rms_norm_ref(x, w, 1e-5, residual=r, prenorm=True)
    return case


def mamba_inner_case(batch: int, seq_len: int, d_model: int, d_inner: int, d_state: int,
                     dt_rank: int, device, ref_max: int):
    from mambalab.ops.mamba_inner.reference import mamba_inner_ref

    f32 = dict(device=device, dtype=torch.float32)
    # the layout both models produce: (W @ h^T) viewed as (B, 2D, L) with unit stride along L
    # (xz_l); xz, a channel-last in_proj(h), feeds the reference (layout-agnostic, and the input
    # the case has always had)
    xz = _randn(batch, seq_len, 2 * d_inner, device=device)
    xz_l = _randn(2 * d_inner, batch, seq_len, device=device)
    weights = [_randn(d_inner, 1, 4, scale=0.5, **f32), _randn(d_inner, scale=0.1, **f32),
               _randn(dt_rank + 2 * d_state, d_inner, scale=d_inner ** -0.5, **f32),
               _randn(d_inner, dt_rank, scale=dt_rank ** -0.5, **f32),
               _randn(d_model, d_inner, scale=d_inner ** -0.5, **f32)]
    a_mat = -torch.arange(1, d_state + 1, **f32).repeat(d_inner, 1).requires_grad_(True)
    d_skip = torch.ones(d_inner, **f32).requires_grad_(True)
    dt_bias = (torch.rand(d_inner, **f32) - 4.0).requires_grad_(True)
    case = OpCase("mamba_inner (mixer)", f"B={batch} L={seq_len} d_model={d_model} "
                  f"D={d_inner} N={d_state} bf16 autocast",
                  [xz, xz_l, *weights, a_mat, d_skip, dt_bias], autocast=True)
    triton_fn = _triton_fn("mamba_inner_triton", device)
    if callable(triton_fn):
        case.impls["triton"] = lambda xz, xz_l, cw, cb, xw, dw, ow, A, D, db: triton_fn(
            xz_l.permute(1, 0, 2), cw, cb, xw, dw, ow, None, A, D, db)
    else:
        case.impls["triton"] = triton_fn
    cuda_fn = _cuda_fn("mamba_ssm.ops.selective_scan_interface", "mamba_inner_fn", device)
    if callable(cuda_fn):
        case.impls["cuda"] = lambda xz, xz_l, cw, cb, xw, dw, ow, A, D, db: cuda_fn(
            xz_l.permute(1, 0, 2), cw, cb, xw, dw, ow, None, A, None, None, D, db, None, None,
            True)
    else:
        case.impls["cuda"] = cuda_fn
    ref = _ref_fn(mamba_inner_ref, batch * seq_len, ref_max)
    if callable(ref):
        case.impls["reference"] = lambda xz, xz_l, cw, cb, xw, dw, ow, A, D, db: ref(
            xz.transpose(1, 2), cw, cb, xw, dw, ow, None, A, D, db)
    else:
        case.impls["reference"] = ref
    return case


def loss_case(tokens: int, d_model: int, vocab: int, device):
    hidden = _randn(tokens, d_model, device=device)
    weight = _randn(vocab, d_model, device=device, dtype=torch.float32, scale=0.02)
    targets = torch.randint(0, vocab, (tokens,), device=device)
    case = OpCase("linear+cross_entropy", f"{tokens} tokens, vocab {vocab}, bf16 autocast",
                  [hidden, weight], autocast=True)
    from mambalab.ops.cross_entropy.liger import liger_unavailable_reason

    reason = liger_unavailable_reason() or (None if device.type == "cuda" else "liger needs CUDA")
    if reason is None:
        from mambalab.ops.cross_entropy.liger import liger_linear_cross_entropy

        case.impls["liger (fused)"] = lambda h, w: liger_linear_cross_entropy(h, w, targets)
    else:
        case.impls["liger (fused)"] = reason
    from mambalab.ops.triton import unavailable_reason

    reason = unavailable_reason(device) if device.type == "cuda" else "the Triton loss needs CUDA"
    if reason is None:
        from mambalab.ops.cross_entropy.triton_fused import triton_linear_cross_entropy

        case.impls["triton (fused, mambalab)"] = lambda h, w: triton_linear_cross_entropy(
            h, w, targets)
    else:
        case.impls["triton (fused, mambalab)"] = reason
    from mambalab.ops.cross_entropy.chunked import chunked_linear_cross_entropy

    case.impls["chunked (mambalab)"] = lambda h, w: chunked_linear_cross_entropy(h, w, targets)
    # the unfused baseline: bf16 logits under autocast, fp32 softmax inside cross_entropy
    case.impls["logits + F.cross_entropy"] = lambda h, w: F.cross_entropy(
        F.linear(h, w).float(), targets)
    return case
