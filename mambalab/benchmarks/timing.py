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


def host_issue_ms(fn: Callable[[], object], device: torch.device, reps: int = 3) -> float:
    """The host's time for one call of ``fn`` started with the device idle (median of ``reps``):
    what issuing its work costs the host, plus any wait for the device inside the call. A call
    whose device time is about this long is bound by the host, not the device."""
    times = []
    for _ in range(reps):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    synchronize(device)
    return median(times)


def time_device(fn: Callable[[], object], device: torch.device, warmup: int,
                reps: int) -> tuple[float, float]:
    """(device ms, host ms) per call of ``fn``.

    The device time is that of ``reps`` calls queued behind a sleeping kernel long enough to
    cover issuing them: the kernels' time and the gaps between them when the host is not the
    limit. The host time is what one call takes the host, started with the device idle. An op
    whose launches cost more host time than its kernels take (on an H200 the Triton conv's
    forward+backward issued in 0.6-1.6 ms and ran in 0.15) shows its kernels' time here, where
    a CUDA-event interval around one call shows the host's (time_repeated). Two cases keep host
    gaps in the device time: an op that waits for the device inside a call (a value read back),
    and a host-bound op whose ``reps`` calls overflow the launch queue; host_ms near or above
    device_ms flags both. On a CPU both are the wall time of one call (median)."""
    if device.type != "cuda" or not hasattr(torch.cuda, "_sleep"):
        wall = median(time_repeated(fn, device, warmup, reps))
        return wall, wall
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize(device)
    # the host's time for one call with the device idle at its start (median of 3): what
    # issuing it costs, plus any wait the op makes for the device. Timed behind a sleeping
    # kernel instead, the fused losses took 69-85 ms of host time in the sixth session's ops
    # table: liger-kernel 0.8.5 reads a value back in every forward (target_mask.sum().item()),
    # so it waited for the sleep; mambalab's chunked loss reads nothing back (a full launch
    # queue is the likely reason there, not confirmed).
    host_ms = host_issue_ms(fn, device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(device)
    # sleep through twice the host's issue time of all reps (cycles at up to 2 GHz)
    torch.cuda._sleep(int(2e6 * max(2 * host_ms * reps, 1.0)))
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize(device)
    return start.elapsed_time(end) / reps, host_ms
