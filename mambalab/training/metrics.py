"""Throughput, model FLOPs utilisation and memory.

MFU = achieved model FLOP/s / peak FLOP/s of the devices in use. Model FLOPs per token are
6 x the parameter count (forward 2N + backward 4N; the selective scan and the conv add < 1% at
Mamba-130M and are left out, as the usual 6N convention does). Activation-checkpointing recompute is
not counted: MFU measures useful work. The denominator is the datasheet dense peak of the GPU for
the run's precision (H100 SXM bf16: 989.4 TFLOP/s). shared/DESIGN.md's table divides by 790 TFLOP/s
(a measured matmul peak) instead: multiply our MFU by 989.4 / 790 = 1.25 to compare with it.
"""
from __future__ import annotations

import time

import torch

# Dense (no sparsity) peak FLOP/s per device, by a substring of torch.cuda.get_device_name().
# Checked in order: the first match wins, so the more specific names come first.
PEAK_FLOPS: list[tuple[str, dict[str, float]]] = [
    ("H100 PCIe", {"bf16": 756e12, "fp16": 756e12, "no": 51e12}),
    ("H100 NVL", {"bf16": 835e12, "fp16": 835e12, "no": 60e12}),
    ("H100", {"bf16": 989.4e12, "fp16": 989.4e12, "no": 67e12}),  # SXM
    ("H200", {"bf16": 989.4e12, "fp16": 989.4e12, "no": 67e12}),
    ("GH200", {"bf16": 989.4e12, "fp16": 989.4e12, "no": 67e12}),
    ("B200", {"bf16": 2250e12, "fp16": 2250e12, "no": 80e12}),
    ("A100", {"bf16": 312e12, "fp16": 312e12, "no": 19.5e12}),
    ("L40S", {"bf16": 362e12, "fp16": 362e12, "no": 91.6e12}),
    ("A10G", {"bf16": 70e12, "fp16": 70e12, "no": 31.2e12}),
    ("RTX 4090", {"bf16": 165e12, "fp16": 165e12, "no": 82.6e12}),
    ("V100", {"bf16": 0.0, "fp16": 125e12, "no": 15.7e12}),
]


def peak_flops_per_device(device: torch.device, mixed_precision: str) -> float | None:
    """The table's entry for this device, or None (CPU, unknown GPU: MFU is not reported)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_FLOPS:
        if key in name:
            return peaks.get(mixed_precision) or None
    return None


def memory_gib(device: torch.device, at_least_bytes: int = 0) -> float | None:
    """Peak allocated GPU memory since the last call, in GiB (None on CPU). at_least_bytes: a
    floor, the peak of a replayed CUDA graph's step (its replays allocate nothing)."""
    if device.type != "cuda":
        return None
    peak = max(torch.cuda.max_memory_allocated(device), at_least_bytes) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return round(peak, 3)


class Throughput:
    """Tokens per second over the window since the last `read()`, and MFU from it."""

    def __init__(self, flops_per_token: float, peak_flops_total: float | None) -> None:
        self.flops_per_token = flops_per_token
        self.peak = peak_flops_total
        self._t0 = time.perf_counter()
        self._tokens = 0

    def add(self, tokens: int) -> None:
        self._tokens += tokens

    def read(self) -> dict[str, float | None]:
        now = time.perf_counter()
        tok_per_s = self._tokens / max(now - self._t0, 1e-9)
        self._t0, self._tokens = now, 0
        mfu = tok_per_s * self.flops_per_token / self.peak if self.peak else None
        return {"tok_per_s": round(tok_per_s, 1), "mfu": None if mfu is None else round(mfu, 4)}

    def restart(self) -> None:
        """Drop the window (after evaluation or checkpointing, which are not training time)."""
        self._t0, self._tokens = time.perf_counter(), 0
