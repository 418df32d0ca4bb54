"""Data modules for text: local files (`data=text`) and WikiText from the hub (`data=wikitext103`)."""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator

from mambalab.data.lm import LMDataModule
from mambalab.data.sources import (DOCUMENT_SPLITS, FORMATS, expand_files, file_digest, held_out,
                                   load_hub_split, read_documents)
from mambalab.data.tokenizers import Tokenizer
from mambalab.data.wikitext import rebuild_articles, wikitext_detokenize

_DEFAULT_CACHE = "~/.cache/mambalab"


class TextDataModule(LMDataModule):
    """Local files by glob per split, or one set of files with a held-out validation fraction.

    Plain text is a document per file (`document_split=file`) or per blank-line-separated block
    (`blank_line`); WikiText raw files (`*.raw`, or `document_split=wikitext_article`) are split
    into articles; jsonl / json.gz / parquet take the `text_field` of each record.
    """

    def __init__(self, tokenizer: Tokenizer | None = None, train_files: str | list[str] | None = None,
                 validation_files: str | list[str] | None = None,
                 test_files: str | list[str] | None = None, format: str = "auto",
                 text_field: str = "text", document_split: str = "file",
                 validation_fraction: float = 0.0, split_seed: int = 0, seq_len: int = 2048,
                 batch_size: int = 4, eval_batch_size: int | None = None,
                 doc_boundaries: bool = False, cache_dir: str = _DEFAULT_CACHE,
                 num_proc: int | None = None, max_eval_batches: int | None = None,
                 prefetch: int = 4, pin_memory: bool | str = "auto", progress: bool = True) -> None:
        super().__init__(tokenizer, seq_len=seq_len, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, doc_boundaries=doc_boundaries,
                         cache_dir=cache_dir, num_proc=num_proc, max_eval_batches=max_eval_batches,
                         prefetch=prefetch, pin_memory=pin_memory, progress=progress)
        if format not in FORMATS:
            raise ValueError(f"data.format={format!r} is not one of {FORMATS}")
        if document_split not in DOCUMENT_SPLITS:
            raise ValueError(f"data.document_split={document_split!r} is not one of {DOCUMENT_SPLITS}")
        if not 0.0 <= validation_fraction < 1.0:
            raise ValueError(f"data.validation_fraction={validation_fraction} must be in [0, 1)")
        if validation_files and validation_fraction > 0:
            raise ValueError("give data.validation_files or data.validation_fraction, not both")
        if not train_files:
            raise ValueError("data.train_files is required: a path or glob, e.g. "
                             "data.train_files='corpus/*.jsonl.gz'")
        self.files = {"train": expand_files(train_files, "train_files")}
        if validation_files:
            self.files["validation"] = expand_files(validation_files, "validation_files")
        if test_files:
            self.files["test"] = expand_files(test_files, "test_files")
        self.format, self.text_field, self.document_split = format, text_field, document_split
        self.validation_fraction, self.split_seed = float(validation_fraction), int(split_seed)

    @property
    def splits(self) -> list[str]:
        names = ["train"]
        if "validation" in self.files or self.validation_fraction > 0:
            names.append("validation")
        if "test" in self.files:
            names.append("test")
        return names

    def cache_name(self) -> str:
        return f"text-{self.tokenizer.name}"

    def description(self) -> dict:
        def identity(path: str) -> list:
            return [os.path.basename(path), os.path.getsize(path), file_digest(path)]

        return {"source": "files",
                "files": {split: [identity(p) for p in paths] for split, paths in self.files.items()},
                "format": self.format, "text_field": self.text_field,
                "document_split": self.document_split,
                "validation_fraction": self.validation_fraction,
                "split_seed": self.split_seed if self.validation_fraction > 0 else None}

    def provenance(self) -> dict:
        return {"paths": self.files}

    def split_sources(self) -> dict[str, Callable[[], Iterator[str]]]:
        def read(split: str) -> Iterator[str]:
            return read_documents(self.files[split], self.format, self.text_field, self.document_split)

        sources: dict[str, Callable[[], Iterator[str]]] = {}
        if self.validation_fraction > 0:
            for keep in ("train", "validation"):
                sources[keep] = (lambda keep=keep: held_out(read("train"), self.validation_fraction,
                                                            self.split_seed, keep))
        else:
            sources["train"] = functools.partial(read, "train")
        for split in ("validation", "test"):
            if split in self.files:
                sources[split] = functools.partial(read, split)
        return sources


class WikiTextDataModule(LMDataModule):
    """WikiText-103 / -2 (raw) from the HF hub (`Salesforce/wikitext`), rebuilt into articles.

    Once its token cache exists the hub is not contacted again, so a cache carried to an offline
    machine is enough. `detokenize=true` undoes WikiText's spacing (" @-@ ") before tokenizing,
    as lm-evaluation-harness does.
    """

    def __init__(self, tokenizer: Tokenizer | None = None, dataset_name: str = "Salesforce/wikitext",
                 dataset_config: str = "wikitext-103-raw-v1", revision: str | None = None,
                 detokenize: bool = False, seq_len: int = 2048, batch_size: int = 4,
                 eval_batch_size: int | None = None, doc_boundaries: bool = False,
                 cache_dir: str = _DEFAULT_CACHE, num_proc: int | None = None,
                 max_eval_batches: int | None = None, prefetch: int = 4,
                 pin_memory: bool | str = "auto", progress: bool = True) -> None:
        super().__init__(tokenizer, seq_len=seq_len, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, doc_boundaries=doc_boundaries,
                         cache_dir=cache_dir, num_proc=num_proc, max_eval_batches=max_eval_batches,
                         prefetch=prefetch, pin_memory=pin_memory, progress=progress)
        self.dataset_name, self.dataset_config = dataset_name, dataset_config
        self.revision, self.detokenize = revision, bool(detokenize)

    @property
    def splits(self) -> list[str]:
        return ["train", "validation", "test"]

    def cache_name(self) -> str:
        return f"{self.dataset_config}-{self.tokenizer.name}"

    def description(self) -> dict:
        return {"source": f"hf:{self.dataset_name}/{self.dataset_config}", "revision": self.revision,
                "articles": "rebuilt", "detokenize": self.detokenize}

    def split_sources(self) -> dict[str, Callable[[], Iterator[str]]]:
        def articles(split: str) -> Iterator[str]:
            rows, _ = load_hub_split(self.dataset_name, self.dataset_config, split, self.revision)
            return rebuild_articles(rows)

        return {split: functools.partial(articles, split) for split in self.splits}

    def transform(self) -> Callable[[str], str] | None:
        return wikitext_detokenize if self.detokenize else None
