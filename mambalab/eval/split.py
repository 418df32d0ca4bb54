"""``evaluate_split``: the one function that the training loop's hook and the evaluate app call."""
from __future__ import annotations

from typing import Any

import torch

from mambalab.eval.documents import documents_from_data
from mambalab.eval.forward import Accumulator, eval_mode, model_device, stream_batch
from mambalab.eval.per_document import score_streaming, score_strided
from mambalab.eval.totals import EvalTotals

MODES = ("chunked", "strided", "streaming")


def evaluate_split(model: torch.nn.Module, data: Any, split: str, mode: str = "chunked",
                   max_batches: int | None = None, rank: int = 0, world_size: int = 1,
                   device: torch.device | str | None = None, seq_len: int | None = None,
                   stride: int | None = None, batch_size: int | None = None,
                   max_documents: int | None = None, chunk_len: int | None = None) -> EvalTotals:
    """Score ``split`` of ``data`` with ``model``; returns this rank's additive totals.

    mode="chunked":   non-overlapping windows of ``seq_len`` (default ``data.seq_len``) over the
                      split's token stream, from ``data.eval_loader`` (what HF's run_clm reports).
                      Words and bytes are the split's counts (``data.split_stats``) times the
                      fraction of the stream's targets that were scored (stream_tokens - 1, the
                      end-of-text separators included), so with ``max_batches`` word_ppl and bpb
                      are estimates on that prefix at the split's words per token.
    mode="strided":   per document, windows of ``seq_len`` moved by ``stride`` (default seq_len // 2).
    mode="streaming": per document, chunks of ``chunk_len`` (default seq_len) with the recurrent
                      state carried across.
                      Per-document modes count words and bytes exactly from each document's text;
                      ``max_documents`` caps the documents (default: ``max_batches * batch_size``
                      when max_batches is set), and ranks take every ``world_size``-th document.
    Synthetic tasks (``data.metric == "accuracy"``) support chunked and streaming (sequences of
    ``seq_len`` from ``data.eval_loader``, fed ``chunk_len`` at a time with the state carried, so
    memory stays flat up to 2^20 tokens); their totals give loss and argmax accuracy over the
    answer positions.
    Combine ranks with ``totals.reduce(all_reduce_fn)``, then ``totals.metrics()``.
    """
    if mode not in MODES:
        raise ValueError(f"evaluation mode must be one of {MODES}, got {mode!r}")
    device = torch.device(device) if device is not None else model_device(model)
    seq_len = int(seq_len or data.seq_len)
    batch_size = int(batch_size or getattr(data, "eval_batch_size", None) or data.batch_size)
    chunk_len = int(chunk_len or seq_len)
    metric = getattr(data, "metric", "perplexity")
    with eval_mode(model):
        if mode == "chunked" or metric == "accuracy":
            return _chunked(model, data, split, metric, mode, max_batches, rank, world_size, device,
                            seq_len, chunk_len)
        if max_documents is None and max_batches is not None:
            max_documents = max_batches * batch_size
        docs = list(documents_from_data(data, split, max_documents, rank, world_size))
        prefix_id = int(data.tokenizer.eos_id)
        if mode == "strided":
            stride = int(stride or max(1, seq_len // 2))
            return score_strided(model, docs, prefix_id, seq_len, stride, batch_size, device)
        return score_streaming(model, docs, prefix_id, chunk_len, batch_size, device)


def _chunked(model: torch.nn.Module, data: Any, split: str, metric: str, mode: str,
             max_batches: int | None, rank: int, world_size: int, device: torch.device,
             seq_len: int, chunk_len: int) -> EvalTotals:
    if mode == "strided":
        raise ValueError("strided evaluation scores text documents; synthetic tasks use "
                         "mode=chunked or mode=streaming")
    acc = Accumulator(device)
    loader = data.eval_loader(split, rank=rank, world_size=world_size, max_batches=max_batches,
                              seq_len=seq_len)
    for batch in loader:
        input_ids = batch["input_ids"].to(device, non_blocking=True)  # (B, L)
        targets = batch["targets"].to(device, non_blocking=True)  # (B, L)
        if mode == "streaming":  # accuracy tasks at long lengths: flat memory
            stream_batch(model, acc, metric, input_ids, targets, chunk_len)
            continue
        doc_starts = batch.get("doc_starts")
        doc_starts = doc_starts.to(device, non_blocking=True) if doc_starts is not None else None
        acc.add(metric, model, input_ids, targets, doc_starts=doc_starts)
    nll, tokens, correct = acc.values()
    if metric == "accuracy":
        return EvalTotals(nll_sum=nll, correct=correct, total=tokens, metric="accuracy")
    words, nbytes = _scaled_text_counts(data, split, tokens)
    return EvalTotals(nll_sum=nll, tokens=tokens, words=words, bytes=nbytes)


def _scaled_text_counts(data: Any, split: str, tokens_scored: int) -> tuple[float, float]:
    """The split's words and bytes times the fraction of its stream's targets scored here.

    The stream is ``[eos] doc [eos] doc ... [eos]`` (``stream_tokens`` long), whose
    ``stream_tokens - 1`` targets a full chunked pass scores, end-of-text separators included; the
    separators' NLL counts against the documents' words and bytes, as it does in run_clm.
    Returns (0, 0) when the split has no word or byte counts (synthetic data).
    """
    stats_fn = getattr(data, "split_stats", None)
    stats = stats_fn(split) if stats_fn is not None else None
    if not stats or not stats.get("words") or not stats.get("bytes"):
        return 0.0, 0.0
    targets = stats["stream_tokens"] - 1 if stats.get("stream_tokens") else stats.get("tokens")
    if not targets:
        return 0.0, 0.0
    fraction = tokens_scored / float(targets)
    return float(stats["words"]) * fraction, float(stats["bytes"]) * fraction
