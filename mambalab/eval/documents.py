"""Documents for per-document evaluation: token ids with the text they came from.

Word and byte counts follow lm-evaluation-harness's perplexity tasks (``wikitext``): for each
document, ``words = len(re.split(r"\\s+", text))`` and ``bytes = len(text.encode("utf-8"))``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

_WHITESPACE = re.compile(r"\s+")


def count_words(text: str) -> int:
    """Words as lm-evaluation-harness counts them: pieces between whitespace runs (``re.split``)."""
    return len(_WHITESPACE.split(text))


def count_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


@dataclass
class EvalDocument:
    """One document: its token ids (without a prefix token) and its text."""

    ids: np.ndarray  # (n,) int64
    text: str

    @property
    def words(self) -> int:
        return count_words(self.text)

    @property
    def bytes(self) -> int:
        return count_bytes(self.text)


def strip_eos(ids: np.ndarray, eos_id: int | None) -> np.ndarray:
    """Drop trailing separator tokens: the document is scored as its own text, as lm-eval does."""
    end = len(ids)
    while eos_id is not None and end > 0 and int(ids[end - 1]) == eos_id:
        end -= 1
    return ids[:end]


def documents_from_data(data: Any, split: str, max_documents: int | None = None, rank: int = 0,
                        world_size: int = 1) -> Iterator[EvalDocument]:
    """The split's documents (this rank's share: every ``world_size``-th, from ``rank``), as
    ids and text, decoded with the data module's tokenizer so that another tokenizer can re-encode
    the very same text (baseline comparison)."""
    tokenizer = getattr(data, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(f"per-document evaluation needs text documents, but the data module "
                         f"{type(data).__name__} has no tokenizer (synthetic task?); use mode=chunked")
    eos_id = getattr(tokenizer, "eos_id", None)
    for index, ids in enumerate(data.documents(split)):
        if max_documents is not None and index >= max_documents:
            return
        if index % world_size != rank:
            continue
        ids = strip_eos(np.asarray(ids, dtype=np.int64), eos_id)
        if len(ids) == 0:
            continue
        yield EvalDocument(ids=ids, text=tokenizer.decode(ids.tolist()))


def retokenize(documents: Iterable[EvalDocument], encode: Any) -> list[EvalDocument]:
    """The same texts under another tokenizer's ``encode(str) -> list[int]`` (baseline models)."""
    out = []
    for doc in documents:
        ids = np.asarray(encode(doc.text), dtype=np.int64)
        if len(ids):
            out.append(EvalDocument(ids=ids, text=doc.text))
    return out
