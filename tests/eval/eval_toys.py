"""Tiny stand-ins with the MambaLM forward contract, whose NLL a test can compute independently."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Out:
    loss: torch.Tensor | None
    logits: torch.Tensor | None


def _loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str) -> Out:
    nll = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=-100,
                          reduction="none")  # (B, L), 0 where -100
    if reduction == "none":
        return Out(nll, None)
    if reduction == "sum":
        return Out(nll.sum(), None)
    return Out(nll.sum() / (targets != -100).sum(), None)


class BigramLM(nn.Module):
    """logits[t] = table[input_ids[t]]: the NLL of a token depends only on the token before it."""

    def __init__(self, vocab_size: int, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter(torch.randn(vocab_size, vocab_size, generator=gen) * 2)

    def allocate_state(self, batch_size: int, device=None, dtype=None) -> dict:
        return {}

    def forward(self, input_ids, targets=None, doc_starts=None, state=None, reduction="mean"):
        logits = self.table[input_ids]  # (B, L, V)
        return _loss(logits, targets, reduction) if targets is not None else Out(None, logits)

    def token_nll(self, prev: int, token: int) -> float:
        row = self.table[prev].detach().double()
        return float(torch.logsumexp(row, 0) - row[token])


class RecurrentState:
    def __init__(self, h: torch.Tensor) -> None:
        self.h = h  # (B, D)


class ToyRecurrentLM(nn.Module):
    """h_t = decay * h_{t-1} + emb(x_t); logits = head(tanh(h_t)): every token sees all before it."""

    def __init__(self, vocab_size: int, dim: int = 16, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(vocab_size, dim)
        self.decay = nn.Parameter(torch.rand(dim) * 0.5 + 0.45)
        self.head = nn.Linear(dim, vocab_size)

    def allocate_state(self, batch_size: int, device=None, dtype=None) -> RecurrentState:
        return RecurrentState(torch.zeros(batch_size, self.emb.embedding_dim, device=device))

    def forward(self, input_ids, targets=None, doc_starts=None, state=None, reduction="mean"):
        x = self.emb(input_ids)  # (B, L, D)
        h = state.h if state is not None else x.new_zeros(x.shape[0], x.shape[2])
        hs = []
        for t in range(x.shape[1]):
            if doc_starts is not None:
                h = h * (~doc_starts[:, t]).unsqueeze(-1).to(h.dtype)
            h = self.decay * h + x[:, t]
            hs.append(h)
        if state is not None:
            state.h.copy_(h)
        logits = self.head(torch.tanh(torch.stack(hs, 1)))  # (B, L, V)
        return _loss(logits, targets, reduction) if targets is not None else Out(None, logits)


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255, end-of-text 256."""

    vocab_size = 257
    eos_id = 256
    name = "byte"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class ListData:
    """A data module over in-memory texts with the contract's evaluation surface.

    The split's stream is the documents joined by end-of-text, starting with one, and
    eval_loader cuts it into non-overlapping windows of seq_len + 1 tokens (inputs, targets).
    """

    metric = "perplexity"

    def __init__(self, texts: list[str], seq_len: int = 8, batch_size: int = 2) -> None:
        self.tokenizer = ByteTokenizer()
        self.texts = texts
        self.seq_len, self.batch_size = seq_len, batch_size
        self.vocab_size = self.tokenizer.vocab_size

    def stream(self) -> list[int]:
        out = [self.tokenizer.eos_id]
        for text in self.texts:
            out += self.tokenizer.encode(text) + [self.tokenizer.eos_id]
        return out

    def documents(self, split: str) -> Iterator[np.ndarray]:
        for text in self.texts:
            yield np.asarray(self.tokenizer.encode(text) + [self.tokenizer.eos_id])

    def split_stats(self, split: str) -> dict:
        return {"tokens": len(self.stream()) - 1, "documents": len(self.texts),
                "bytes": sum(len(t.encode()) for t in self.texts),
                "words": sum(len(t.split()) for t in self.texts)}

    def eval_loader(self, split, rank=0, world_size=1, max_batches=None, seq_len=None):
        seq_len = seq_len or self.seq_len
        stream = torch.tensor(self.stream())
        n_windows = math.ceil((len(stream) - 1) / seq_len)
        windows = []
        for i in range(n_windows):
            w = stream[i * seq_len: i * seq_len + seq_len + 1]
            inp, tgt = w[:-1], w[1:]
            pad = seq_len - len(inp)
            windows.append((F.pad(inp, (0, pad), value=0), F.pad(tgt, (0, pad), value=-100)))
        windows = windows[rank::world_size]
        batches = [windows[i:i + self.batch_size] for i in range(0, len(windows), self.batch_size)]
        for b, group in enumerate(batches):
            if max_batches is not None and b >= max_batches:
                return
            yield {"input_ids": torch.stack([g[0] for g in group]),
                   "targets": torch.stack([g[1] for g in group])}


class CopyTask:
    """A synthetic accuracy task: recall the first token at the last position (answer only)."""

    metric = "accuracy"
    tokenizer = None

    def __init__(self, vocab_size: int = 8, seq_len: int = 12, batch_size: int = 3) -> None:
        self.vocab_size, self.seq_len, self.batch_size = vocab_size, seq_len, batch_size

    def eval_loader(self, split, rank=0, world_size=1, max_batches=None, seq_len=None):
        seq_len = seq_len or self.seq_len
        gen = torch.Generator().manual_seed(7)
        for b in range(max_batches or 2):
            ids = torch.randint(0, self.vocab_size, (self.batch_size, seq_len + 1), generator=gen)
            targets = torch.full((self.batch_size, seq_len), -100)
            targets[:, -1] = ids[:, 0]
            yield {"input_ids": ids[:, :-1], "targets": targets}
