"""The training loop. It reads as: set up, resume, then step and run the hooks until done.

The work lives in components: Stepper (accumulation, clipping, OOM retry), NonFiniteGuard,
Checkpointer + RunDir (atomic checkpoints, lock, summary), hooks (log, evaluate, checkpoint,
sample), loggers, StopRequest (SIGTERM/SIGINT), Throughput (tokens/s, MFU).
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mambalab.config import ConfigError, TrainerConfig
from mambalab.training import resume as ckpt_io
from mambalab.training.checkpointer import Checkpointer, CheckpointError
from mambalab.training.cuda_graph import unsupported_reason
from mambalab.training.distributed import RankFlags, build_accelerator
from mambalab.training.evaluation import evaluate
from mambalab.training.hooks import CheckpointHook, EvalHook, LogHook, LossWindow, SampleHook
from mambalab.training.loggers import JsonlLogger, Logger
from mambalab.training.metrics import Throughput, memory_gib, peak_flops_per_device
from mambalab.training.nan_guard import NonFiniteGuard
from mambalab.training.progress import ProgressBar
from mambalab.training.run_dir import RunDir
from mambalab.training.signals import StopRequest
from mambalab.training.state import TrainState
from mambalab.training.step import PendingStep, Stepper, skips_on_device

log = logging.getLogger(__name__)


class TrainingInterrupted(Exception):
    """SIGTERM/SIGINT or trainer.interrupt_at_step: a checkpoint was saved, the run can resume."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(f"interrupted at step {step} ({reason}); checkpoint saved: re-run the same "
                         "command to resume")
        self.step, self.reason = step, reason


class Trainer:
    def __init__(self, *, model: torch.nn.Module, data: Any,
                 optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler],
                 loggers: list[Logger], config: TrainerConfig, run_dir: RunDir, seed: int,
                 tokenizer: Any = None, resolved_config: dict[str, Any] | None = None) -> None:
        """optimizer: called as optimizer(model=...); scheduler: scheduler(optimizer=, total_steps=)."""
        self.raw_model, self.data = model, data
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.loggers = loggers if any(isinstance(lg, JsonlLogger) for lg in loggers) else [JsonlLogger(), *loggers]
        self.config, self.run_dir, self.seed = config, run_dir, seed
        self.tokenizer, self.resolved_config = tokenizer, resolved_config or {}
        self.state = TrainState()
        self.stop = StopRequest()
        self.last_train: dict[str, Any] = {}
        self.stopped_by: str | None = None  # completed runs: "total_steps" or "max_time_s"

    # --- set-up ---------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.config
        self.accelerator = acc = build_accelerator(cfg.mixed_precision, cfg.strategy, self.raw_model)
        if cfg.cpu_threads is not None and acc.device.type == "cpu":
            torch.set_num_threads(cfg.cpu_threads)
        self.rank, self.world_size, self.device = acc.process_index, acc.num_processes, acc.device
        self.data.prepare()
        self.loader = self.data.train_loader(rank=self.rank, world_size=self.world_size, seed=self.seed)
        self.accum, self.tokens_per_step, self.total_steps = self._plan()
        model = self.raw_model.to(self.device)
        n_params = sum(p.numel() for p in model.parameters())  # before FSDP shards them
        optimizer = self.optimizer_factory(model=model)
        self.scheduler = self.scheduler_factory(optimizer=optimizer, total_steps=self.total_steps)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        if cfg.compile:
            self.model = torch.compile(self.model)
        self.unwrapped_model = acc.unwrap_model(self.model)
        graphs = cfg.cuda_graphs != "false"
        if graphs:
            reason = unsupported_reason(self.device, self.world_size,
                                        skips_on_device(self.optimizer, acc.scaler), cfg.compile)
            if reason is not None:
                graphs = False
                if self.rank == 0 and cfg.cuda_graphs == "true":
                    log.warning("trainer.cuda_graphs=true but the step cannot be captured here: "
                                "%s. Training without CUDA graphs.", reason)
                elif self.rank == 0 and self.device.type == "cuda":
                    log.info("trainer.cuda_graphs=auto: off (%s)", reason)
        self.stepper = Stepper(acc, self.model, self.optimizer, cfg.grad_clip, cfg.oom_retry,
                               defer=cfg.overlap_steps, cuda_graphs=graphs)
        self.guard = NonFiniteGuard(cfg.max_bad_steps)
        self._pending: PendingStep | None = None  # the last step, not yet read back
        self._rank_flags: RankFlags | None = None  # several processes: stop/budget agreement
        self.checkpointer = Checkpointer(self.run_dir.checkpoints, self.rank, self.world_size,
                                         cfg.keep_last, barrier=acc.wait_for_everyone)
        self._last_saved: tuple[int, Path] | None = None
        peak = cfg.peak_flops or peak_flops_per_device(self.device, cfg.mixed_precision)
        self.throughput = Throughput(6.0 * n_params, peak * self.world_size if peak else None)
        self.window = LossWindow()
        self.hooks = [
            LogHook(cfg.log_every),
            EvalHook(cfg.eval_every, cfg.eval_at_end, cfg.eval_split, cfg.eval_max_batches),
            SampleHook(cfg.sample_every, cfg.sample_prompt, cfg.sample_tokens,
                       self.tokenizer if getattr(self.data, "task", "lm") == "lm" else None),
            CheckpointHook(cfg.checkpoint_every),
        ]
        kernels = getattr(self.unwrapped_model, "kernel_report", lambda: {})()
        if self.rank == 0:
            log.info("model: %s parameters; kernels: %s", f"{n_params:,}", kernels or "n/a")
            log.info("%d processes x batch %d x seq %d x accumulation %d = %s tokens per step; "
                     "%d steps", self.world_size, self.data.batch_size, self.data.seq_len, self.accum,
                     f"{self.tokens_per_step:,}", self.total_steps)
        self.info = {"parameters": n_params, "kernels": kernels, "world_size": self.world_size,
                     "grad_accum_steps": self.accum, "tokens_per_step": self.tokens_per_step,
                     "total_steps": self.total_steps, "peak_flops_per_device": peak}

    def _plan(self) -> tuple[int, int, int]:
        """Gradient accumulation, tokens per optimizer step, and the step to stop at."""
        cfg = self.config
        micro_tokens = self.data.batch_size * self.data.seq_len
        if cfg.tokens_per_step is not None:
            per_pass = micro_tokens * self.world_size
            if cfg.tokens_per_step % per_pass:
                raise ConfigError(
                    f"trainer.tokens_per_step={cfg.tokens_per_step} is not a multiple of data.batch_size "
                    f"x data.seq_len x processes = {self.data.batch_size} x {self.data.seq_len} x "
                    f"{self.world_size} = {per_pass}; pick a multiple of {per_pass}")
            accum = cfg.tokens_per_step // per_pass
        else:
            accum = cfg.grad_accum_steps
        tokens_per_step = accum * micro_tokens * self.world_size
        limits = []
        if cfg.max_steps is not None:
            limits.append(cfg.max_steps)
        if cfg.max_tokens is not None:
            limits.append(math.ceil(cfg.max_tokens / tokens_per_step))
        if cfg.epochs is not None:
            limits.append(math.ceil(cfg.epochs * self.loader.batches_per_epoch / accum))
        return accum, tokens_per_step, max(1, min(limits))

    # --- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, step: int) -> Path:
        self._settle()  # the guard's count in the checkpoint includes every step applied
        if self._last_saved is not None and self._last_saved[0] == step:
            return self._last_saved[1]
        self.state.micro_splits = self.stepper.micro_splits
        self.state.guard = self.guard.state_dict()
        self.state.wall_time_s = self._wall_time()
        folder = ckpt_io.save(self, step)
        self._last_saved = (step, folder)
        if self.rank == 0:
            self.run_dir.update_summary(**self._summary("running"))
        return folder

    def _resume(self) -> None:
        if self.config.resume == "false":
            return
        found = self.checkpointer.load_latest(lambda folder: ckpt_io.read(self, folder))
        if found is None:
            complete = [f.name for f in self.checkpointer.step_folders() if (f / "COMPLETE").exists()]
            if complete:  # never train over checkpoints silently: they may be all that is left
                raise CheckpointError(
                    f"{self.run_dir.checkpoints} holds complete checkpoints ({', '.join(complete)}) "
                    "but none can be resumed (reasons above); fix that, or start afresh with "
                    "trainer.resume=false")
            if self.config.resume == "true":
                raise CheckpointError(f"trainer.resume=true but {self.run_dir.checkpoints} holds no "
                                      "complete checkpoint; use trainer.resume=auto to start fresh")
            return
        folder, loaded = found
        ckpt_io.apply(self, loaded)
        self.stepper.micro_splits = self.state.micro_splits
        self.guard.load_state_dict(self.state.guard)
        self._last_saved = (self.state.step, folder)
        if self.rank == 0:
            log.info("resumed from %s (step %d, %s tokens)", folder, self.state.step, f"{self.state.tokens:,}")

    def _fit_micro_batch(self) -> None:
        """trainer.oom_retry with several processes: before training, each rank tries one
        micro-batch alone (zeros of the batch's shape), halving it until it fits, and all ranks
        take the split that fits everywhere. (One process retries inside the step instead.)"""
        cfg = self.config
        if not cfg.oom_retry or self.world_size == 1:
            return
        if cfg.strategy == "fsdp":
            if self.rank == 0:
                log.warning("trainer.oom_retry does nothing under FSDP with several processes (its "
                            "forward gathers parameters from every rank); an out-of-memory stops "
                            "the run: lower data.batch_size instead")
            return
        shape = (self.data.batch_size, self.data.seq_len)
        batch = {"input_ids": torch.zeros(shape, dtype=torch.long, device=self.device),
                 "targets": torch.zeros(shape, dtype=torch.long, device=self.device)}
        if getattr(self.data, "doc_boundaries", False):
            starts = torch.zeros(shape, dtype=torch.bool, device=self.device)
            starts[:, 0] = True
            batch["doc_starts"] = starts
        before = self.stepper.micro_splits
        local = self.stepper.probe(self.unwrapped_model, batch)
        agreed = self.stepper.agree_splits(local, self.data.batch_size)
        if self.rank == 0 and agreed != before:
            log.warning("out of memory at %d sequences a micro-batch on some rank: splitting each "
                        "batch in %d (accumulation x%d) on every rank", self.data.batch_size // before,
                        agreed, agreed)
        elif self.rank == 0:
            log.info("trainer.oom_retry: a micro-batch of %d sequences fits on all %d processes",
                     -(-self.data.batch_size // agreed), self.world_size)

    # --- the loop -------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to the end; returns summary.json's content. Raises TrainingInterrupted after a
        SIGTERM/SIGINT checkpoint, NonFiniteLossError after max_bad_steps, or what failed."""
        self._setup()
        self._resume()
        self._fit_micro_batch()
        self._attempt_start, self._wall_base = time.perf_counter(), self.state.wall_time_s
        self.epoch = getattr(self.loader, "epoch", 0)
        if self.rank == 0:
            for lg in self.loggers:
                lg.start(self.run_dir.path, self.resolved_config, self.state.step)
            self.run_dir.update_summary(**self._summary("running"))
        self.progress = ProgressBar(self.total_steps, self.state.step,
                                    self.config.progress_bar and self.rank == 0)
        self.stop.install()
        status, error, interrupted_by = "failed", None, None
        try:
            self._train()
            status = "completed"
        except TrainingInterrupted as exc:
            status, interrupted_by = "interrupted", exc.reason
            raise
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.stop.uninstall()
            self.progress.close()
            getattr(self.loader, "close", lambda: None)()  # the loader's prefetch thread
            if self.rank == 0:
                self.run_dir.update_summary(**self._summary(status), error=error,
                                            interrupted_by=interrupted_by)
                for lg in self.loggers:
                    try:
                        lg.finish(status)
                    except Exception as exc:  # a logger must not hide the run's own error
                        log.warning("logger %s failed to finish: %s", type(lg).__name__, exc)
        return self.run_dir.read_summary() or {}

    def _train(self) -> None:
        cfg = self.config
        batches = iter(self.loader)
        self.model.train()
        self.throughput.restart()  # set-up and resume are not training time
        while self.state.step < self.total_steps:
            step = self.state.step + 1
            started = time.perf_counter()
            micro = [next(batches) for _ in range(self.accum)]
            self.stepper.accumulate(micro, inject_nan=step in cfg.debug_inject_nan_at_steps)
            # With trainer.overlap_steps the previous step is read back only now, with this
            # step's forward and backward queued behind it (otherwise `update` already did).
            self._settle()
            self._pending = self.stepper.update(step)
            self.state.step = step
            self.state.tokens += self.tokens_per_step
            self.epoch = getattr(self.loader, "epoch", 0)
            self.scheduler.step()
            # The host is at most one step ahead of the device (a step is read back in `update`,
            # or during the next one), so over a run this is the device's time per step.
            self.state.train_time_s += time.perf_counter() - started
            self.throughput.add(self.tokens_per_step)
            signal_any, over_time = self._agree()
            if step < self.total_steps and over_time:
                self.stopped_by = "max_time_s"
                if self.rank == 0:
                    log.info("step %d: %.1f s of training reached trainer.max_time_s=%g; ending the "
                             "run here (evaluation and checkpoint as at a normal end)", step,
                             self.state.train_time_s, cfg.max_time_s)
            last = step == self.total_steps or self.stopped_by == "max_time_s"
            due = [hook for hook in self.hooks if hook.due(step, last)]
            reason = self._stop_reason(step, signal_any)
            if due or reason or last:
                self._settle()  # the hooks and checkpoints see this step's loss and verdict
            if any(isinstance(hook, (EvalHook, SampleHook)) for hook in due):
                # the model runs outside the step: the graph's memory goes back (recaptured after)
                self.stepper.drop_graph(free_memory=True)
            for hook in due:
                hook(self, step)
            if reason and not last:
                self.save_checkpoint(step)
                raise TrainingInterrupted(step, reason)
            if last:
                break
        if self.stopped_by is None:
            self.stopped_by = "total_steps"
        if self._last_saved and self._last_saved[0] < self.state.step:
            self.save_checkpoint(self.state.step)

    def _settle(self) -> None:
        """Read back the step still pending (if any): count it in the non-finite guard and the
        loss window. After max_bad_steps bad steps in a row, checkpoint and raise."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        result = pending.result()
        self.guard.record(result.finite, pending.step)
        if not result.finite:
            self.stepper.drop_graph()
            log.warning("step %d: non-finite loss or gradient (%d in a row): update skipped",
                        pending.step, self.guard.in_a_row)
            if self.guard.exhausted:
                # Settled before the next step's update, so the state is still that after
                # pending.step (state.step): its weights are the last good ones.
                self.save_checkpoint(self.state.step)
                raise self.guard.error(pending.step)
        self.window.add(result.loss, result.grad_norm)

    def _agree(self) -> tuple[bool, bool]:
        """(a stop signal arrived, the training-time budget is spent), the same on every rank, so
        that all run the same end-of-training collectives. With several processes each rank's
        flags are agreed one step late (`RankFlags`: no wait for the device at every step), so a
        signal or the budget ends the run one step later there."""
        budget = self.config.max_time_s
        flags = [self.stop.requested, budget is not None and self.state.train_time_s >= budget]
        if self.world_size == 1:
            return flags[0], flags[1]
        if self._rank_flags is None:
            self._rank_flags = RankFlags(self.accelerator, 2)
        agreed = self._rank_flags.exchange(flags)
        return agreed[0], agreed[1]

    def _stop_reason(self, step: int, signal_any: bool) -> str | None:
        """trainer.interrupt_at_step (the same on every rank: no agreement needed), or a signal
        (on this rank or, with several processes, another)."""
        if step == self.config.interrupt_at_step:
            return "trainer.interrupt_at_step"
        if not signal_any:
            return None
        if self.stop.signum is not None:
            import signal

            return signal.Signals(self.stop.signum).name
        return "a signal on another rank"

    # --- helpers used by the hooks --------------------------------------------------------------
    def evaluate(self, split: str, max_batches: int | None) -> dict[str, float]:
        def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
            return self.accelerator.reduce(t, reduction="sum")
        # FSDP needs its wrapper to gather parameters; otherwise the plain module avoids DDP's
        # forward bookkeeping (accelerate's autocast is on the module itself).
        fsdp = self.config.strategy == "fsdp" and self.world_size > 1
        return evaluate(self.model if fsdp else self.unwrapped_model, self.data, split,
                        max_batches, self.rank, self.world_size, self.device, all_reduce_sum)

    def emit(self, metrics: dict[str, Any], step: int) -> None:
        if metrics.get("split") == "train":
            self.last_train = metrics
        if self.rank != 0:
            return
        for lg in self.loggers:
            lg.log(metrics, step)

    def memory_gib(self) -> float | None:
        return memory_gib(self.device, self.stepper.graph_peak_bytes())

    def _wall_time(self) -> float:
        return self._wall_base + time.perf_counter() - self._attempt_start

    def _summary(self, status: str) -> dict[str, Any]:
        wall = self._wall_time() if hasattr(self, "_attempt_start") else self.state.wall_time_s
        return {
            "status": status, "run_dir": str(self.run_dir.path), "step": self.state.step,
            "total_steps": getattr(self, "total_steps", None), "tokens": self.state.tokens,
            "wall_time_s": round(wall, 2), "tok_per_s": round(self.state.tokens / wall, 1) if wall > 0 else None,
            "skipped_steps": self.guard.total if hasattr(self, "guard") else 0,
            "train_time_s": round(self.state.train_time_s, 2), "max_time_s": self.config.max_time_s,
            "stopped_by": self.stopped_by if status == "completed" else None,
            "final": {"train": self.last_train, "eval": self.state.last_eval},
            "best": {"step": self.state.best_step, "loss": None if math.isinf(self.state.best_loss)
                     else self.state.best_loss, "metrics": self.state.best_metrics},
            **getattr(self, "info", {}),
        }
