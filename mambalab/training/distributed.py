"""Processes: the Accelerator (DDP or FSDP), and `trainer.num_processes=N`, where the app starts
its own workers through torch.distributed.run with the same overrides and the run directory it
already decided (so every rank agrees on it)."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs

log = logging.getLogger(__name__)

# Set in the workers the app starts itself: their parent holds the run-directory lock.
PARENT_HOLDS_LOCK = "MAMBALAB_PARENT_HOLDS_LOCK"


def launched_world_size() -> int:
    """Processes in this job as the launcher (torchrun / accelerate launch) declared them."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


# Residual-block classes that become one FSDP unit each: mambalab's MambaLM, HF's MambaForCausalLM.
FSDP_BLOCKS = ("Block", "MambaBlock")


def build_accelerator(mixed_precision: str, strategy: str, model: torch.nn.Module) -> Accelerator:
    kwargs: dict = {"mixed_precision": mixed_precision, "cpu": not torch.cuda.is_available()}
    if strategy == "fsdp" and launched_world_size() > 1:
        from accelerate.utils import FullyShardedDataParallelPlugin

        blocks = sorted({type(m).__name__ for m in model.modules()} & set(FSDP_BLOCKS))
        if not blocks:
            raise ValueError(f"trainer.strategy=fsdp: the model has none of the block classes "
                             f"{FSDP_BLOCKS} to shard by; use trainer.strategy=ddp")
        # Each residual block is one FSDP unit; original parameter names are kept so that the
        # parameter groups and checkpoints use the model's own names.
        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(
            sharding_strategy="FULL_SHARD", auto_wrap_policy="transformer_based_wrap",
            transformer_cls_names_to_wrap=blocks, use_orig_params=True,
            state_dict_type="FULL_STATE_DICT", sync_module_states=True,
        )
    else:
        kwargs["kwargs_handlers"] = [DistributedDataParallelKwargs(find_unused_parameters=False)]
    return Accelerator(**kwargs)


def end_process_group() -> None:
    """Shut this process's process group down before the interpreter exits.

    Left to the interpreter's exit, gloo's threads can be torn down while still joinable
    ("terminate called without an active exception"): the worker then exits non-zero after a run
    that completed, and its launcher reports a failure."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def launch_workers(num_processes: int, run_dir: Path, task_overrides: list[str]) -> int:
    """Re-run this app as `num_processes` workers on this host; returns their exit code.

    The workers get the same overrides plus `hydra.run.dir=<run_dir>` so they use exactly the
    directory this process chose (and locked), whatever its mode (single run or a sweep job)."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={num_processes}", "-m", "mambalab.train",
        *task_overrides, f"hydra.run.dir={run_dir}", "hydra.output_subdir=null",
    ]
    env = {**os.environ, PARENT_HOLDS_LOCK: str(os.getpid())}
    log.info("starting %d workers: %s", num_processes, " ".join(cmd))
    proc = subprocess.Popen(cmd, env=env)

    def forward(signum: int, frame: object) -> None:
        # torch.distributed.run passes SIGTERM/SIGINT on to the workers, which checkpoint and exit.
        proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class RankFlags:
    """Flags each rank raises on its own (a signal arrived, its time budget is spent), agreed on
    every rank one step late without stopping the host: `exchange(flags)` queues this step's
    all-reduce behind the step's work, copies the sums to pinned memory behind an event, and
    returns the previous step's agreement, waiting only until that one was done (a `.item()` on
    the sums would wait for all the work queued since, and so for every step). All ranks call it
    once a step, so they run the same collectives and act on the same step."""

    def __init__(self, accelerator: Accelerator, n: int) -> None:
        self.accelerator, self.n = accelerator, n
        self._pending: tuple[torch.Tensor, torch.cuda.Event | None] | None = None

    def exchange(self, flags: list[bool]) -> list[bool]:
        """Post this step's flags; returns the previous step's, OR-ed over the ranks (all False
        at the first call)."""
        if len(flags) != self.n:
            raise ValueError(f"RankFlags: expected {self.n} flags, got {len(flags)}")
        previous = [False] * self.n
        if self._pending is not None:
            values, event = self._pending
            if event is not None:
                event.synchronize()
            previous = [v > 0 for v in values.tolist()]
        device = self.accelerator.device
        local = torch.tensor([float(f) for f in flags], device=device)
        summed = self.accelerator.reduce(local, reduction="sum")
        if summed.is_cuda:
            host = torch.empty(self.n, dtype=torch.float32, pin_memory=True)
            host.copy_(summed, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._pending = (host, event)
        else:
            self._pending = (summed, None)
        return previous
