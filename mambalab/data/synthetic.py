"""Synthetic data modules: random tokens (throughput) and the Mamba paper's memory tasks.

Nothing is stored: batch k of a rank is generated from numpy's Generator seeded with
(seed, rank, k), so the loader resumes exactly from a counter; evaluation batches come from a
separate seed per (split, length) and are generated lazily, one batch at a time, so lengths up to
2^20 fit (the batch shrinks to keep `eval_tokens_per_batch`).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import numpy as np
import torch

from mambalab.data import tasks
from mambalab.data.loader import PrefetchLoader, resolve_pin, to_torch
from mambalab.data.tokenizers import Tokenizer

Generate = Callable[[np.random.Generator, int, int], dict]
_SPLIT_SEEDS = {"validation": 1, "test": 2}


def _with_doc_starts(batch: dict, doc_boundaries: bool) -> dict:
    if doc_boundaries:  # each row is one document starting at position 0
        starts = np.zeros(batch["input_ids"].shape, dtype=bool)
        starts[:, 0] = True
        batch["doc_starts"] = starts
    return batch


class GeneratedLoader(PrefetchLoader):
    def __init__(self, generate: Generate, seq_len: int, batch_size: int, seed: int, rank: int,
                 world_size: int, batches_per_epoch: int, doc_boundaries: bool, prefetch: int,
                 pin_memory: bool | str) -> None:
        super().__init__(prefetch=prefetch, pin_memory=pin_memory)
        self.generate, self.seq_len, self.batch_size = generate, seq_len, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.batches_per_epoch, self.doc_boundaries = max(1, batches_per_epoch), doc_boundaries

    def signature(self) -> dict:
        return {"seed": self.seed, "rank": self.rank, "seq_len": self.seq_len,
                "batch_size": self.batch_size}

    def make_batch(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.rank, index])
        return _with_doc_starts(self.generate(rng, self.batch_size, self.seq_len), self.doc_boundaries)


class GeneratedEvalLoader:
    """`num_examples` examples of length `seq_len` in a fixed order; global batch g is generated
    from (eval_seed, split, seq_len, g) and rank r takes g = r, r + W, ..."""

    def __init__(self, generate: Generate, seq_len: int, batch_size: int, num_examples: int,
                 seed: list[int], rank: int, world_size: int, max_batches: int | None,
                 doc_boundaries: bool, pin_memory: bool | str) -> None:
        self.generate, self.seq_len, self.batch_size = generate, seq_len, batch_size
        self.num_examples, self.seed, self.doc_boundaries = num_examples, seed, doc_boundaries
        n_global = -(-num_examples // batch_size)
        if max_batches is not None:
            n_global = min(n_global, int(max_batches))
        self.global_batches = list(range(rank, n_global, world_size))
        self._pin = resolve_pin(pin_memory)

    def __len__(self) -> int:
        return len(self.global_batches)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for g in self.global_batches:
            size = min(self.batch_size, self.num_examples - g * self.batch_size)
            batch = self.generate(np.random.default_rng([*self.seed, g]), size, self.seq_len)
            yield to_torch(_with_doc_starts(batch, self.doc_boundaries), self._pin)


class SyntheticTaskModule:
    """Shared surface of the synthetic modules (see docs/architecture.md, "Tokenizer and data")."""

    task = "synthetic"
    metric = "perplexity"

    def __init__(self, vocab_size: int, seq_len: int, batch_size: int, eval_batch_size: int | None,
                 eval_lengths: list[int] | None, eval_examples: int, eval_tokens_per_batch: int,
                 examples_per_epoch: int, eval_seed: int, doc_boundaries: bool, cache_dir: str,
                 max_eval_batches: int | None, prefetch: int, pin_memory: bool | str) -> None:
        if seq_len < 1 or batch_size < 1 or vocab_size < 2:
            raise ValueError(f"data.seq_len={seq_len}, data.batch_size={batch_size} and "
                             f"data.vocab_size={vocab_size} must be positive (vocab >= 2)")
        self.vocab_size, self.seq_len, self.batch_size = int(vocab_size), int(seq_len), int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.eval_lengths = [int(n) for n in (eval_lengths or [seq_len])]
        self.eval_examples, self.eval_tokens_per_batch = int(eval_examples), int(eval_tokens_per_batch)
        self.examples_per_epoch, self.eval_seed = int(examples_per_epoch), int(eval_seed)
        self.doc_boundaries, self.cache_dir = bool(doc_boundaries), cache_dir  # no cache: nothing stored
        self.max_eval_batches, self.prefetch, self.pin_memory = max_eval_batches, prefetch, pin_memory
        self.splits = ["train", "validation", "test"]
        self.tokenizer = None
        self.eos_id = None

    def generator(self) -> Generate:
        raise NotImplementedError

    def prepare(self) -> None:
        """Nothing to build: the examples are generated on the fly."""
        self.generator()(np.random.default_rng(0), 1, self.seq_len)  # invalid settings fail now

    def train_loader(self, rank: int = 0, world_size: int = 1, seed: int = 0) -> GeneratedLoader:
        return GeneratedLoader(self.generator(), seq_len=self.seq_len, batch_size=self.batch_size,
                               seed=seed, rank=rank, world_size=world_size,
                               batches_per_epoch=self.examples_per_epoch // (self.batch_size * world_size),
                               doc_boundaries=self.doc_boundaries, prefetch=self.prefetch,
                               pin_memory=self.pin_memory)

    def eval_batch_size_at(self, seq_len: int) -> int:
        """The eval batch shrinks at long lengths to hold about eval_tokens_per_batch tokens."""
        return max(1, min(self.eval_batch_size, self.eval_tokens_per_batch // seq_len))

    def eval_loader(self, split: str, rank: int = 0, world_size: int = 1, max_batches: int | None = None,
                    seq_len: int | None = None) -> GeneratedEvalLoader:
        if split not in _SPLIT_SEEDS:
            raise KeyError(f"split {split!r} is not an evaluation split of this data: {list(_SPLIT_SEEDS)}")
        length = int(seq_len or self.seq_len)
        return GeneratedEvalLoader(self.generator(), seq_len=length,
                                   batch_size=self.eval_batch_size_at(length),
                                   num_examples=self.eval_examples,
                                   seed=[self.eval_seed, _SPLIT_SEEDS[split], length], rank=rank,
                                   world_size=world_size,
                                   max_batches=max_batches if max_batches is not None else self.max_eval_batches,
                                   doc_boundaries=self.doc_boundaries, pin_memory=self.pin_memory)

    def documents(self, split: str) -> Iterator[np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} has no documents: per-document evaluation "
                                  f"is for text data (data=text, data=wikitext103)")

    def split_stats(self, split: str) -> dict:
        """Synthetic examples have no bytes or words (None): only token metrics apply."""
        return {"tokens": self.eval_examples * self.seq_len, "documents": self.eval_examples,
                "bytes": None, "words": None}


class RandomTokensDataModule(SyntheticTaskModule):
    """Uniform random tokens of a model-sized vocabulary: measures throughput, needs no files."""

    task = "synthetic"
    metric = "perplexity"

    def __init__(self, tokenizer: Tokenizer | None = None, vocab_size: int = 50277, seq_len: int = 2048,
                 batch_size: int = 8, eval_batch_size: int | None = None, eval_examples: int = 64,
                 examples_per_epoch: int = 1 << 16, eval_seed: int = 1234, doc_boundaries: bool = False,
                 cache_dir: str = "~/.cache/mambalab", max_eval_batches: int | None = None,
                 prefetch: int = 4, pin_memory: bool | str = "auto") -> None:
        super().__init__(vocab_size, seq_len, batch_size, eval_batch_size, None, eval_examples,
                         1 << 30, examples_per_epoch, eval_seed, doc_boundaries, cache_dir,
                         max_eval_batches, prefetch, pin_memory)

    def generator(self) -> Generate:
        return functools.partial(_call, tasks.random_tokens, vocab_size=self.vocab_size)


class InductionHeadsDataModule(SyntheticTaskModule):
    """Induction heads (Mamba paper, Appendix E.1): vocab 16, trained at length 256 with batch 8,
    evaluated at `eval_lengths` (the paper: 2^6 .. 2^20) on the answer position only."""

    task = "induction_heads"
    metric = "accuracy"

    def __init__(self, tokenizer: Tokenizer | None = None, vocab_size: int = 16, seq_len: int = 256,
                 batch_size: int = 8, eval_batch_size: int | None = 64,
                 eval_lengths: list[int] | None = None, eval_examples: int = 512,
                 eval_tokens_per_batch: int = 1 << 20, examples_per_epoch: int = 1 << 16,
                 eval_seed: int = 1234, doc_boundaries: bool = False, cache_dir: str = "~/.cache/mambalab",
                 max_eval_batches: int | None = None, prefetch: int = 4,
                 pin_memory: bool | str = "auto") -> None:
        super().__init__(vocab_size, seq_len, batch_size, eval_batch_size, eval_lengths, eval_examples,
                         eval_tokens_per_batch, examples_per_epoch, eval_seed, doc_boundaries,
                         cache_dir, max_eval_batches, prefetch, pin_memory)

    def generator(self) -> Generate:
        return functools.partial(_call, tasks.induction_heads, vocab_size=self.vocab_size)


class SelectiveCopyingDataModule(SyntheticTaskModule):
    """Selective copying (Mamba paper, Appendix E.1): vocab 16 (noise and marker included), length
    4096 (the answer's K marker positions included), K = 16 data tokens to copy in order."""

    task = "selective_copying"
    metric = "accuracy"

    def __init__(self, tokenizer: Tokenizer | None = None, vocab_size: int = 16, seq_len: int = 4096,
                 num_data_tokens: int = 16, batch_size: int = 8, eval_batch_size: int | None = 64,
                 eval_lengths: list[int] | None = None, eval_examples: int = 512,
                 eval_tokens_per_batch: int = 1 << 20, examples_per_epoch: int = 1 << 16,
                 eval_seed: int = 1234, doc_boundaries: bool = False, cache_dir: str = "~/.cache/mambalab",
                 max_eval_batches: int | None = None, prefetch: int = 4,
                 pin_memory: bool | str = "auto") -> None:
        super().__init__(vocab_size, seq_len, batch_size, eval_batch_size, eval_lengths, eval_examples,
                         eval_tokens_per_batch, examples_per_epoch, eval_seed, doc_boundaries,
                         cache_dir, max_eval_batches, prefetch, pin_memory)
        self.num_data_tokens = int(num_data_tokens)

    def generator(self) -> Generate:
        return functools.partial(_call, tasks.selective_copying, vocab_size=self.vocab_size,
                                 num_data_tokens=self.num_data_tokens)


def _call(fn: Callable, rng: np.random.Generator, batch_size: int, seq_len: int, **kwargs) -> dict:
    return fn(rng, batch_size, seq_len, **kwargs)
