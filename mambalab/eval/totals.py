"""Additive evaluation totals: sum them over batches, documents and ranks, then turn them into metrics.

Every field is a sum, so that the totals of two shards add up to the totals of their union; metrics
(perplexities, accuracy) are computed only at the end, from the sums, never averaged from averages.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable

import torch

_LN2 = math.log(2.0)


@dataclass
class EvalTotals:
    """Sums over the scored positions of a split.

    nll_sum:   sum of the negative log-likelihoods (nats) of the scored tokens.
    tokens:    number of scored tokens (targets != -100).
    words:     whitespace-separated words of the scored text, counted as lm-evaluation-harness does
               (``len(re.split(r"\\s+", text))`` per document). Chunked mode scales the split's count
               by the fraction of its tokens that were scored (see ``mambalab.eval.chunked``).
    bytes:     UTF-8 bytes of the scored text (chunked mode: scaled the same way).
    correct:   answer positions whose argmax prediction equals the target (synthetic tasks).
    total:     answer positions scored for accuracy (synthetic tasks).
    documents: documents evaluated (per-document modes; 0 in chunked mode).
    metric:    "perplexity" (language modelling) or "accuracy" (synthetic tasks): which metrics to report.
    """

    nll_sum: float = 0.0
    tokens: int = 0
    words: float = 0.0
    bytes: float = 0.0
    correct: int = 0
    total: int = 0
    documents: int = 0
    metric: str = "perplexity"

    _SUMMED = ("nll_sum", "tokens", "words", "bytes", "correct", "total", "documents")

    def __post_init__(self) -> None:
        if self.metric not in ("perplexity", "accuracy"):
            raise ValueError(f"EvalTotals.metric must be 'perplexity' or 'accuracy', got {self.metric!r}")

    def __add__(self, other: "EvalTotals") -> "EvalTotals":
        if self.metric != other.metric:
            raise ValueError(f"cannot add {self.metric} totals to {other.metric} totals")
        summed = {name: getattr(self, name) + getattr(other, name) for name in self._SUMMED}
        return EvalTotals(**summed, metric=self.metric)

    def reduce(self, all_reduce_fn: Callable[[torch.Tensor], torch.Tensor | None],
               device: torch.device | str | None = None) -> "EvalTotals":
        """Sum the totals over ranks with ``all_reduce_fn`` (a sum all-reduce) and return the result.

        ``all_reduce_fn`` receives one float64 tensor (7,) and either returns the reduced tensor
        (``accelerator.reduce(t, reduction="sum")``) or reduces it in place and returns None
        (``torch.distributed.all_reduce``). ``device`` is where that tensor lives: NCCL needs CUDA,
        so it defaults to the current CUDA device when there is one.
        """
        if device is None:
            device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else "cpu"
        packed = torch.tensor([float(getattr(self, name)) for name in self._SUMMED],
                              dtype=torch.float64, device=device)  # (7,)
        reduced = all_reduce_fn(packed)
        values = (packed if reduced is None else reduced).double().cpu().tolist()
        out = {name: value for name, value in zip(self._SUMMED, values)}
        for name in ("tokens", "correct", "total", "documents"):
            out[name] = int(round(out[name]))
        return EvalTotals(**out, metric=self.metric)

    def metrics(self) -> dict[str, float]:
        """Perplexity tasks: loss (nats/token), ppl, word_ppl, bpb, byte_ppl, tokens.

        word_ppl = exp(nll_sum / words), byte_ppl = exp(nll_sum / bytes) and
        bpb = nll_sum / (bytes * ln 2): lm-evaluation-harness's word_perplexity, byte_perplexity and
        bits_per_byte. Accuracy tasks: loss (over answer positions) and accuracy.
        """
        if self.metric == "accuracy":
            if self.total == 0:
                raise ValueError("no answer positions were scored (every target is -100)")
            return {"loss": self.nll_sum / self.total, "accuracy": self.correct / self.total,
                    "total": self.total}
        if self.tokens == 0:
            raise ValueError("no tokens were scored: the split is empty or every target is -100")
        loss = self.nll_sum / self.tokens
        out = {"loss": loss, "ppl": _safe_exp(loss), "tokens": self.tokens}
        if self.words > 0 and self.bytes > 0:
            out["word_ppl"] = _safe_exp(self.nll_sum / self.words)
            out["byte_ppl"] = _safe_exp(self.nll_sum / self.bytes)
            out["bpb"] = self.nll_sum / (self.bytes * _LN2)
        if self.documents:
            out["documents"] = self.documents
        return out

    def as_dict(self) -> dict[str, float | int | str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _safe_exp(x: float) -> float:
    # A diverged model's loss overflows exp; report inf rather than raise mid-training.
    return math.exp(x) if x < 700 else float("inf")
