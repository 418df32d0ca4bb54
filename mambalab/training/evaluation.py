"""The training loop's one seam to evaluation: `mambalab.eval.evaluate_split`, reduced over ranks."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mambalab.eval import evaluate_split


def evaluate(model: torch.nn.Module, data: Any, split: str, max_batches: int | None, rank: int,
             world_size: int, device: torch.device,
             all_reduce_sum: Callable[[torch.Tensor], torch.Tensor | None] | None) -> dict[str, float]:
    """Metrics of `split` over all ranks: {"loss", "ppl", ...} or {"loss", "accuracy"} for tasks.

    The model is put in eval mode and back; gradients are off inside evaluate_split.
    """
    was_training = model.training
    model.eval()
    try:
        totals = evaluate_split(model, data, split, mode="chunked", max_batches=max_batches,
                                rank=rank, world_size=world_size, device=device)
    finally:
        model.train(was_training)
    if all_reduce_sum is not None and world_size > 1:
        totals = totals.reduce(all_reduce_sum, device=device)
    return totals.metrics()
