"""Timed scoring with the evaluation app's precision: one call per (model, mode)."""
from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator, Sequence

import torch

from mambalab.eval.documents import EvalDocument
from mambalab.eval.forward import eval_mode
from mambalab.eval.per_document import score_streaming, score_strided
from mambalab.eval.totals import EvalTotals

PRECISIONS = ("bf16", "fp32")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bf16: autocast on CUDA (fp32 weights, bf16 matmuls, as in training); fp32 or CPU: none."""
    check_precision(precision)
    if device.type == "cuda" and precision == "bf16":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


def timed(device: torch.device, precision: str, fn: Callable[[], EvalTotals]) -> dict[str, Any]:
    """``fn()``'s metrics plus its wall time and tokens per second (device synchronised)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with autocast(device, precision):
        totals = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    metrics = totals.metrics()
    metrics["seconds"] = seconds
    scored = metrics.get("tokens", metrics.get("total", 0))
    metrics["tokens_per_s"] = scored / seconds if seconds > 0 else None
    return metrics


def score_documents(model: torch.nn.Module, docs: Sequence[EvalDocument], prefix_id: int,
                    mode: str, seq_len: int, stride: int | None, batch_size: int,
                    device: torch.device, precision: str) -> dict[str, Any]:
    """Per-document strided or streaming metrics of ``docs``, timed."""
    def run() -> EvalTotals:
        with eval_mode(model):
            if mode == "strided":
                return score_strided(model, docs, prefix_id, seq_len,
                                     int(stride or max(1, seq_len // 2)), batch_size, device)
            if mode == "streaming":
                return score_streaming(model, docs, prefix_id, seq_len, batch_size, device)
            raise ValueError(f"per-document mode must be strided or streaming, got {mode!r}")

    return timed(device, precision, run)
