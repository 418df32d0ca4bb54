"""Synthetic tasks: answer accuracy at the training length and far beyond it.

The Mamba paper's induction-heads table trains at 256 tokens and tests up to 2^20 = 1,048,576.
Past the training length the sequences are streamed: ``chunk_len`` tokens at a time with the
recurrent state carried, so activation memory does not grow with the length.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from mambalab.eval.split import evaluate_split

MAX_LENGTH = 2 ** 20


def evaluate_task_lengths(model: torch.nn.Module, data: Any, split: str, lengths: Sequence[int],
                          chunk_len: int, max_batches: int | None, device: torch.device,
                          batch_size: int | None = None) -> dict[int, dict[str, float]]:
    """{length: {"loss", "accuracy", "total"}}: the training length first (one forward pass per
    sequence), then each of ``lengths`` streamed in chunks of ``chunk_len``."""
    train_len = int(data.seq_len)
    results = {train_len: evaluate_split(model, data, split, mode="chunked",
                                         max_batches=max_batches, device=device).metrics()}
    for length in sorted({int(n) for n in lengths}):
        if length == train_len:
            continue
        if not 1 <= length <= MAX_LENGTH:
            raise ValueError(f"eval length {length} is outside [1, 2^20 = {MAX_LENGTH}]")
        totals = evaluate_split(model, data, split, mode="streaming", max_batches=max_batches,
                                device=device, seq_len=length, chunk_len=min(chunk_len, length),
                                batch_size=batch_size)
        results[length] = totals.metrics()
    return results
