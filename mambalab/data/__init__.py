"""Tokenizers, text sources, the tokenize-once cache, the resumable loader and synthetic tasks.

    tok = instantiate(cfg.tokenizer)                # ByteTokenizer | HFTokenizer
    data = instantiate(cfg.data, tokenizer=tok)     # a data module; see docs/architecture.md
    data.prepare(); loader = data.train_loader(rank, world_size, seed)
"""
from mambalab.data.cache import TokenCache, build_or_load, cache_key
from mambalab.data.cached import CachedDataModule
from mambalab.data.checks import check_vocab
from mambalab.data.lm import LMDataModule
from mambalab.data.loader import IGNORE_INDEX, EvalWindowLoader, PrefetchLoader, WindowLoader
from mambalab.data.synthetic import (InductionHeadsDataModule, RandomTokensDataModule,
                                     SelectiveCopyingDataModule, SyntheticTaskModule)
from mambalab.data.text import TextDataModule, WikiTextDataModule
from mambalab.data.tokenizers import ByteTokenizer, HFTokenizer, Tokenizer
from mambalab.data.wikitext import is_article_title, rebuild_articles

__all__ = [
    "IGNORE_INDEX", "ByteTokenizer", "CachedDataModule", "EvalWindowLoader", "HFTokenizer", "InductionHeadsDataModule",
    "LMDataModule", "PrefetchLoader", "RandomTokensDataModule", "SelectiveCopyingDataModule",
    "SyntheticTaskModule", "TextDataModule", "TokenCache", "Tokenizer", "WikiTextDataModule",
    "WindowLoader", "build_or_load", "cache_key", "check_vocab", "is_article_title", "rebuild_articles",
]
