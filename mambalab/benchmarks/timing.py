"""Timing and memory helpers shared by the training and op benchmarks.

On CUDA every interval is measured with CUDA events (device time, the queue kept full); on the CPU
with a wall clock. Figures are medians over the timed repetitions, after warm-up.
"""
from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

import torch

GIB = 1024 ** 3


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_repeated(fn: Callable[[], object], device: torch.device, warmup: int,
                  reps: int) -> list[float]:
    """Run ``fn`` warmup + reps times; return the reps' durations in milliseconds."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    if device.type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(reps)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        synchronize(device)
        return [start.elapsed_time(end) for start, end in events]
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def reset_memory(device: torch.device) -> None:
    """Free what earlier runs left and restart the peak counter."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / GIB


def allocated_bytes(device: torch.device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def autocast(device: torch.device, mixed_precision: str):
    """bf16 autocast for ``mixed_precision=bf16``; a no-op context for ``no``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed_precision == "bf16")


def time_device(fn: Callable[[], object], device: torch.device, warmup: int,
                reps: int) -> tuple[float, float]:
    """(device ms, host ms) per call of ``fn``. The device time is that of ``reps`` calls queued
    behind a sleeping kernel long enough to cover issuing them, so that it is the kernels' time
    and the gaps between them when the host is not the limit; the host time is what issuing one
    call takes. An op whose launches cost more host time than its kernels take (on an H200 the
    Triton conv's forward+backward issued in 0.6-1.6 ms and ran in 0.15) shows its kernels' time
    here, where a CUDA-event interval around one call shows the host's (time_repeated). (If an op
    is host-bound and its ``reps`` calls' launches overflow the launch queue, the device time
    includes the gaps the host leaves after the sleep; host_ms above device_ms says which.) On a
    CPU both are the wall time of one call (median)."""
    if device.type != "cuda" or not hasattr(torch.cuda, "_sleep"):
        wall = median(time_repeated(fn, device, warmup, reps))
        return wall, wall
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize(device)
    # the host's time per call, the device kept busy so that no launch waits for it; over a few
    # calls only, so that their launches stay well inside the device's launch queue (a full
    # queue would make the host wait for the sleeping device)
    n_host = min(reps, 3)
    torch.cuda._sleep(int(2e6 * 200))  # about 200 ms at 2 GHz
    t0 = time.perf_counter()
    for _ in range(n_host):
        fn()
    host_ms = (time.perf_counter() - t0) * 1e3 / n_host
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    # sleep through twice the host's issue time of all reps (cycles at up to 2 GHz)
    torch.cuda._sleep(int(2e6 * max(2 * host_ms * reps, 1.0)))
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize(device)
    return start.elapsed_time(end) / reps, host_ms

