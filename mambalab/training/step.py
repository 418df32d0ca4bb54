"""One optimizer step: gradient accumulation over micro-batches, clipping, the non-finite check,
and, on CUDA out-of-memory, a retry with half the micro-batch and twice the accumulation.

The check need not stop the host. With a fused Adam/AdamW and no fp16 loss scaler, the verdict
(loss and gradient norm finite, agreed across ranks) stays on the device and the optimizer skips
its own update there (torch's `found_inf`, as GradScaler uses it), so the trainer can read a step's
loss, norm and verdict back while the next step already runs: the host queues step k + 1 while the
device still works on step k, instead of waiting for it at every step. Other optimizers read the
verdict back at once and step only if it is finite.
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator

from mambalab.training.cuda_graph import StepGraph, batch_key, inner_optimizer, prepare_optimizer

log = logging.getLogger(__name__)


@dataclass
class StepResult:
    loss: float  # mean loss of the step on this rank (NaN if non-finite)
    grad_norm: float  # global norm before clipping (NaN/Inf if non-finite)
    finite: bool  # agreed across ranks: the update was applied only if True


class PendingStep:
    """An optimizer step whose update was already applied, or skipped, on the device. `result()`
    reads its loss, gradient norm and verdict back (the first call waits for the device to have
    got that far; later calls return the same result)."""

    def __init__(self, step: int, values: torch.Tensor) -> None:
        """values: (3,) fp32, the loss, the gradient norm and 1.0 if the update was skipped."""
        self.step = step
        self._result: StepResult | None = None
        self._event = None
        if values.is_cuda:
            # Copied out now, in stream order: a plain read later would queue its copy behind
            # whatever was queued since (the next step's forward and backward) and wait for it.
            self._values = torch.empty(3, dtype=torch.float32, pin_memory=True)
            self._values.copy_(values, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._values = values

    def result(self) -> StepResult:
        if self._result is None:
            if self._event is not None:
                self._event.synchronize()  # waits for this step's update only
            loss, grad_norm, skipped = self._values.tolist()
            self._result = StepResult(loss=loss, grad_norm=grad_norm, finite=skipped == 0.0)
            self._values = self._event = None
        return self._result


def _batch_size(batch: dict[str, Any]) -> int:
    return next(iter(v for v in batch.values() if torch.is_tensor(v))).shape[0]


def _split(batch: dict[str, Any], pieces: int) -> list[dict[str, Any]]:
    """Cut a batch's tensors (B, L) into `pieces` micro-batches along B (at most B of them)."""
    size = _batch_size(batch)
    chunk = math.ceil(size / min(pieces, size))
    return [{k: (v[i:i + chunk] if torch.is_tensor(v) else v) for k, v in batch.items()}
            for i in range(0, size, chunk)]


def _oom_at_one_sequence(size: int) -> torch.cuda.OutOfMemoryError:
    return torch.cuda.OutOfMemoryError(
        f"out of memory even with a micro-batch of 1 sequence (batch {size}); lower data.seq_len, "
        "use model.gradient_checkpointing=true, or let the Triton mixer keep less for the "
        "backward: MAMBALAB_MIXER_CONFIG='{\"keep_conv_out\": false, \"keep_delta\": false, "
        "\"keep_y\": false}' (3 x d_inner x seq_len bf16 values fewer a layer and sequence)")


def skips_on_device(optimizer: torch.optim.Optimizer, scaler: Any) -> bool:
    """Whether `optimizer` can skip a non-finite step by itself, from a device flag: torch's fused
    Adam and AdamW take `found_inf`. An fp16 scaler does its own skipping, so not with one."""
    inner = inner_optimizer(optimizer)
    return (scaler is None and isinstance(inner, (torch.optim.Adam, torch.optim.AdamW))
            and bool(inner.defaults.get("fused")))


class Stepper:
    """Runs optimizer steps for the trainer: `accumulate` (forward and backward of a step's
    micro-batches) then `update` (clip, verdict, optimizer), or both at once with `run`.
    `micro_splits` (1, 2, 4, ...) grows on OOM retries and is checkpointed, so a resumed run keeps
    the micro-batch that fit."""

    def __init__(self, accelerator: Accelerator, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, grad_clip: float | None, oom_retry: bool,
                 defer: bool = False, cuda_graphs: bool = False) -> None:
        """defer: let the optimizer skip a bad step on the device where it can (`deferred`).
        cuda_graphs: capture the step as a CUDA graph and replay it (cuda_graph.py; the caller
        checks `cuda_graph.unsupported_reason` first); implies `deferred`."""
        self.accelerator = accelerator
        self.model = model
        self.optimizer = optimizer
        self.grad_clip = grad_clip
        self.micro_splits = 1
        # With several processes the other ranks would be waiting inside the backward's gradient
        # all-reduce while this one retried: there the split is found before training (`probe`).
        self.retry_in_step = oom_retry and accelerator.num_processes == 1
        can_skip = skips_on_device(optimizer, accelerator.scaler)
        self.cuda_graphs = cuda_graphs and can_skip
        self.deferred = (defer or cuda_graphs) and can_skip
        self._loss: torch.Tensor | None = None
        self._graph: StepGraph | None = None
        self._warm_key: tuple | None = None  # the shapes of the last eager step: safe to capture
        self._replayed: torch.Tensor | None = None  # a replayed step's (3,) values
        self._grads_stale = False

    def _forward_backward(self, batches: list[dict[str, Any]], inject_nan: bool,
                          split: bool = True) -> torch.Tensor:
        """split=False: `batches` are the micro-batches already (the graph's buffers)."""
        micro = [m for b in batches for m in _split(b, self.micro_splits)] if split else batches
        device = self.accelerator.device
        total = torch.zeros((), device=device)
        for i, mb in enumerate(micro):
            last = i == len(micro) - 1
            # Gradients are all-reduced only on the last micro-batch (DDP no_sync before it).
            sync = contextlib.nullcontext() if last else self.accelerator.no_sync(self.model)
            with sync:
                out = self.model(
                    mb["input_ids"].to(device, non_blocking=True),        # (b, L)
                    targets=mb["targets"].to(device, non_blocking=True),  # (b, L)
                    doc_starts=(mb["doc_starts"].to(device, non_blocking=True)
                                if mb.get("doc_starts") is not None else None),
                )
                # Each micro-batch's mean weighted by its share of the sequences: the step's loss
                # is the mean over the whole step's batch whatever the split.
                loss = out.loss * (mb["input_ids"].shape[0] / sum(b["input_ids"].shape[0] for b in batches))
                if inject_nan:
                    loss = loss * float("nan")
                self.accelerator.backward(loss)
            total += loss.detach().float()
        return total

    def accumulate(self, batches: list[dict[str, Any]], inject_nan: bool = False) -> None:
        """Forward and backward over the step's batches; the gradients wait for `update`. With
        cuda_graphs a captured step of the same shapes is replayed instead (the update too)."""
        if self.cuda_graphs and not inject_nan:
            micro = [m for b in batches for m in _split(b, self.micro_splits)]
            if self._graph is None and self._warm_key == batch_key(micro):
                self._capture(micro)
            if self._graph is not None and self._graph.matches(micro):
                self._replayed = self._graph.replay(micro)
                return
            self._warm_key = batch_key(micro)
        if self._grads_stale:  # .grad are the graph's buffers: a backward would add to them
            self.optimizer.zero_grad(set_to_none=True)
            self._grads_stale = False
        while True:
            try:
                self._loss = self._forward_backward(batches, inject_nan)
                return
            except torch.cuda.OutOfMemoryError as e:
                if not self.retry_in_step:
                    raise
                largest = max(_batch_size(b) for b in batches)
                if self.micro_splits >= largest:  # already one sequence a micro-batch
                    raise _oom_at_one_sequence(largest) from e
                self.optimizer.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
                self.micro_splits *= 2
                self._warm_key = None
                log.warning("CUDA out of memory: retrying the step with the micro-batch split in %d "
                            "(accumulation x%d)", self.micro_splits, self.micro_splits)

    def _capture(self, micro: list[dict[str, Any]]) -> None:
        """Capture one step of these micro-batches' shapes (it runs at the first replay). On any
        failure, train on without graphs, saying why."""
        device = self.accelerator.device
        try:
            prepare_optimizer(self.optimizer, device)
            # fused Adam ignores capturable; without this, torch warns at every eager step
            inner_optimizer(self.optimizer)._warned_capturable_if_run_uncaptured = True
            self.optimizer.zero_grad(set_to_none=True)  # the backward allocates them in the graph
            torch.cuda.empty_cache()  # the eager step's cached blocks: the graph has its own pool
            self._graph = StepGraph(self._graph_body, micro, device)
            # the capture bound each .grad to a buffer of the graph, and replays do not rebind
            # them: until an eager step clears them they hold the last replay's gradients
            self._grads_stale = True
            log.info("trainer.cuda_graphs: captured the step (%d micro-batch(es) of %s)",
                     len(micro), tuple(micro[0]["input_ids"].shape))
        except Exception as exc:  # noqa: BLE001 - any capture failure falls back the same way
            self._graph, self.cuda_graphs = None, False
            self.optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            log.warning("trainer.cuda_graphs: capturing the step failed (%s: %s); training on "
                        "without CUDA graphs", type(exc).__name__, str(exc).splitlines()[0][:300])

    def _graph_body(self, micro: list[dict[str, Any]]) -> torch.Tensor:
        """What the graph holds: a whole step, with the verdict and the update on the device."""
        loss = self._forward_backward(micro, False, split=False)
        values = self._verdict(loss)
        self._step_on_device(values[2])
        return values

    def graph_peak_bytes(self) -> int:
        """The captured step's peak memory (0 without a graph): what each replay holds."""
        return getattr(self._graph, "peak_bytes", 0)

    def drop_graph(self, free_memory: bool = False) -> None:
        """Forget the captured step: the next step runs eagerly and the one after captures again.
        After a non-finite step (so that what the host decides per call is decided again, e.g. the
        scan's fp16 states after an overflow), and with free_memory between steps, before
        evaluation or sampling, which then get the memory the graph's pool held (a step's
        activations and its gradient buffers)."""
        if self._graph is None:
            return
        self._graph, self._warm_key = None, None
        if free_memory:  # only between steps: the gradients are the graph's buffers or None
            self.optimizer.zero_grad(set_to_none=True)
            self._grads_stale = False
            torch.cuda.empty_cache()

    def probe(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> int:
        """The split (from `micro_splits` up) at which one micro-batch of `batch` runs forward and
        backward on this process without running out of memory; twice the batch size if even one
        sequence does not fit (a rank that raised here would leave the others waiting in
        `agree_splits`, which raises on every rank alike). `model` must be the unwrapped module:
        no collectives. The gradients are discarded; `micro_splits` is not changed."""
        size, splits = _batch_size(batch), self.micro_splits
        try:
            while splits <= size:
                try:
                    micro = _split(batch, splits)[0]  # the largest micro-batch of that split
                    model(micro["input_ids"], targets=micro["targets"],
                          doc_starts=micro.get("doc_starts")).loss.backward()
                    return splits
                except torch.cuda.OutOfMemoryError:
                    self.optimizer.zero_grad(set_to_none=True)
                    torch.cuda.empty_cache()
                    splits *= 2
            return 2 * size
        finally:
            self.optimizer.zero_grad(set_to_none=True)

    def agree_splits(self, local: int, batch_size: int) -> int:
        """Every rank's `probe` result -> the largest, which fits on all of them; becomes
        `micro_splits`. Raises on every rank if one sequence does not fit on some rank."""
        found = torch.tensor([local], dtype=torch.int64, device=self.accelerator.device)
        agreed = int(self.accelerator.gather(found).max())
        if agreed > batch_size:
            raise _oom_at_one_sequence(batch_size)
        self.micro_splits = agreed
        return agreed

    def _verdict(self, loss: torch.Tensor) -> torch.Tensor:
        """Clip; (3,) fp32 on the device: the loss, the gradient norm before clipping, and 1.0 if
        the step is to be skipped (agreed across ranks)."""
        max_norm = self.grad_clip if self.grad_clip is not None else float("inf")
        grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), max_norm)
        if grad_norm is None:
            grad_norm = torch.full((), float("nan"), device=loss.device)
        grad_norm = grad_norm.detach().float().reshape(()).to(loss.device)
        scaler = self.accelerator.scaler
        # With fp16 an Inf gradient is the scaler's business (it skips the update and lowers the
        # scale); only a non-finite loss counts as a bad step there.
        bad = ~torch.isfinite(loss) if scaler is not None else ~(torch.isfinite(loss) & torch.isfinite(grad_norm))
        bad = self.accelerator.reduce(bad.float().reshape(1), reduction="sum")  # (1,): ranks agree
        skipped = (bad > 0).float().reshape(())  # 1.0: skip, as torch's found_inf wants it
        return torch.stack([loss.reshape(()), grad_norm, skipped])

    def _step_on_device(self, skipped: torch.Tensor) -> None:
        inner = inner_optimizer(self.optimizer)
        inner.found_inf = skipped
        try:
            self.optimizer.step()
        finally:
            del inner.found_inf

    def update(self, step: int) -> PendingStep:
        """Clip, decide whether the step is finite (on every rank alike), apply or skip the update,
        clear the gradients. With `deferred` nothing here waits for the device. After a replay
        the graph did all of that: only its result is taken."""
        if self._replayed is not None:
            values, self._replayed = self._replayed, None
            return PendingStep(step, values)  # copied out now: the next replay overwrites it
        if self._loss is None:
            raise RuntimeError("Stepper.update() before accumulate(): no gradients to apply")
        loss, self._loss = self._loss, None
        values = self._verdict(loss)
        pending = PendingStep(step, values)
        scaler = self.accelerator.scaler
        if self.deferred:
            self._step_on_device(values[2])
        elif pending.result().finite:  # reads the verdict back: waits for the device
            self.optimizer.step()
        elif scaler is not None:
            scaler.update()  # clears the unscaled state clip_grad_norm_ left on the optimizer
        self.optimizer.zero_grad(set_to_none=True)
        return pending

    def run(self, batches: list[dict[str, Any]], inject_nan: bool = False, step: int = 0) -> StepResult:
        """accumulate + update, read back at once."""
        self.accumulate(batches, inject_nan)
        return self.update(step).result()
