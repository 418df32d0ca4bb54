"""`data=cached`: train and evaluate from a token cache folder alone, without its source files.

For a machine that has the cache (built elsewhere with `python -m mambalab.data.prepare` and
carried over) but neither the corpus nor the hub. The tokenizer must be the one the cache was
built with: its fingerprint is checked, so ids can never silently mean other tokens.
"""
from __future__ import annotations

import os
from pathlib import Path

from mambalab.data.cache import TokenCache
from mambalab.data.lm import LMDataModule
from mambalab.data.tokenizers import Tokenizer


class CachedDataModule(LMDataModule):
    def __init__(self, tokenizer: Tokenizer | None = None, path: str | None = None,
                 seq_len: int = 2048, batch_size: int = 4, eval_batch_size: int | None = None,
                 doc_boundaries: bool = False, cache_dir: str = "~/.cache/mambalab",
                 max_eval_batches: int | None = None, prefetch: int = 4,
                 pin_memory: bool | str = "auto") -> None:
        super().__init__(tokenizer, seq_len=seq_len, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, doc_boundaries=doc_boundaries,
                         cache_dir=cache_dir, num_proc=1, max_eval_batches=max_eval_batches,
                         prefetch=prefetch, pin_memory=pin_memory, progress=False)
        if not path:
            raise ValueError("data.path is required: a token cache folder (the one holding meta.json), "
                             "or its name inside data.cache_dir")
        folder = Path(os.path.expandvars(os.path.expanduser(str(path))))
        if not folder.is_absolute() and not folder.exists():
            folder = Path(self.cache_dir) / folder
        if not (folder / "meta.json").is_file():
            raise FileNotFoundError(f"data.path={path}: {folder} is not a complete token cache (no "
                                    f"meta.json); build one with python -m mambalab.data.prepare")
        self.path = folder

    @property
    def splits(self) -> list[str]:
        return self.prepare().splits

    def cache_name(self) -> str:
        return self.path.name

    def prepare(self) -> TokenCache:
        if self._cache is None:
            cache = TokenCache(self.path)
            built_with = cache.meta["tokenizer"]
            if built_with["fingerprint"] != self.tokenizer.fingerprint():
                raise ValueError(
                    f"the token cache {self.path} was built with tokenizer {built_with['name']!r} "
                    f"(fingerprint {built_with['fingerprint']}, {built_with['vocab_size']} ids) but "
                    f"this run's is {self.tokenizer.name!r} ({self.tokenizer.fingerprint()}, "
                    f"{self.tokenizer.vocab_size} ids): choose the matching tokenizer= / tokenizer.path=")
            self._cache = cache
        return self._cache
