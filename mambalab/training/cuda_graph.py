"""A training step captured as one CUDA graph and replayed: forward, backward, clipping, the
non-finite verdict and the optimizer's update issued by one host call.

Why: issuing a step of Mamba-130M on the Triton kernels costs the host about 59 ms (24 layers,
~160 kernel launches and the autograd and Python around them; docs/performance.md, ninth
session), about the device's own time at 8 x 2048 on an H100 or H200. There the device waits for
the host; a replayed graph has no per-launch host cost at all.

What a replay needs, and how it is met:
- fixed shapes: the step's micro-batches are copied into the buffers the graph was captured with
  (`StepGraph.matches` says whether a batch fits them; one that does not runs eagerly);
- nothing read back inside the step: the verdict stays on the device and a fused Adam/AdamW skips
  a non-finite update itself (`found_inf`, as in the deferred step of step.py);
- a learning rate the scheduler can change without a new capture: each param group's lr becomes
  a device tensor, which torch's schedulers fill in place (`prepare_optimizer`);
- warm kernels: the capture comes after an eager step of the same shapes (Triton compiles and
  autotunes, cuBLAS picks its algorithms, the allocator grows: none of that may happen while
  capturing).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)

Batch = dict[str, Any]


def unsupported_reason(device: torch.device, num_processes: int, skips_on_device: bool,
                       compiled: bool) -> str | None:
    """Why a step on this set-up cannot be captured, or None if it can."""
    if device.type != "cuda":
        return f"the device is {device.type}, not CUDA"
    if num_processes > 1:
        return (f"{num_processes} processes: the gradients' all-reduce (DDP/FSDP hooks) is not "
                "captured; use one process per run")
    if not skips_on_device:
        return ("the optimizer cannot skip a non-finite step on the device: use a fused "
                "Adam/AdamW (optimizer.fused=true) and bf16 or fp32, not fp16's loss scaler")
    if compiled:
        return "trainer.compile=true: torch.compile has its own CUDA graphs (mode=reduce-overhead)"
    return None


def inner_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer


def prepare_optimizer(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """In place, once: capturable param groups, their lr a device tensor (a float would be baked
    into the graph; torch's LR schedulers fill a tensor lr in place)."""
    for group in inner_optimizer(optimizer).param_groups:
        group["capturable"] = True
        if not torch.is_tensor(group["lr"]):
            group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)


def portable_state_dict(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state_dict with what `prepare_optimizer` changed undone (lr a float,
    capturable off for fused groups, which ignore it), so a checkpoint resumes the same with or
    without graphs."""
    state = optimizer.state_dict()
    groups = []
    for group in state["param_groups"]:
        group = dict(group)
        if torch.is_tensor(group.get("lr")):
            group["lr"] = float(group["lr"])
        if group.get("fused"):
            group["capturable"] = False
        groups.append(group)
    return {**state, "param_groups": groups}


def portable_scheduler_state(scheduler: Any) -> dict[str, Any]:
    """The LR scheduler's state_dict with its lr tensors (copies of a tensor lr) as floats."""
    def plain(value: Any) -> Any:
        if torch.is_tensor(value) and value.numel() == 1:
            return float(value)
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return {k: plain(v) for k, v in scheduler.state_dict().items()}


def batch_key(micro: list[Batch]) -> tuple:
    """What a captured graph is specific to: each micro-batch's keys, shapes and dtypes."""
    return tuple(tuple(sorted((k, (tuple(v.shape), v.dtype) if torch.is_tensor(v) else v)
                              for k, v in mb.items()))
                 for mb in micro)


class StepGraph:
    """One captured step. `body(static_micro) -> outputs` is run once under capture (nothing
    executes then); `replay(micro)` copies a step's micro-batches into the static buffers, replays
    and returns the outputs' tensors, which the next replay overwrites."""

    def __init__(self, body: Callable[[list[Batch]], torch.Tensor], micro: list[Batch],
                 device: torch.device) -> None:
        self.key = batch_key(micro)
        self.device = device
        self.inputs = [{k: (v.to(device, copy=True) if torch.is_tensor(v) else v)
                        for k, v in mb.items()} for mb in micro]
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: the loader's prefetch thread may pin host memory while this one captures
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.outputs = body(self.inputs)
        # A replay allocates nothing (its activations reuse the graph's pool), so the allocator's
        # peak after it no longer shows a step's memory; what the capture allocated at most does.
        self.peak_bytes = torch.cuda.max_memory_allocated(device)

    def matches(self, micro: list[Batch]) -> bool:
        return batch_key(micro) == self.key

    def replay(self, micro: list[Batch]) -> torch.Tensor:
        for static, mb in zip(self.inputs, micro):
            for k, v in mb.items():
                if torch.is_tensor(v):
                    static[k].copy_(v, non_blocking=True)
        self.graph.replay()
        return self.outputs
