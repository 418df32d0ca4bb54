"""One optimizer step: gradient accumulation over micro-batches, clipping, the non-finite check,
and, on CUDA out-of-memory, a retry with half the micro-batch and twice the accumulation."""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator

log = logging.getLogger(__name__)


@dataclass
class StepResult:
    loss: float  # mean loss of the step on this rank (NaN if non-finite)
    grad_norm: float  # global norm before clipping (NaN/Inf if non-finite)
    finite: bool  # agreed across ranks: the update was applied only if True


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


class Stepper:
    """Runs optimizer steps for the trainer. `micro_splits` (1, 2, 4, ...) grows on OOM retries
    and is checkpointed, so a resumed run keeps the micro-batch that fit."""

    def __init__(self, accelerator: Accelerator, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, grad_clip: float | None, oom_retry: bool) -> None:
        self.accelerator = accelerator
        self.model = model
        self.optimizer = optimizer
        self.grad_clip = grad_clip
        self.oom_retry = oom_retry
        self.micro_splits = 1

    def _forward_backward(self, batches: list[dict[str, Any]], inject_nan: bool) -> torch.Tensor:
        micro = [m for b in batches for m in _split(b, self.micro_splits)]
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

    def run(self, batches: list[dict[str, Any]], inject_nan: bool = False) -> StepResult:
        while True:
            try:
                loss = self._forward_backward(batches, inject_nan)
                break
            except torch.cuda.OutOfMemoryError as e:
                if not self.oom_retry:
                    raise
                largest = max(_batch_size(b) for b in batches)
                if self.micro_splits >= largest:  # already one sequence a micro-batch
                    raise _oom_at_one_sequence(largest) from e
                self.optimizer.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
                self.micro_splits *= 2
                log.warning("CUDA out of memory: retrying the step with the micro-batch split in %d "
                            "(accumulation x%d)", self.micro_splits, self.micro_splits)
        max_norm = self.grad_clip if self.grad_clip is not None else float("inf")
        grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), max_norm)
        grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
        scaler = self.accelerator.scaler
        # With fp16 an Inf gradient is the scaler's business (it skips the update and lowers the
        # scale); only a non-finite loss counts as a bad step there.
        norm_ok = scaler is not None or math.isfinite(grad_norm)
        local_bad = torch.tensor([0.0 if norm_ok and torch.isfinite(loss) else 1.0],
                                 device=self.accelerator.device)
        finite = bool(self.accelerator.reduce(local_bad, reduction="sum").item() == 0)
        if finite:
            self.optimizer.step()
        elif scaler is not None:
            scaler.update()  # clears the unscaled state clip_grad_norm_ left on the optimizer
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(loss=float(loss), grad_norm=grad_norm, finite=finite)
