"""The language-modelling data module: documents -> token cache -> training and eval loaders.

Subclasses say where documents come from (`splits`, `split_sources`) and what identifies them
(`cache_name`, `description`); everything else (cache, loaders, statistics) is shared here.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np

from mambalab.data.cache import TokenCache, build_or_load
from mambalab.data.loader import EvalWindowLoader, WindowLoader
from mambalab.data.tokenizers import Tokenizer


class LMDataModule:
    task = "lm"
    metric = "perplexity"

    def __init__(self, tokenizer: Tokenizer | None, seq_len: int, batch_size: int,
                 eval_batch_size: int | None, doc_boundaries: bool, cache_dir: str,
                 num_proc: int | None, max_eval_batches: int | None, prefetch: int,
                 pin_memory: bool | str, progress: bool) -> None:
        if tokenizer is None:
            raise ValueError(f"{type(self).__name__} needs a tokenizer: instantiate(cfg.data, tokenizer=tok)")
        if seq_len < 1 or batch_size < 1:
            raise ValueError(f"data.seq_len ({seq_len}) and data.batch_size ({batch_size}) must be >= 1")
        self.tokenizer = tokenizer
        self.seq_len, self.batch_size = int(seq_len), int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.doc_boundaries = bool(doc_boundaries)
        self.cache_dir = os.path.expandvars(os.path.expanduser(str(cache_dir)))
        self.num_proc = num_proc
        self.max_eval_batches = max_eval_batches
        self.prefetch, self.pin_memory, self.progress = prefetch, pin_memory, progress
        self.eval_lengths: list[int] = [self.seq_len]
        self._cache: TokenCache | None = None
        self.built_cache = False  # whether prepare() tokenized (False: reused an existing cache)

    # what subclasses define -------------------------------------------------------------------
    @property
    def splits(self) -> list[str]:
        raise NotImplementedError

    def cache_name(self) -> str:
        raise NotImplementedError

    def description(self) -> dict:
        """Everything that decides the documents' text (the tokenizer is added by the cache)."""
        raise NotImplementedError

    def split_sources(self) -> dict[str, Callable[[], Iterator[str]]]:
        raise NotImplementedError

    def transform(self) -> Callable[[str], str] | None:
        return None

    def provenance(self) -> dict:
        """Recorded in meta.json but not part of the key (e.g. where the files were)."""
        return {}

    # shared ------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_id

    def prepare(self) -> TokenCache:
        """Build the token cache or reuse it (atomic and locked: every rank may call this)."""
        if self._cache is None:
            self._cache, self.built_cache = build_or_load(
                self.cache_dir, self.cache_name(), self.description(), self.split_sources(),
                self.tokenizer, num_proc=self.num_proc, progress=self.progress,
                transform=self.transform(), provenance=self.provenance())
        return self._cache

    @property
    def cache(self) -> TokenCache:
        return self.prepare()

    def _first_tokens(self, split: str) -> np.ndarray | None:
        if not self.doc_boundaries:
            return None
        return np.asarray(self.cache.offsets(split))[:-1] + 1

    def train_loader(self, rank: int = 0, world_size: int = 1, seed: int = 0) -> WindowLoader:
        return WindowLoader(self.cache.tokens("train"), seq_len=self.seq_len, batch_size=self.batch_size,
                            rank=rank, world_size=world_size, seed=seed,
                            first_tokens=self._first_tokens("train"), prefetch=self.prefetch,
                            pin_memory=self.pin_memory)

    def eval_loader(self, split: str, rank: int = 0, world_size: int = 1, max_batches: int | None = None,
                    seq_len: int | None = None) -> EvalWindowLoader:
        """Fixed-order batches of `split` (every token scored once); `max_batches` (default
        data.max_eval_batches) caps the global number of batches."""
        self._check_split(split)
        return EvalWindowLoader(self.cache.tokens(split), seq_len=seq_len or self.seq_len,
                                batch_size=self.eval_batch_size, rank=rank, world_size=world_size,
                                max_batches=max_batches if max_batches is not None else self.max_eval_batches,
                                first_tokens=self._first_tokens(split), pad_id=self.eos_id,
                                pin_memory=self.pin_memory)

    def documents(self, split: str) -> Iterator[np.ndarray]:
        """Token ids of each document (no end-of-text tokens; an evaluator prepends eos_id)."""
        self._check_split(split)
        return self.cache.documents(split)

    def split_stats(self, split: str) -> dict:
        """{tokens, documents, bytes, words} of the split's documents (plus stream_tokens: the
        tokens in the stream, end-of-text separators included)."""
        self._check_split(split)
        return self.cache.stats(split)

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise KeyError(f"split {split!r} is not available: this data has {self.splits}"
                           + ("; give data.validation_files or data.validation_fraction"
                              if split == "validation" else ""))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.cache_name()}, seq_len={self.seq_len}, "
                f"batch_size={self.batch_size}, splits={self.splits})")
