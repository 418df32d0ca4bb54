"""Where documents come from: local files (txt, jsonl, json.gz, parquet, WikiText raw) and the hub.

Every reader yields one `str` per document, in a fixed order (files sorted by name), so the same
inputs always give the same token stream.
"""
from __future__ import annotations

import glob
import gzip
import hashlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mambalab.hub import hub_reachable, short_hub_timeouts

from mambalab.data.wikitext import rebuild_articles

FORMATS = ("auto", "txt", "jsonl", "json.gz", "parquet", "wikitext")
DOCUMENT_SPLITS = ("file", "blank_line", "wikitext_article")


def expand_files(patterns: str | list[str] | None, what: str) -> list[str]:
    """Globs (with `~` and env vars, `**` allowed) to a sorted list of files; none found is an error."""
    if patterns is None:
        return []
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [str(patterns)]
    files: list[str] = []
    for pattern in patterns:
        pattern = os.path.expandvars(os.path.expanduser(str(pattern)))
        matched = sorted(glob.glob(pattern, recursive=True))
        matched = [m for m in matched if os.path.isfile(m)]
        if not matched:
            raise FileNotFoundError(f"data.{what}={pattern!r} matches no file (a path or glob, e.g. "
                                    f"'data/*.jsonl.gz'; relative paths are from the working directory)")
        files.extend(os.path.abspath(m) for m in matched)
    return files


def file_digest(path: str) -> str:
    """sha256 of a file's bytes: names the content, wherever the file lives and whatever its mtime
    (a copied corpus keeps its cache key; an edited one gets a new key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:20]


def detect_format(path: str, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"data.format={fmt!r} is not one of {FORMATS}")
    if fmt != "auto":
        return fmt
    name = Path(path).name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".raw") or name.startswith("wiki."):
        return "wikitext"
    if name.endswith((".txt", ".txt.gz", ".text", ".md")):
        return "txt"
    raise ValueError(f"cannot tell the format of {path}: set data.format to one of {FORMATS[1:]}")


def _open_text(path: str) -> io.TextIOBase:
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def read_documents(files: list[str], fmt: str, text_field: str, document_split: str) -> Iterator[str]:
    """Documents of `files`, in order. `document_split` applies to plain text (txt) files:
    `file` = one document per file, `blank_line` = one per blank-line-separated block,
    `wikitext_article` = WikiText articles. WikiText-format files are always split into articles."""
    if document_split not in DOCUMENT_SPLITS:
        raise ValueError(f"data.document_split={document_split!r} is not one of {DOCUMENT_SPLITS}")
    for path in files:
        kind = detect_format(path, fmt)
        if kind == "jsonl":
            yield from _read_jsonl(path, text_field)
        elif kind == "parquet":
            yield from _read_parquet(path, text_field)
        elif kind == "wikitext" or document_split == "wikitext_article":
            with _open_text(path) as f:
                yield from rebuild_articles(f)
        elif document_split == "blank_line":
            with _open_text(path) as f:
                yield from _blank_line_blocks(f)
        else:
            with _open_text(path) as f:
                text = f.read()
            if text.strip():
                yield text


def _read_jsonl(path: str, text_field: str) -> Iterator[str]:
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if text_field not in record:
                raise KeyError(f"{path}:{lineno}: no field {text_field!r} (fields: {sorted(record)}); "
                               f"set data.text_field")
            yield record[text_field]


def _read_parquet(path: str, text_field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    if text_field not in parquet.schema_arrow.names:
        raise KeyError(f"{path}: no column {text_field!r} (columns: {parquet.schema_arrow.names}); "
                       f"set data.text_field")
    for batch in parquet.iter_batches(columns=[text_field], batch_size=1024):
        yield from (t for t in batch.column(0).to_pylist() if t is not None)


def _blank_line_blocks(lines: io.TextIOBase) -> Iterator[str]:
    block: list[str] = []
    for line in lines:
        if line.strip():
            block.append(line)
        elif block:
            yield "".join(block)
            block = []
    if block:
        yield "".join(block)


def held_out(documents: Iterator[str], fraction: float, seed: int, keep: str) -> Iterator[str]:
    """Split a document stream by a seeded coin per document: `keep="validation"` yields those that
    fall in the held-out `fraction`, `keep="train"` the rest. Two passes give complementary sets."""
    rng = np.random.default_rng(seed)
    coins = np.empty(0)
    for i, doc in enumerate(documents):
        if i % 4096 == 0:  # draw in blocks: same order of draws on every pass, cheap per document
            coins = rng.random(4096)
        in_validation = coins[i % 4096] < fraction
        if in_validation == (keep == "validation"):
            yield doc


def load_hub_split(dataset_name: str, dataset_config: str | None, split: str,
                   revision: str | None) -> tuple[Iterator[str], str]:
    """Rows of a hub dataset's `text` column, and the revision (fingerprint) actually loaded.

    Fails at once, never retrying, when the hub cannot be reached and the dataset is not cached.
    """
    import datasets

    short_hub_timeouts()
    if not hub_reachable():
        _go_offline(datasets)  # read from the local cache only: fails at once instead of retrying
    try:
        ds = datasets.load_dataset(dataset_name, dataset_config, split=split, revision=revision)
    except Exception as exc:  # connection errors come as many types; all mean the same here
        raise HubUnavailableError(dataset_name, dataset_config, exc) from None
    loaded_revision = revision or getattr(ds, "_fingerprint", None) or "unknown"
    return (row["text"] for row in ds), str(loaded_revision)


class HubUnavailableError(RuntimeError):
    def __init__(self, name: str, config: str | None, exc: BaseException) -> None:
        offline = any(os.environ.get(v, "").lower() in {"1", "true", "yes"}
                      for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
        why = ("offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) or the hub is unreachable"
               if offline else "the hub could not be reached")
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        super().__init__(
            f"cannot load dataset {name!r} ({config}): {why} and it is not in the local cache "
            f"({type(exc).__name__}: {first}).\n"
            f"Train on local files instead with data=text, e.g. with WikiText's raw files:\n"
            f"  python -m mambalab.train data=text data.train_files='/path/to/wiki.train.raw' "
            f"data.validation_files='/path/to/wiki.valid.raw' data.test_files='/path/to/wiki.test.raw'\n"
            f"or any text: data.train_files='corpus/*.jsonl.gz' data.validation_fraction=0.01")


def _go_offline(datasets_module) -> None:
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    datasets_module.config.HF_HUB_OFFLINE = True
    datasets_module.config.HF_DATASETS_OFFLINE = True
