"""Time training steps of one implementation at one batch size on random tokens."""
from __future__ import annotations

import time

import torch

from mambalab.benchmarks.implementations import TrainImpl
from mambalab.benchmarks.timing import (autocast, host_issue_ms, is_oom, median, peak_memory_gib,
                                        reset_memory, synchronize)
from mambalab.training.cuda_graph import StepGraph, prepare_optimizer


# a row whose steps take the host at least this share of their device time to issue is marked
# host-bound: there the GPU waits for launches (eager steps of a small batch: the step's ~160
# launches and its Python cost about 60 ms on an H200's host), so its tokens/s measures the host
# and moves with it from run to run (143k-266k at 8 x 2048 in docs/performance.md)
HOST_BOUND_SHARE = 0.9


def is_host_bound(host_ms: float | None, step_ms: float) -> bool | None:
    """Whether issuing a step takes the host about as long as the device takes to run it
    (None where there is no separate device to compare with: host_ms None)."""
    return None if host_ms is None else host_ms >= HOST_BOUND_SHARE * step_ms


def count_parameters(model: torch.nn.Module) -> int:
    """Unique parameters (a tied embedding and head count once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def make_optimizer(model: torch.nn.Module, lr: float, device: torch.device):
    # fused AdamW on CUDA: one kernel per step for all parameters, as a tuned recipe runs
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95),
                             fused=device.type == "cuda")


def random_batch(batch_size: int, seq_len: int, vocab_size: int, device: torch.device,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device="cpu").manual_seed(seed)
    tokens = torch.randint(0, vocab_size, (batch_size, seq_len + 1), generator=g)
    tokens = tokens.to(device)
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()     # (B, L) each


def _train_steps(impl: TrainImpl, batch_size: int, seq_len: int, vocab_size: int,
                 device: torch.device, warmup: int, steps: int, lr: float,
                 mixed_precision: str, seed: int) -> dict:
    torch.manual_seed(seed)
    graph = None
    model = impl.build().to(device).train()
    n_params = count_parameters(model)
    optimizer = make_optimizer(model, lr, device)
    input_ids, targets = random_batch(batch_size, seq_len, vocab_size, device, seed)

    def eager_step() -> torch.Tensor:
        with autocast(device, mixed_precision):
            loss = impl.loss(model, input_ids, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    step = eager_step
    losses = [eager_step() for _ in range(max(warmup, 1) if impl.cuda_graph else warmup)]
    if impl.cuda_graph:
        # after the eager warm-up (kernels compiled, allocator grown): capture the same step,
        # its gradients allocated inside the graph, and replay it from then on
        def body(micro: list[dict]) -> torch.Tensor:
            with autocast(device, mixed_precision):
                loss = impl.loss(model, micro[0]["input_ids"], micro[0]["targets"])
            loss.backward()
            optimizer.step()
            return loss.detach()

        prepare_optimizer(optimizer, device)
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        graph = StepGraph(body, [{"input_ids": input_ids, "targets": targets}], device)

        def graph_step() -> torch.Tensor:
            return graph.replay([{"input_ids": input_ids, "targets": targets}]).clone()

        step = graph_step
        losses += [step() for _ in range(2)]  # the first replays upload the graph
    synchronize(device)
    times_ms = []
    for _ in range(steps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            losses.append(step())
            end.record()
            times_ms.append((start, end))
        else:
            t0 = time.perf_counter()
            losses.append(step())
            times_ms.append((time.perf_counter() - t0) * 1e3)
    synchronize(device)
    host_ms = None
    if device.type == "cuda":
        times_ms = [s.elapsed_time(e) for s, e in times_ms]
        # after the timed steps, so they keep their back-to-back overlap of host and device
        host_ms = host_issue_ms(step, device)
    kernels = model.kernel_report() if hasattr(model, "kernel_report") else None
    first, last = float(losses[0]), float(losses[-1])
    model = optimizer = graph = None  # freed before the next run (the closures hold them too)
    step_ms = median(times_ms)
    tokens = batch_size * seq_len
    return {"status": "ok", "params": n_params, "step_ms": step_ms, "step_ms_all": times_ms,
            "host_ms": host_ms, "host_bound": is_host_bound(host_ms, step_ms),
            "tokens_per_s": tokens / (step_ms / 1e3), "peak_mem_gib": peak_memory_gib(device),
            "first_loss": first, "last_loss": last, "kernels": kernels}


def bench_training(impl: TrainImpl, batch_size: int, seq_len: int, vocab_size: int,
                   device: torch.device, warmup: int, steps: int, lr: float,
                   mixed_precision: str, seed: int) -> dict:
    """One row: tokens/s, step time and peak memory, or the status oom / error with the reason.

    Peak memory is torch.cuda.max_memory_allocated from a clean start: weights, gradients,
    optimizer state and activations together."""
    row = {"implementation": impl.name, "batch_size": batch_size, "seq_len": seq_len,
           "tokens_per_step": batch_size * seq_len}
    reset_memory(device)
    try:
        row.update(_train_steps(impl, batch_size, seq_len, vocab_size, device, warmup, steps, lr,
                                mixed_precision, seed))
    except Exception as exc:  # OOM is a result; anything else is reported, not fatal
        oom = is_oom(exc)
        row.update(status="oom" if oom else "error",
                   reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                   peak_mem_gib=peak_memory_gib(device))
        del exc
    reset_memory(device)
    return row
