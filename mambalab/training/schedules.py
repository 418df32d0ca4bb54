"""Learning-rate schedules: linear warmup, then cosine, linear, WSD (warmup-stable-decay) or constant.

Each builder is a `_partial_` target: the trainer supplies `optimizer` and `total_steps` (known only
once the data and the number of processes are). The lambda returns a multiplier of the peak lr.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

log = logging.getLogger(__name__)


def _warmup(total_steps: int, warmup_steps: int | None, warmup_fraction: float) -> int:
    steps = warmup_steps if warmup_steps is not None else int(warmup_fraction * total_steps)
    if steps < 0:
        raise ValueError(f"scheduler.warmup_steps={steps}: must be >= 0")
    if steps > total_steps:  # a shortened run (trainer.max_steps=10): warm up over all of it
        log.warning("scheduler warmup of %d steps is longer than the run (%d steps); using %d",
                    steps, total_steps, total_steps)
        steps = total_steps
    return steps


def _with_warmup(warmup: int, after: Callable[[int], float]) -> Callable[[int], float]:
    def factor(step: int) -> float:
        # step counts optimizer steps already taken; the first update uses factor(0) > 0.
        if step < warmup:
            return (step + 1) / warmup
        return after(step - warmup)
    return factor


def cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int | None = None,
           warmup_fraction: float = 0.0, min_lr_ratio: float = 0.1) -> LambdaLR:
    """Cosine decay from the peak to min_lr_ratio * peak at total_steps."""
    warmup = _warmup(total_steps, warmup_steps, warmup_fraction)
    span = max(1, total_steps - warmup)

    def after(t: int) -> float:
        progress = min(1.0, t / span)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return LambdaLR(optimizer, _with_warmup(warmup, after))


def linear(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int | None = None,
           warmup_fraction: float = 0.0, min_lr_ratio: float = 0.0) -> LambdaLR:
    """Linear decay from the peak to min_lr_ratio * peak at total_steps."""
    warmup = _warmup(total_steps, warmup_steps, warmup_fraction)
    span = max(1, total_steps - warmup)
    return LambdaLR(optimizer, _with_warmup(
        warmup, lambda t: 1 - (1 - min_lr_ratio) * min(1.0, t / span)))


def wsd(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int | None = None,
        warmup_fraction: float = 0.0, decay_fraction: float = 0.2, min_lr_ratio: float = 0.0) -> LambdaLR:
    """Warmup, a stable plateau at the peak, then a linear decay over the last decay_fraction."""
    warmup = _warmup(total_steps, warmup_steps, warmup_fraction)
    decay = max(1, int(decay_fraction * total_steps))
    stable = max(0, total_steps - warmup - decay)

    def after(t: int) -> float:
        if t < stable:
            return 1.0
        return 1 - (1 - min_lr_ratio) * min(1.0, (t - stable) / decay)
    return LambdaLR(optimizer, _with_warmup(warmup, after))


def constant(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int | None = None,
             warmup_fraction: float = 0.0) -> LambdaLR:
    """The peak lr after warmup, to the end."""
    warmup = _warmup(total_steps, warmup_steps, warmup_fraction)
    return LambdaLR(optimizer, _with_warmup(warmup, lambda t: 1.0))
