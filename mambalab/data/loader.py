"""Loaders: an infinite, exactly resumable training loader and a finite, fixed-order eval loader.

Batch `k` of a training loader is a pure function of (seed, rank, world size, k), so its state is
one counter: the number of batches handed out. A background thread builds the next batches (from
a memory map, pinned when CUDA is present); it never advances the state, which counts only
batches the caller received, so a checkpoint taken at any moment resumes at the exact next batch.
"""
from __future__ import annotations

import queue
import threading
import warnings
from collections.abc import Iterator

import numpy as np
import torch

IGNORE_INDEX = -100  # targets that are not scored (cross-entropy's ignore_index)


def to_torch(batch: dict[str, np.ndarray], pin: bool) -> dict[str, torch.Tensor]:
    out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
    return {k: v.pin_memory() for k, v in out.items()} if pin else out


def resolve_pin(pin_memory: bool | str) -> bool:
    if pin_memory == "auto":
        return torch.cuda.is_available()
    return bool(pin_memory)


class PrefetchLoader:
    """Base of the training loaders: subclasses define `make_batch(k)` and `batches_per_epoch`."""

    batches_per_epoch: int

    def __init__(self, prefetch: int = 4, pin_memory: bool | str = "auto") -> None:
        self._next = 0  # batches handed to the caller so far == index of the next one
        self._prefetch = max(1, int(prefetch))
        self._pin = resolve_pin(pin_memory)
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()

    def make_batch(self, index: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def signature(self) -> dict:
        """What must match for a saved position to mean the same batches."""
        return {}

    @property
    def epoch(self) -> int:
        return self._next // self.batches_per_epoch

    @property
    def batch_in_epoch(self) -> int:
        return self._next % self.batches_per_epoch

    def __iter__(self) -> PrefetchLoader:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._thread is None:
            self._start()
        index, item = self._queue.get()
        if isinstance(item, BaseException):
            self._thread = None
            raise RuntimeError(f"building batch {index} failed") from item
        assert index == self._next, (index, self._next)
        self._next += 1
        return item

    def state_dict(self) -> dict:
        return {"next_batch": self._next, **self.signature()}

    def load_state_dict(self, state: dict) -> None:
        self.close()
        self._next = self.resume_index(state)

    def resume_index(self, state: dict) -> int:
        mismatch = {k: (state.get(k), v) for k, v in self.signature().items() if state.get(k) != v}
        if mismatch:
            raise ValueError(f"the saved loader state does not match this loader "
                             f"(key: (saved, now)) {mismatch}; resume with the same data settings")
        return int(state["next_batch"])

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            while self._thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    self._queue.get(timeout=0.05)
                except queue.Empty:
                    pass
            self._thread.join()
        self._thread, self._queue = None, None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _start(self) -> None:
        self._stop = threading.Event()
        self._queue = queue.Queue(maxsize=self._prefetch)
        self._thread = threading.Thread(target=self._produce, args=(self._next, self._stop, self._queue),
                                        daemon=True, name="mambalab-prefetch")
        self._thread.start()

    def _produce(self, start: int, stop: threading.Event, out: queue.Queue) -> None:
        index = start
        while not stop.is_set():
            try:
                item = to_torch(self.make_batch(index), self._pin)
            except BaseException as exc:  # handed to the consumer, raised there
                item = exc
            while not stop.is_set():
                try:
                    out.put((index, item), timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return
            index += 1


def window_count(n_tokens: int, seq_len: int) -> int:
    """Full windows of seq_len + 1 tokens, consecutive windows sharing one token (each token is a
    target exactly once)."""
    return max(0, (n_tokens - 1) // seq_len)


def doc_starts_mask(first_tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> np.ndarray:
    """(B, seq_len) bool: True at the first token of a document inside each input window.
    `first_tokens` is the sorted stream positions of documents' first tokens."""
    mask = np.zeros((len(starts), seq_len), dtype=bool)
    lo = np.searchsorted(first_tokens, starts)
    hi = np.searchsorted(first_tokens, starts + seq_len)
    for row, (a, b) in enumerate(zip(lo, hi)):
        mask[row, first_tokens[a:b] - starts[row]] = True
    return mask


class WindowLoader(PrefetchLoader):
    """Training batches of a token stream: a seeded permutation of windows per epoch; global batch
    g of an epoch is windows perm[g*B:(g+1)*B], and rank r takes g = b*world_size + r at its step b.
    Ranks are disjoint, together they cover the epoch (minus < world_size*B leftover windows), and
    every rank has the same number of batches."""

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, rank: int = 0,
                 world_size: int = 1, seed: int = 0, first_tokens: np.ndarray | None = None,
                 prefetch: int = 4, pin_memory: bool | str = "auto") -> None:
        super().__init__(prefetch=prefetch, pin_memory=pin_memory)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.tokens, self.seq_len, self.batch_size = tokens, int(seq_len), int(batch_size)
        self.rank, self.world_size, self.seed = rank, world_size, int(seed)
        self.first_tokens = first_tokens
        self.n_windows = window_count(len(tokens), self.seq_len)
        self.batches_per_epoch = self.n_windows // (world_size * self.batch_size)
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"the training split has {len(tokens):,} tokens: {self.n_windows} windows of "
                f"seq_len+1={self.seq_len + 1}, fewer than one batch for each of {world_size} rank(s) "
                f"(batch_size={self.batch_size}); lower data.seq_len or data.batch_size, or add data")
        self._perm_epoch, self._perm = -1, np.empty(0, dtype=np.int64)
        self._perm_lock = threading.Lock()  # the prefetch thread and the caller may both ask

    def signature(self) -> dict:
        return {"seed": self.seed, "seq_len": self.seq_len, "n_windows": self.n_windows}

    def state_dict(self) -> dict:
        consumed = self.batch_in_epoch * self.world_size * self.batch_size
        return {**super().state_dict(), "epoch": self.epoch, "consumed_windows": consumed,
                "world_size": self.world_size, "batch_size": self.batch_size}

    def resume_index(self, state: dict) -> int:
        super().resume_index(state)
        if (state.get("world_size"), state.get("batch_size")) == (self.world_size, self.batch_size):
            return int(state["next_batch"])
        # Another world size or batch size: the windows consumed so far are a prefix of the
        # epoch's permutation, so continue from there (at most one global batch is repeated).
        step = state["consumed_windows"] // (self.world_size * self.batch_size)
        warnings.warn(f"resuming the loader with world_size={self.world_size}, batch_size="
                      f"{self.batch_size} (saved with {state.get('world_size')}, "
                      f"{state.get('batch_size')}): continuing at epoch {state['epoch']}, "
                      f"window {state['consumed_windows']} of the same order", stacklevel=3)
        return int(state["epoch"]) * self.batches_per_epoch + int(step)

    def epoch_order(self, epoch: int) -> np.ndarray:
        with self._perm_lock:
            if epoch != self._perm_epoch:
                rng = np.random.default_rng([self.seed, epoch])
                self._perm, self._perm_epoch = rng.permutation(self.n_windows), epoch
            return self._perm

    def window_ids(self, index: int) -> np.ndarray:
        epoch, step = divmod(index, self.batches_per_epoch)
        g = step * self.world_size + self.rank
        return self.epoch_order(epoch)[g * self.batch_size:(g + 1) * self.batch_size]

    def make_batch(self, index: int) -> dict[str, np.ndarray]:
        starts = self.window_ids(index) * self.seq_len
        return windows_batch(self.tokens, starts, self.seq_len, self.first_tokens)


def windows_batch(tokens: np.ndarray, starts: np.ndarray, seq_len: int,
                  first_tokens: np.ndarray | None, pad_id: int = 0) -> dict[str, np.ndarray]:
    """Cut windows of seq_len + 1 tokens at `starts`; a window running past the end is padded
    (input pad_id, target IGNORE_INDEX)."""
    B = len(starts)
    chunk = np.full((B, seq_len + 1), -1, dtype=np.int64)  # (B, L + 1)
    for row, s in enumerate(starts):
        piece = tokens[s:s + seq_len + 1]
        chunk[row, :len(piece)] = piece
    input_ids = chunk[:, :-1].copy()  # (B, L)
    targets = chunk[:, 1:].copy()  # (B, L)
    input_ids[input_ids < 0] = pad_id
    targets[targets < 0] = IGNORE_INDEX
    batch = {"input_ids": input_ids, "targets": targets}
    if first_tokens is not None:
        batch["doc_starts"] = doc_starts_mask(first_tokens, np.asarray(starts), seq_len)
    return batch


class EvalWindowLoader:
    """Fixed-order evaluation batches: every target of the split scored exactly once (the last
    window padded). Global batch g holds windows [g*B, (g+1)*B); rank r takes g = r, r + W, ...;
    `max_batches` caps global batches, so a capped evaluation scores the same windows on any
    number of ranks."""

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, rank: int = 0,
                 world_size: int = 1, max_batches: int | None = None,
                 first_tokens: np.ndarray | None = None, pad_id: int = 0,
                 pin_memory: bool | str = "auto") -> None:
        self.tokens, self.seq_len, self.batch_size = tokens, int(seq_len), int(batch_size)
        self.first_tokens, self.pad_id, self._pin = first_tokens, pad_id, resolve_pin(pin_memory)
        n_targets = len(tokens) - 1
        self.n_windows = -(-n_targets // self.seq_len)  # ceil: the last, partial window is padded
        n_global = -(-self.n_windows // self.batch_size)
        if max_batches is not None:
            n_global = min(n_global, int(max_batches))
        self.global_batches = list(range(rank, n_global, world_size))

    def __len__(self) -> int:
        return len(self.global_batches)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for g in self.global_batches:
            ids = np.arange(g * self.batch_size, min((g + 1) * self.batch_size, self.n_windows))
            batch = windows_batch(self.tokens, ids * self.seq_len, self.seq_len, self.first_tokens,
                                  self.pad_id)
            yield to_torch(batch, self._pin)
