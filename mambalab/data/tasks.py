"""Generators of the synthetic tasks: functions of a numpy Generator, batch size and length.

Each returns {"input_ids": (B, L) int64, "targets": (B, L) int64} with targets already aligned to
inputs (targets[:, t] is what the model should output after reading input_ids[:, :t+1]) and
IGNORE_INDEX (-100) where nothing is scored. The Mamba paper (Gu & Dao 2023, Appendix E.1) trains
and evaluates the two memory tasks on their answer positions only.
"""
from __future__ import annotations

import numpy as np

from mambalab.data.loader import IGNORE_INDEX


def random_tokens(rng: np.random.Generator, batch_size: int, seq_len: int,
                  vocab_size: int) -> dict[str, np.ndarray]:
    """Uniform random tokens, every position scored: for throughput (the loss floor is ln V)."""
    tokens = rng.integers(0, vocab_size, size=(batch_size, seq_len + 1), dtype=np.int64)
    return {"input_ids": tokens[:, :-1].copy(), "targets": tokens[:, 1:].copy()}


def induction_heads(rng: np.random.Generator, batch_size: int, seq_len: int,
                    vocab_size: int) -> dict[str, np.ndarray]:
    """Associative recall of one pair. Token V-1 is the trigger, it occurs twice: at a random
    position p followed by the answer, and at the last position, where the model must output the
    answer. All other tokens are uniform over 0..V-2. (B, L) with only [:, L-1] scored."""
    if seq_len < 3 or vocab_size < 3:
        raise ValueError(f"induction heads needs seq_len >= 3 and vocab_size >= 3 (got {seq_len}, {vocab_size})")
    trigger = vocab_size - 1
    rows = np.arange(batch_size)
    inputs = rng.integers(0, trigger, size=(batch_size, seq_len), dtype=np.int64)  # (B, L)
    position = rng.integers(0, seq_len - 2, size=batch_size)  # trigger at p, answer at p + 1 <= L - 2
    answer = rng.integers(0, trigger, size=batch_size, dtype=np.int64)
    inputs[rows, position] = trigger
    inputs[rows, position + 1] = answer
    inputs[:, -1] = trigger
    targets = np.full((batch_size, seq_len), IGNORE_INDEX, dtype=np.int64)
    targets[:, -1] = answer
    return {"input_ids": inputs, "targets": targets}


def selective_copying(rng: np.random.Generator, batch_size: int, seq_len: int, vocab_size: int,
                      num_data_tokens: int) -> dict[str, np.ndarray]:
    """Selective copying. Token 0 is noise, V-1 the copy marker, data tokens are 1..V-2. The first
    L - K positions are noise with K data tokens at random positions; the last K positions are
    markers, where the model must output the data tokens in order. (B, L), the last K scored."""
    K = num_data_tokens
    context = seq_len - K
    if vocab_size < 3 or K < 1 or context < K:
        raise ValueError(f"selective copying needs vocab_size >= 3, num_data_tokens >= 1 and "
                         f"seq_len >= 2 * num_data_tokens (got {vocab_size}, {K}, {seq_len})")
    marker = vocab_size - 1
    inputs = np.zeros((batch_size, seq_len), dtype=np.int64)  # (B, L) noise
    data = rng.integers(1, marker, size=(batch_size, K), dtype=np.int64)  # (B, K)
    for row in range(batch_size):
        positions = np.sort(rng.choice(context, size=K, replace=False))
        inputs[row, positions] = data[row]
    inputs[:, context:] = marker
    targets = np.full((batch_size, seq_len), IGNORE_INDEX, dtype=np.int64)
    targets[:, context:] = data
    return {"input_ids": inputs, "targets": targets}
