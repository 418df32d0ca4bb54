"""``bench.profile=true``: where a training step's GPU time goes, by kernel group.

torch.profiler records a few steps of one configuration; each GPU kernel's self time is put in
one group by its name (first matching rule wins), and the groups and the top kernels are reported
in milliseconds per step and as a share of the step's kernel time.
"""
from __future__ import annotations

import re

import torch

from mambalab.benchmarks.implementations import TrainImpl
from mambalab.benchmarks.timing import autocast, reset_memory, synchronize
from mambalab.benchmarks.train_bench import make_optimizer, random_batch

# (group, pattern on the lower-cased kernel name); order matters: the first match wins.
GROUPS: tuple[tuple[str, str], ...] = (
    ("scan bwd", r"scan_bwd|lanes_bwd|gluon_bwd"),
    ("scan fwd", r"scan_fwd|selective_scan_fwd|scan|lanes_fwd"),
    ("loss", r"cross_entropy|liger|log_softmax|softmax|nll_loss|_chunk_nll"),
    ("norm", r"rms|layer_norm|_norm_fwd|_norm_bwd|_layer_norm"),
    ("conv", r"conv1d|causal_conv|_conv_fwd|_conv_bwd|_conv_rows|_conv_time"),
    ("optimizer", r"adam|multi_tensor|foreach"),
    ("matmuls", r"gemm|cutlass|xmma|cublas|nvjet|sm90_|sm80_|ampere_|wgmma|matmul|splitk|"
                r"aten::mm|aten::bmm|aten::addmm|aten::linear"),
)


def kernel_group(name: str) -> str:
    lowered = name.lower()
    for group, pattern in GROUPS:
        if re.search(pattern, lowered):
            return group
    return "other"


def _self_time_us(event, on_gpu: bool) -> float:
    attrs = ("self_device_time_total", "self_cuda_time_total") if on_gpu else \
        ("self_cpu_time_total",)
    for attr in attrs:
        value = getattr(event, attr, None)
        if value is not None:
            return float(value)
    return 0.0


def _counts(event, on_gpu: bool) -> bool:
    """GPU kernels on a GPU; on the CPU (tests, tiny runs) the aten ops themselves."""
    device_type = str(getattr(event, "device_type", ""))
    if on_gpu:
        return "CUDA" in device_type
    return event.key.startswith("aten::") and "CPU" in device_type


def breakdown(events, steps: int, top: int, on_gpu: bool = True) -> dict:
    """Group kernel self times; events: prof.key_averages(). Times in ms per step."""
    kernels = [(e.key, _self_time_us(e, on_gpu) / 1e3 / steps, e.count // max(steps, 1))
               for e in events if _counts(e, on_gpu) and _self_time_us(e, on_gpu) > 0]
    total = sum(ms for _, ms, _ in kernels)
    groups: dict[str, float] = {}
    for name, ms, _ in kernels:
        groups[kernel_group(name)] = groups.get(kernel_group(name), 0.0) + ms
    kernels.sort(key=lambda k: -k[1])
    share = (lambda ms: ms / total if total else 0.0)  # noqa: E731
    return {
        "kernel_ms_per_step": total,
        "groups": [{"group": g, "ms_per_step": ms, "share": share(ms)}
                   for g, ms in sorted(groups.items(), key=lambda kv: -kv[1])],
        "top_kernels": [{"kernel": n[:120], "group": kernel_group(n), "ms_per_step": ms,
                         "calls_per_step": c, "share": share(ms)}
                        for n, ms, c in kernels[:top]],
    }


def profile_training(impl: TrainImpl, batch_size: int, seq_len: int, vocab_size: int,
                     device: torch.device, warmup: int, steps: int, lr: float,
                     mixed_precision: str, seed: int, top: int = 20,
                     trace_path: str | None = None) -> dict:
    """Profile ``steps`` training steps after ``warmup``; returns the breakdown."""
    from torch.profiler import ProfilerActivity, profile

    reset_memory(device)
    torch.manual_seed(seed)
    model = impl.build().to(device).train()
    optimizer = make_optimizer(model, lr, device)
    input_ids, targets = random_batch(batch_size, seq_len, vocab_size, device, seed)

    def step():
        with autocast(device, mixed_precision):
            loss = impl.loss(model, input_ids, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda"
                                           else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        synchronize(device)
    if trace_path:
        prof.export_chrome_trace(trace_path)
    result = breakdown(prof.key_averages(), steps, top, on_gpu=device.type == "cuda")
    result.update(implementation=impl.name, batch_size=batch_size, seq_len=seq_len, steps=steps,
                  measured="GPU kernel self time" if device.type == "cuda"
                  else "CPU aten op self time")
    if impl.cuda_graph:  # a replay runs the same kernels; the profiler names them from eager steps
        result["note"] = "profiled as eager steps: a CUDA graph replays the same kernels"
    model = optimizer = None  # freed before the next run (the step closure holds them too)
    reset_memory(device)
    return result
