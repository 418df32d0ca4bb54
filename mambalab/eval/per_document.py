"""Per-document scoring, as lm-evaluation-harness's ``loglikelihood_rolling`` does it.

Each document is scored on its own: every one of its tokens, the first one predicted from the
tokenizer's end-of-text token (lm-eval's prefix token), so that log-likelihoods, words and bytes are
exactly those of the document's text. Two ways to give each token its context:

- strided:   sliding windows of ``seq_len`` tokens moved by ``stride``; each token is scored once,
             in the first window that holds it after the previous window's end, so with at least
             ``seq_len - stride`` tokens of context (fewer only near the document's start).
             ``stride == seq_len`` is lm-eval's non-overlapping rolling windows.
- streaming: the document in chunks of ``chunk_len`` with the recurrent state carried between
             them: every token sees the whole document before it, equal to one forward pass over
             it, in memory independent of the document's length.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mambalab.eval.documents import EvalDocument
from mambalab.eval.forward import IGNORE, Accumulator, stream_batch
from mambalab.eval.totals import EvalTotals


def _inputs_and_targets(doc: EvalDocument, prefix_id: int) -> tuple[np.ndarray, np.ndarray]:
    # input i predicts target i: inputs (n,) = [prefix, t0 .. t_{n-2}], targets (n,) = [t0 .. t_{n-1}]
    inputs = np.concatenate([np.asarray([prefix_id], dtype=np.int64), doc.ids[:-1]])
    return inputs, doc.ids.astype(np.int64)


def strided_windows(length: int, seq_len: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, score_from) per window over positions [0, length): inputs [begin, end) are fed,
    targets [score_from, end) are scored. Together the windows score every position exactly once."""
    if not 1 <= stride <= seq_len:
        raise ValueError(f"stride must be in [1, seq_len={seq_len}], got {stride}")
    windows, scored_to = [], 0
    for begin in range(0, length, stride):
        end = min(begin + seq_len, length)
        windows.append((begin, end, scored_to))
        scored_to = end
        if end == length:
            break
    return windows


def _totals(acc: Accumulator, docs: Sequence[EvalDocument]) -> EvalTotals:
    nll, tokens, _ = acc.values()
    return EvalTotals(nll_sum=nll, tokens=tokens, words=float(sum(d.words for d in docs)),
                      bytes=float(sum(d.bytes for d in docs)), documents=len(docs))


def score_strided(model: torch.nn.Module, docs: Sequence[EvalDocument], prefix_id: int,
                  seq_len: int, stride: int, batch_size: int, device: torch.device) -> EvalTotals:
    """Sum of NLL over every token of ``docs`` with strided windows, ``batch_size`` windows a call."""
    windows: list[tuple[np.ndarray, np.ndarray]] = []
    for doc in docs:
        inputs, targets = _inputs_and_targets(doc, prefix_id)
        for begin, end, score_from in strided_windows(len(inputs), seq_len, stride):
            window_targets = targets[begin:end].copy()
            window_targets[: score_from - begin] = IGNORE  # already scored by an earlier window
            windows.append((inputs[begin:end], window_targets))
    acc = Accumulator(device)
    # Windows of one length go together, so that padding is rare (only short documents' tails).
    windows.sort(key=lambda w: -len(w[0]))
    for start in range(0, len(windows), batch_size):
        group = windows[start:start + batch_size]
        input_ids, targets = _pad(group, prefix_id, device)
        acc.add_nll(model, input_ids, targets)
    return _totals(acc, docs)


def score_streaming(model: torch.nn.Module, docs: Sequence[EvalDocument], prefix_id: int,
                    chunk_len: int, batch_size: int, device: torch.device) -> EvalTotals:
    """Sum of NLL over every token of ``docs``, each document streamed with its recurrent state.

    Documents of similar length are batched (longest first); a shorter document's padding comes
    after its end and is not scored, so it changes nothing that is.
    """
    ordered = sorted(docs, key=lambda d: -len(d.ids))
    acc = Accumulator(device)
    for start in range(0, len(ordered), batch_size):
        group = [_inputs_and_targets(doc, prefix_id) for doc in ordered[start:start + batch_size]]
        input_ids, targets = _pad(group, prefix_id, device)
        stream_batch(model, acc, "perplexity", input_ids, targets, chunk_len)
    return _totals(acc, docs)


def _pad(group: Sequence[tuple[np.ndarray, np.ndarray]], pad_id: int,
         device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (inputs, targets) pairs into (B, L_max) tensors; padded targets are -100."""
    length = max(len(inputs) for inputs, _ in group)
    input_ids = np.full((len(group), length), pad_id, dtype=np.int64)
    targets = np.full((len(group), length), IGNORE, dtype=np.int64)
    for row, (inp, tgt) in enumerate(group):
        input_ids[row, : len(inp)] = inp
        targets[row, : len(tgt)] = tgt
    return (torch.from_numpy(input_ids).to(device, non_blocking=True),
            torch.from_numpy(targets).to(device, non_blocking=True))
