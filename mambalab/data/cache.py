"""The tokenize-once cache: one flat token file per split, document offsets, and meta.json.

Layout of `<cache_dir>/<name>-<key>/`:
  `<split>.bin`          the token stream: `eos d0 eos d1 ... eos dN-1 eos` (uint16 when every id
                         fits, else uint32), so every document token, and the end of every
                         document, is predicted from what precedes it
  `<split>.offsets.npy`  int64 (documents + 1,): offsets[i] = position of the eos before document
                         i; document i is bin[offsets[i] + 1 : offsets[i + 1]]
  `meta.json`            source, revision, tokenizer fingerprint, per-split counts
  `tokenizer/`           the tokenizer itself (save_pretrained), so the folder alone is enough
                         to train elsewhere (`data=cached`, `tokenizer.path=<folder>/tokenizer`)

`key` hashes everything that changes the tokens (source description, tokenizer fingerprint,
format version). A build writes into a temporary folder renamed into place when complete, under an
fcntl lock: a killed build leaves only a temporary folder (removed by the next builder), and of
several processes or ranks one builds while the others wait and then read.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mambalab.data.tokenizers import Tokenizer

CACHE_FORMAT = 1
_CHUNK_CHARS = 1 << 20  # ~1 MB of text per task: large enough to amortise IPC, small for balance


def cache_key(description: dict) -> str:
    blob = json.dumps({"format": CACHE_FORMAT, **description}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


class TokenCache:
    """A complete cache folder, read through memory maps."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        meta_path = self.directory / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.directory} is not a complete token cache (no meta.json)")
        self.meta = json.loads(meta_path.read_text())
        self.dtype = np.dtype(self.meta["dtype"])
        self._tokens: dict[str, np.memmap] = {}

    @property
    def splits(self) -> list[str]:
        return list(self.meta["splits"])

    def tokens(self, split: str) -> np.ndarray:
        """The split's whole token stream as a read-only memory map (no copy)."""
        self._check(split)
        if split not in self._tokens:
            path = self.directory / f"{split}.bin"
            self._tokens[split] = np.memmap(path, dtype=self.dtype, mode="r")
        return self._tokens[split]

    def offsets(self, split: str) -> np.ndarray:
        self._check(split)
        return np.load(self.directory / f"{split}.offsets.npy", mmap_mode="r")

    def documents(self, split: str) -> Iterator[np.ndarray]:
        tokens, offsets = self.tokens(split), self.offsets(split)
        for i in range(len(offsets) - 1):
            yield np.asarray(tokens[offsets[i] + 1: offsets[i + 1]])

    def stats(self, split: str) -> dict:
        self._check(split)
        return dict(self.meta["splits"][split])

    def _check(self, split: str) -> None:
        if split not in self.meta["splits"]:
            raise KeyError(f"split {split!r} is not in this data (it has {self.splits})")


def build_or_load(cache_dir: str | os.PathLike, name: str, description: dict,
                  splits: dict[str, Callable[[], Iterator[str]]], tokenizer: Tokenizer,
                  num_proc: int | None = None, progress: bool = True,
                  transform: Callable[[str], str] | None = None,
                  provenance: dict | None = None) -> tuple[TokenCache, bool]:
    """Return the cache for `description`, building it first if absent. Also says whether this call
    built it. `splits` maps a split name to a function returning its documents (called only when
    building); `transform` (picklable) is applied to each document before tokenizing;
    `provenance` is recorded in meta.json without being part of the key."""
    root = Path(os.path.expandvars(os.path.expanduser(str(cache_dir))))
    root.mkdir(parents=True, exist_ok=True)
    description = {**description, "tokenizer": tokenizer.fingerprint(), "eos_id": tokenizer.eos_id}
    key = cache_key(description)
    final = root / f"{_safe(name)}-{key}"
    if (final / "meta.json").is_file():
        return TokenCache(final), False
    with _locked(root / ".locks" / f"{final.name}.lock", final.name):
        if (final / "meta.json").is_file():  # another process built it while we waited
            return TokenCache(final), False
        for stale in root.glob(f".tmp-{final.name}-*"):  # left by killed builders: we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        tmp.mkdir()
        start = time.perf_counter()
        stats = {}
        try:
            for split, documents in splits.items():
                stats[split] = _tokenize_split(tmp, split, documents(), tokenizer, num_proc, progress,
                                               transform)
        except BaseException:  # a failed source (offline hub, bad file): leave nothing behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        meta = {"name": name, "key": key, **{k: v for k, v in description.items() if k != "tokenizer"},
                "tokenizer": {"name": tokenizer.name, "fingerprint": description["tokenizer"],
                              "vocab_size": tokenizer.vocab_size, "eos_id": tokenizer.eos_id},
                "dtype": token_dtype(tokenizer.vocab_size).name, "splits": stats,
                "provenance": provenance or {},
                "build_seconds": round(time.perf_counter() - start, 2), "builder_pid": os.getpid(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "format": CACHE_FORMAT}
        tokenizer.save_pretrained(tmp / "tokenizer")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        os.rename(tmp, final)  # atomic on one filesystem: the folder appears complete or not at all
    return TokenCache(final), True


def _tokenize_split(out: Path, split: str, documents: Iterator[str], tokenizer: Tokenizer,
                    num_proc: int | None, progress: bool, transform) -> dict:
    dtype = token_dtype(tokenizer.vocab_size)
    eos = tokenizer.eos_id
    offsets: list[int] = []
    counts = {"tokens": 0, "documents": 0, "bytes": 0, "words": 0}
    position = 0
    with open(out / f"{split}.bin", "wb") as f, _progress(progress, f"tokenizing {split}") as advance:
        for ids, lengths, n_bytes, n_words in _tokenized_chunks(documents, tokenizer, num_proc, transform):
            f.write(ids.astype(dtype, copy=False).tobytes())
            starts = position + np.concatenate([[0], np.cumsum(lengths[:-1] + 1)]) if len(lengths) else []
            offsets.extend(int(s) for s in starts)
            position += len(ids)
            counts["tokens"] += int(lengths.sum())
            counts["documents"] += len(lengths)
            counts["bytes"] += n_bytes
            counts["words"] += n_words
            advance(len(lengths), int(lengths.sum()), n_bytes)
        f.write(np.array([eos], dtype=dtype).tobytes())
    if counts["documents"] == 0:
        raise ValueError(f"split {split!r} has no non-empty document: check its files and data.format")
    offsets.append(position)
    np.save(out / f"{split}.offsets.npy", np.asarray(offsets, dtype=np.int64))
    counts["stream_tokens"] = position + 1  # document tokens + one eos before each + the final eos
    return counts


def _tokenized_chunks(documents: Iterator[str], tokenizer: Tokenizer, num_proc: int | None, transform):
    """Yield (ids, lengths, bytes, words) per chunk of documents, in document order, tokenizing
    in `num_proc` worker processes with a bounded number of chunks in flight (bounded memory)."""
    num_proc = num_proc or _usable_cores()
    chunks = _chunked(documents)
    if num_proc <= 1:
        _init_worker(tokenizer, transform)
        for chunk in chunks:
            yield _tokenize_chunk(chunk)
        return
    import multiprocessing as mp

    # fork: workers inherit the loaded tokenizer instead of re-importing torch (spawn takes seconds)
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(num_proc, initializer=_init_worker, initargs=(tokenizer, transform)) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.apply_async(_tokenize_chunk, (chunk,)))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _usable_cores() -> int:
    """Cores this process may run on (a job scheduler's limit, not the whole machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _chunked(documents: Iterator[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    size = 0
    for doc in documents:
        if not doc or not doc.strip():
            continue
        chunk.append(doc)
        size += len(doc)
        if size >= _CHUNK_CHARS:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


_WORKER: dict = {}


def _init_worker(tokenizer: Tokenizer, transform) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # parallel over processes, not inside each
    _WORKER["tokenizer"], _WORKER["transform"] = tokenizer, transform


def _tokenize_chunk(texts: list[str]) -> tuple[np.ndarray, np.ndarray, int, int]:
    tokenizer, transform = _WORKER["tokenizer"], _WORKER["transform"]
    if transform is not None:
        texts = [transform(t) for t in texts]
    encoded = tokenizer.encode_batch(texts)
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    ids = np.empty(int(lengths.sum()) + len(encoded), dtype=np.uint32)
    position = 0
    for e in encoded:  # eos before each document
        ids[position] = tokenizer.eos_id
        ids[position + 1: position + 1 + len(e)] = e
        position += 1 + len(e)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_words = sum(len(t.split()) for t in texts)
    return ids, lengths, n_bytes, n_words


@contextmanager
def _locked(path: Path, what: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[mambalab.data] another process is building the token cache {what}; waiting",
                  flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _progress(enabled: bool, description: str):
    if not enabled:
        yield lambda docs, tokens, n_bytes: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("{task.fields[docs]:,} docs  {task.fields[tokens]:,} tokens"),
               TransferSpeedColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(description, total=None, docs=0, tokens=0)
        totals = {"docs": 0, "tokens": 0}

        def advance(docs: int, tokens: int, n_bytes: int) -> None:
            totals["docs"] += docs
            totals["tokens"] += tokens
            bar.update(task, advance=n_bytes, **totals)  # bytes of text: the speed column's unit

        yield advance


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
