"""Hooks that decide when they run: logging, evaluation, checkpointing, samples.

Each hook is `due(step, last)` + `__call__(trainer, step)`. The trainer runs them in list order after
every optimizer step; evaluation comes before checkpointing so that an improved validation loss is
checkpointed and marked best at the same step.
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from mambalab.training.trainer import Trainer

log = logging.getLogger(__name__)


def _every(n: int | None, step: int) -> bool:
    return n is not None and n > 0 and step % n == 0


class LogHook:
    def __init__(self, every: int) -> None:
        self.every = every

    def due(self, step: int, last: bool) -> bool:
        return _every(self.every, step) or last

    def __call__(self, trainer: Trainer, step: int) -> None:
        metrics = trainer.window.read(trainer)
        if metrics:
            trainer.emit({"split": "train", **metrics}, step)
            trainer.progress.update(step, metrics.get("loss"), metrics.get("tok_per_s"))


class EvalHook:
    def __init__(self, every: int | None, at_end: bool, split: str, max_batches: int | None) -> None:
        self.every, self.at_end, self.split, self.max_batches = every, at_end, split, max_batches

    def due(self, step: int, last: bool) -> bool:
        return _every(self.every, step) or (last and self.at_end)

    def __call__(self, trainer: Trainer, step: int) -> None:
        metrics = dict(trainer.evaluate(self.split, self.max_batches))
        # `tokens` means tokens trained on everywhere (metrics.jsonl events, summary.json); the
        # number of tokens this evaluation scored is `eval_tokens`, in the events and in the
        # summary's final/best blocks alike.
        if "tokens" in metrics:
            metrics["eval_tokens"] = metrics.pop("tokens")
        trainer.state.last_eval = metrics
        improved = metrics["loss"] < trainer.state.best_loss
        if improved:
            trainer.state.best_loss = metrics["loss"]
            trainer.state.best_step = step
            trainer.state.best_metrics = metrics
        # train_time_s: the x axis of a wall-clock comparison (python -m mambalab.eval.compare).
        event = {"split": self.split, **metrics, "tokens": trainer.state.tokens,
                 "train_time_s": round(trainer.state.train_time_s, 3)}
        trainer.emit(event, step)
        if improved and trainer.config.save_best:
            folder = trainer.save_checkpoint(step)
            trainer.checkpointer.mark_best(folder)
        trainer.throughput.restart()


class CheckpointHook:
    def __init__(self, every: int | None) -> None:
        self.every = every

    def due(self, step: int, last: bool) -> bool:
        return _every(self.every, step) or last

    def __call__(self, trainer: Trainer, step: int) -> None:
        trainer.save_checkpoint(step)
        trainer.throughput.restart()


class SampleHook:
    """Generated text from `sample_prompt`, logged as an event (language-model data only)."""

    def __init__(self, every: int | None, prompt: str, max_new_tokens: int, tokenizer: Any) -> None:
        self.every, self.prompt, self.max_new_tokens, self.tokenizer = every, prompt, max_new_tokens, tokenizer

    def due(self, step: int, last: bool) -> bool:
        return self.tokenizer is not None and _every(self.every, step)

    def __call__(self, trainer: Trainer, step: int) -> None:
        from mambalab.models import generate

        if trainer.rank != 0:
            return
        model = trainer.unwrapped_model
        ids = torch.tensor([self.tokenizer.encode(self.prompt)], dtype=torch.long,
                           device=trainer.device)  # (1, L_prompt)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = generate(model, ids, max_new_tokens=self.max_new_tokens, temperature=1.0,
                           top_k=50, seed=step)
        model.train(was_training)
        text = self.tokenizer.decode(out[0].tolist())
        trainer.emit({"split": "sample", "text": text}, step)
        trainer.throughput.restart()


class LossWindow:
    """Accumulates the train loss and grad norm between log events; read() averages over ranks."""

    def __init__(self) -> None:
        self.loss_sum = 0.0
        self.grad_norm_sum = 0.0
        self.count = 0

    def add(self, loss: float, grad_norm: float) -> None:
        if math.isfinite(loss) and math.isfinite(grad_norm):
            self.loss_sum += loss
            self.grad_norm_sum += grad_norm
            self.count += 1

    def read(self, trainer: Trainer) -> dict[str, Any]:
        packed = torch.tensor([self.loss_sum, self.grad_norm_sum, float(self.count)],
                              dtype=torch.float64, device=trainer.device)  # (3,)
        packed = trainer.accelerator.reduce(packed, reduction="sum")
        loss_sum, grad_sum, count = packed.tolist()
        self.loss_sum = self.grad_norm_sum = 0.0
        self.count = 0
        out: dict[str, Any] = trainer.throughput.read()
        if count:
            loss = loss_sum / count
            out.update(loss=loss, ppl=math.exp(min(loss, 50.0)), grad_norm=grad_sum / count)
        # float(): a device tensor when trainer.cuda_graphs made the lr one (cuda_graph.py)
        out.update(lr=float(trainer.scheduler.get_last_lr()[0]), tokens=trainer.state.tokens,
                   train_time_s=round(trainer.state.train_time_s, 3),
                   epoch=trainer.epoch, skipped_steps=trainer.guard.total)
        mem = trainer.memory_gib()
        if mem is not None:
            out["mem_gib"] = mem
        return out
