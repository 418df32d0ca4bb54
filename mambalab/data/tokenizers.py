"""Tokenizers: the GPT-NeoX BPE (through transformers) and a file-free UTF-8 byte tokenizer.

Both expose the same small surface the rest of mambalab uses: `encode`, `encode_batch`, `decode`,
`vocab_size` (ids the model must cover), `eos_id`, `name`, `fingerprint()` (changes whenever the
ids a text maps to change: part of the token cache's key) and `save_pretrained(dir)`.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from mambalab.hub import local_files_only, offline_by_env, short_hub_timeouts


@runtime_checkable
class Tokenizer(Protocol):
    name: str
    vocab_size: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...
    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...
    def decode(self, ids: list[int]) -> str: ...
    def fingerprint(self) -> str: ...
    def save_pretrained(self, directory: str | os.PathLike) -> None: ...


class ByteTokenizer:
    """UTF-8 bytes are ids 0..255; special tokens follow (256 = end-of-text, 257 = padding, ...).

    Needs no files, so tests and offline quick starts use it. Decoding skips special ids and
    replaces invalid UTF-8 (a model may emit half of a multi-byte character).
    """

    def __init__(self, special_tokens: list[str] | tuple[str, ...] = ("<|endoftext|>", "<|padding|>")) -> None:
        special_tokens = list(special_tokens)
        if not special_tokens:
            raise ValueError("tokenizer.special_tokens must name at least the end-of-text token (the first)")
        self.special_tokens = special_tokens
        self.name = "byte"
        self.vocab_size = 256 + len(special_tokens)
        self.eos_id = 256  # the first special token separates documents
        self.pad_id = 257 if len(special_tokens) > 1 else 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(t.encode("utf-8")) for t in texts]

    def decode(self, ids: list[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")

    def fingerprint(self) -> str:
        return _digest({"kind": "byte-utf8-v1", "special_tokens": self.special_tokens})

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / "byte_tokenizer.json").write_text(json.dumps(
            {"_target_": "mambalab.data.ByteTokenizer", "special_tokens": self.special_tokens}, indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> ByteTokenizer:
        saved = json.loads((Path(directory) / "byte_tokenizer.json").read_text())
        return cls(special_tokens=saved["special_tokens"])

    def __repr__(self) -> str:
        return f"ByteTokenizer(vocab_size={self.vocab_size}, eos_id={self.eos_id})"


class HFTokenizer:
    """A transformers fast tokenizer: a hub id (`name`) or a local `tokenizer.json` / folder (`path`).

    `path` wins over `name`, so an offline machine only needs `tokenizer.path=...`. The vocabulary
    size is `len(tokenizer)` (base vocabulary plus added tokens: 50277 for GPT-NeoX), the number of
    ids that can actually occur.
    """

    def __init__(self, name: str = "EleutherAI/gpt-neox-20b", path: str | None = None,
                 revision: str | None = None, eos_token: str = "<|endoftext|>",
                 pad_token: str | None = "<|padding|>") -> None:
        self._tok = _load_hf_tokenizer(name=name, path=path, revision=revision)
        if eos_token not in self._tok.get_vocab():
            raise ValueError(f"tokenizer {path or name} has no end-of-text token {eos_token!r}: "
                             f"set tokenizer.eos_token to one of its special tokens "
                             f"{self._tok.all_special_tokens or '(none declared)'}")
        self._tok.eos_token = eos_token
        if pad_token is not None and pad_token in self._tok.get_vocab():
            self._tok.pad_token = pad_token
        self.name = _short_name(path, name)
        self.source = str(path or name)
        self.revision = revision
        self.vocab_size = len(self._tok)
        self.eos_id = int(self._tok.convert_tokens_to_ids(eos_token))
        self.pad_id = self._tok.pad_token_id

    @property
    def hf_tokenizer(self):
        return self._tok

    def encode(self, text: str) -> list[int]:
        return self._tok.backend_tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def fingerprint(self) -> str:
        # The serialized tokenizer holds the vocabulary, merges, normalizer and pre-tokenizer:
        # everything that decides the ids of a text.
        return _digest({"kind": "hf-fast", "tokenizer": self._tok.backend_tokenizer.to_str(),
                        "eos": self.eos_id})

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        self._tok.save_pretrained(str(directory))

    def __repr__(self) -> str:
        return f"HFTokenizer({self.source!r}, vocab_size={self.vocab_size}, eos_id={self.eos_id})"


def _load_hf_tokenizer(name: str, path: str | None, revision: str | None):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if path:
        local = Path(os.path.expanduser(path))
        if local.is_file():
            return PreTrainedTokenizerFast(tokenizer_file=str(local))
        if local.is_dir():
            if (local / "tokenizer.json").is_file() and not (local / "tokenizer_config.json").is_file():
                return PreTrainedTokenizerFast(tokenizer_file=str(local / "tokenizer.json"))
            return AutoTokenizer.from_pretrained(str(local), use_fast=True)
        raise FileNotFoundError(f"tokenizer.path={path} does not exist: give a tokenizer.json file or "
                                f"a folder saved with save_pretrained")
    short_hub_timeouts()
    offline = offline_by_env()
    try:
        # Unreachable hub: the local cache only, which fails at once instead of retrying for a minute.
        return AutoTokenizer.from_pretrained(name, revision=revision, use_fast=True,
                                             local_files_only=local_files_only())
    except Exception as exc:  # offline, no network, or not cached: say what to do instead
        why = "offline mode is on (HF_HUB_OFFLINE)" if offline else "the hub could not be reached"
        raise RuntimeError(
            f"cannot load tokenizer {name!r}: {why} and it is not in the local HF cache "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).\n"
            f"Point to a local copy instead, e.g.\n"
            f"  python -m mambalab.train tokenizer=gpt_neox tokenizer.path=/path/to/gpt-neox-20b/tokenizer.json\n"
            f"or use tokenizer=byte, which needs no files.") from None


def _short_name(path: str | None, name: str) -> str:
    """'gpt-neox-20b' for the hub id, its folder, or the tokenizer.json inside that folder."""
    if path:
        local = Path(os.path.expanduser(path))
        return local.parent.name if local.is_file() else local.name
    return name.rstrip("/").split("/")[-1]


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
