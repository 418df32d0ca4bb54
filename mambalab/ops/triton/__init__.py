"""Triton kernels for Mamba-1 training: each beside its reference in the op's own folder.

Each kernel module is imported on first use, so that importing mambalab never needs Triton, and a
CPU-only machine runs them under ``TRITON_INTERPRET=1`` (tests only: the interpreter is slow).
"""
from __future__ import annotations

import importlib
import json
import os

import torch

_EXPORTS = {
    "selective_scan_triton": "mambalab.ops.triton.selective_scan",
    "causal_conv1d_triton": "mambalab.ops.triton.causal_conv1d",
    "rms_norm_triton": "mambalab.ops.triton.rms_norm",
    "mamba_inner_triton": "mambalab.ops.triton.mamba_inner",
}


def unavailable_reason(device: torch.device | str | None = None) -> str | None:
    """Why the Triton kernels cannot run on ``device``, or None when they can."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Triton is not installed (pip install triton)"
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        if major < 8:
            return f"the GPU has compute capability {major}.x; the Triton kernels need 8.0 or newer"
        return None
    if os.environ.get("TRITON_INTERPRET") == "1":
        return None
    return "Triton kernels run on CUDA GPUs (or on the CPU under TRITON_INTERPRET=1, for tests)"


def config_from_env(config: dict, var: str) -> None:
    """Update a kernel module's CONFIG from the JSON object in environment variable ``var``
    (benchmarks, A/B runs: ``MAMBALAB_SCAN_CONFIG='{"impl": "tile"}'``); an unknown key or text
    that is not JSON is an error naming the known keys."""
    text = os.environ.get(var)
    if not text:
        return
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{var} is not JSON ({e}): {text!r}") from None
    if not isinstance(overrides, dict):
        raise ValueError(f"{var} must be a JSON object of CONFIG keys, e.g. "
                         f"'{{\"{next(iter(config))}\": ...}}'; got {text!r}")
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(f"{var}: unknown keys {unknown}; known: {sorted(config)}")
    config.update(overrides)


def available(device: torch.device | str | None = None) -> bool:
    return unavailable_reason(device) is None


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
