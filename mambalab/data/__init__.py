"""Tokenizers, text sources, the tokenize-once cache, the resumable loader and synthetic tasks.

    tok = instantiate(cfg.tokenizer)                # ByteTokenizer | HFTokenizer
    data = instantiate(cfg.data, tokenizer=tok)     # a data module; see docs/architecture.md
    data.prepare(); loader = data.train_loader(rank, world_size, seed)

Names are imported on first use, so tokenizing (`build_or_load`, the tokenizers) does not pay for
importing torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "TokenCache": "cache", "build_or_load": "cache", "cache_key": "cache",
    "CachedDataModule": "cached",
    "check_vocab": "checks",
    "LMDataModule": "lm",
    "IGNORE_INDEX": "loader", "EvalWindowLoader": "loader", "PrefetchLoader": "loader",
    "WindowLoader": "loader",
    "InductionHeadsDataModule": "synthetic", "RandomTokensDataModule": "synthetic",
    "SelectiveCopyingDataModule": "synthetic", "SyntheticTaskModule": "synthetic",
    "TextDataModule": "text", "WikiTextDataModule": "text",
    "ByteTokenizer": "tokenizers", "HFTokenizer": "tokenizers", "Tokenizer": "tokenizers",
    "is_article_title": "wikitext", "rebuild_articles": "wikitext",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mambalab.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mambalab.data.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
