"""Which implementation runs each op: one table, one resolution function.

``kernels=auto`` on a CUDA device walks ``AUTO_PREFERENCE[op]`` and takes the first
implementation that can run there; on any other device it takes the reference. An explicit
``kernels=cuda|triton|reference`` must run every op, or ``resolve_kernels`` raises with the reason
and the fix. Reorder ``AUTO_PREFERENCE`` (and only it) when benchmarks say another path is faster.
"""
from __future__ import annotations

import functools
import importlib
import os

import torch

OPS: tuple[str, ...] = ("selective_scan", "causal_conv1d", "rms_norm", "mamba_inner")
IMPLS: tuple[str, ...] = ("auto", "triton", "cuda", "reference")
# The order ``auto`` tries on CUDA for each op, fastest first: the one knob to turn after
# benchmarking. Measured on an H100 in one run of `python -m mambalab.bench` (2026-11-28,
# docs/performance.md), forward+backward at Mamba-130M's layer shape: scan cuda 2.28 ms vs triton
# 2.51; conv cuda 0.58 vs triton 0.95; RMSNorm triton 0.40 vs cuda 0.69; the whole model with
# mamba_ssm's mixer (mamba_inner_fn) 171.0k tokens/s vs 158.5k with the Triton mixer. The Triton
# kernels are the fallback when mamba-ssm/causal-conv1d are not installed, and they are what a
# run with document starts or a carried state uses (mambalab.models.lm, mixer.stateful_impl):
# mamba_ssm's Mamba-1 kernels can do neither.
AUTO_PREFERENCE: dict[str, tuple[str, ...]] = {
    "selective_scan": ("cuda", "triton", "reference"),
    "causal_conv1d": ("cuda", "triton", "reference"),
    "rms_norm": ("triton", "cuda", "reference"),
    "mamba_inner": ("cuda", "triton", "reference"),
}
# From this many scan rows (batch x d_inner) ``auto`` takes the Triton mixer even where
# mamba_ssm's runs: its lanes scan (one thread per row) needs many rows to fill the GPU. Measured
# on an H200 in one run of `python -m mambalab.bench` (2026-12-01, fifth session,
# docs/performance.md), Mamba-130M (d_inner 1536): at 8 x 2048 (12,288 rows) the Triton mixer
# 167.4k tokens/s against 159.1k with mamba_ssm's (auto's rule then), at 16 x 2048 224.0k against
# 183.8k (kernels=cuda). Smaller batches were not measured: they keep mamba_ssm's mixer.
AUTO_TRITON_MIXER_MIN_ROWS = 12288


def auto_mixer(kernels: dict[str, str], batch: int, d_inner: int,
               device: torch.device | str) -> dict[str, str]:
    """``kernels`` resolved for ``auto``, with the mixer switched to Triton for a call with at
    least AUTO_TRITON_MIXER_MIN_ROWS scan rows (where Triton runs); the same dict otherwise."""
    if (kernels["mamba_inner"] == "cuda" and batch * d_inner >= AUTO_TRITON_MIXER_MIN_ROWS
            and unavailable_reason("mamba_inner", "triton", torch.device(device)) is None):
        return dict(kernels, mamba_inner="triton")
    return kernels

INSTALL_KERNELS = 'pip install -e ".[kernels]" --no-build-isolation'

# What the cuda implementation of each op imports: (module, attribute) pairs, all needed.
_CUDA_IMPORTS: dict[str, tuple[tuple[str, str], ...]] = {
    "selective_scan": (("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn"),),
    "causal_conv1d": (("causal_conv1d", "causal_conv1d_fn"),),
    "rms_norm": (("mamba_ssm.ops.triton.layer_norm", "layer_norm_fn"),),
    # mamba_inner_fn runs the causal-conv1d CUDA kernel inside, so both packages are needed.
    "mamba_inner": (("mamba_ssm.ops.selective_scan_interface", "mamba_inner_fn"),
                    ("causal_conv1d", "causal_conv1d_fn")),
}


@functools.cache
def _import_error(module: str, attr: str) -> str | None:
    """None if ``module.attr`` imports, else why not (cached: imports are slow and stable)."""
    try:
        obj = getattr(importlib.import_module(module), attr)
    except Exception as exc:  # a broken CUDA build raises OSError/RuntimeError, not only ImportError
        return f"{module}.{attr} does not import ({type(exc).__name__}: {exc})"
    if obj is None:
        return f"{module}.{attr} is None (the package was built without its CUDA extension)"
    return None


def _cuda_reason(op: str, device: torch.device) -> str | None:
    if device.type != "cuda":
        return (f"the cuda kernels run on CUDA devices, and this one is {device.type!r} "
                "(use kernels=auto or kernels=reference)")
    for module, attr in _CUDA_IMPORTS[op]:
        reason = _import_error(module, attr)
        if reason is not None:
            return f"{reason}; install the kernels with: {INSTALL_KERNELS}"
    return None


def _triton_reason(op: str, device: torch.device) -> str | None:
    try:
        triton_ops = importlib.import_module("mambalab.ops.triton")
        reason = triton_ops.unavailable_reason(device)
        if reason is not None:
            return reason
        getattr(triton_ops, f"{op}_triton")
    except Exception as exc:  # the kernel module is written by others and may not exist yet
        return f"mambalab.ops.triton.{op}_triton is unavailable ({type(exc).__name__}: {exc})"
    return None


def unavailable_reason(op: str, impl: str, device: torch.device | str) -> str | None:
    """Why ``impl`` cannot run ``op`` on ``device``, or None when it can."""
    device = torch.device(device)
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; the ops are {OPS}")
    if impl == "reference":
        return None
    if impl == "cuda":
        return _cuda_reason(op, device)
    if impl == "triton":
        return _triton_reason(op, device)
    raise ValueError(f"unknown kernels={impl!r}; choose one of {IMPLS}")


def resolve_op(op: str, requested: str, device: torch.device | str) -> str:
    """The implementation of one op for ``requested`` on ``device``; raises if it cannot run."""
    return resolve_kernels(requested, device)[op]


def resolve_kernels(requested: str, device: torch.device | str) -> dict[str, str]:
    """Map each op to the implementation that runs it: ``{op: "triton"|"cuda"|"reference"}``.

    Raises ValueError naming every op that the explicit choice cannot run, why, and the fix.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    # TRITON_INTERPRET is part of the key: it decides whether Triton runs on the CPU (tests).
    return dict(_resolve_cached(requested, device, os.environ.get("TRITON_INTERPRET")))


@functools.cache
def _resolve_cached(requested: str, device: torch.device,
                    triton_interpret: str | None = None) -> tuple[tuple[str, str], ...]:
    if requested not in IMPLS:
        raise ValueError(f"kernels={requested!r} is not one of {IMPLS}")
    chosen: list[tuple[str, str]] = []
    if requested == "auto":
        for op in OPS:
            order = AUTO_PREFERENCE[op] if device.type == "cuda" else ("reference",)
            impl = next(i for i in order if unavailable_reason(op, i, device) is None)
            chosen.append((op, impl))
        return tuple(chosen)
    failures = [(op, unavailable_reason(op, requested, device)) for op in OPS]
    failures = [(op, why) for op, why in failures if why is not None]
    if failures:
        lines = "\n".join(f"  - {op}: {why}" for op, why in failures)
        raise ValueError(
            f"kernels={requested} cannot run on {device}:\n{lines}\n"
            "Fix: install what is missing, or set model.kernels=auto (it takes the fastest "
            "implementation that runs) or model.kernels=reference.")
    return tuple((op, requested) for op in OPS)
