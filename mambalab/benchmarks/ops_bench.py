"""``bench.ops=true``: each op's forward and forward+backward time and memory, per implementation.

Times are device times per call after warm-up, with the host's launch work hidden (calls queued
behind a sleeping kernel: timing.time_device); the host's time for one forward+backward, the
device idle at its start, is reported beside them (``host_ms``). CUDA-event intervals around
single calls, used before 2026-12-02, measured the host for ops whose kernels are shorter than
their launches: the Triton conv's row read 1.2 ms for 0.15 ms of kernels. The forward is timed
under no_grad (the kernel alone), forward+backward with a fixed random upstream gradient. Memory
is the peak above what the inputs already hold, during one forward+backward.
"""
from __future__ import annotations

import torch

from mambalab.benchmarks.op_cases import (OpCase, conv_case, loss_case, mamba_inner_case,
                                          rms_norm_case, scan_case)
from mambalab.benchmarks.timing import (GIB, allocated_bytes, is_oom, reset_memory, synchronize,
                                        time_device)


def _outputs(result) -> list[torch.Tensor]:
    items = result if isinstance(result, (tuple, list)) else [result]
    return [t for t in items if isinstance(t, torch.Tensor) and t.requires_grad]


def _time_impl(case: OpCase, fn, device: torch.device, warmup: int, reps: int) -> dict:
    leaves = [t for t in case.inputs if t.requires_grad]
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=case.autocast)

    def forward():
        with amp:
            return fn(*case.inputs)

    def fwd_only():
        with torch.no_grad():
            forward()

    fwd, _ = time_device(fwd_only, device, warmup, reps)
    outs = _outputs(forward())
    grads = [torch.randn_like(o) for o in outs]
    del outs

    def fwd_bwd():
        torch.autograd.grad(_outputs(forward()), leaves, grads, allow_unused=True)

    fwd_bwd()
    synchronize(device)
    base = allocated_bytes(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fwd_bwd()
    synchronize(device)
    peak = (torch.cuda.max_memory_allocated(device) - base) / GIB if device.type == "cuda" \
        else None
    both, host = time_device(fwd_bwd, device, warmup, reps)
    return {"status": "ok", "fwd_ms": fwd, "fwd_bwd_ms": both, "bwd_ms": both - fwd,
            "host_ms": host, "peak_extra_gib": peak}


def bench_case(case: OpCase, device: torch.device, warmup: int, reps: int) -> list[dict]:
    rows = []
    for name, fn in case.impls.items():
        row = {"op": case.op, "shape": case.shape, "implementation": name}
        if not callable(fn):
            row.update(status="skipped", reason=fn)
        else:
            reset_memory(device)
            try:
                row.update(_time_impl(case, fn, device, warmup, reps))
            except Exception as exc:
                row.update(status="oom" if is_oom(exc) else "error",
                           reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
                del exc
        rows.append(row)
    reset_memory(device)
    return rows


def run_op_benchmarks(device: torch.device, batch: int, seq_len: int, d_model: int,
                      d_inner: int, d_state: int, dt_rank: int, ce_tokens: int, vocab_size: int,
                      warmup: int, reps: int, reference_max_tokens: int) -> list[dict]:
    """Every op case at one layer's shape; each case's inputs are freed before the next."""
    builders = [
        lambda: scan_case(batch, seq_len, d_inner, d_state, device, reference_max_tokens),
        lambda: conv_case(batch, seq_len, d_inner, 4, device),
        lambda: rms_norm_case(batch * seq_len, d_model, device),
        lambda: mamba_inner_case(batch, seq_len, d_model, d_inner, d_state, dt_rank, device,
                                 reference_max_tokens),
        lambda: loss_case(ce_tokens, d_model, vocab_size, device),
    ]
    rows: list[dict] = []
    for build in builders:
        case = build()
        rows.extend(bench_case(case, device, warmup, reps))
        del case
    return rows
