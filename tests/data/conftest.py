"""Fixtures for the data tests: small files the tests write, and the shared real data if present."""
from __future__ import annotations

from pathlib import Path

import pytest

from mambalab.data import ByteTokenizer

# CI keeps ../shared beside the clone; the data there is real but never needed by most tests.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
NEOX_TOKENIZER = SHARED_DATA / "gpt-neox-20b" / "tokenizer.json"


@pytest.fixture
def byte_tok() -> ByteTokenizer:
    return ByteTokenizer()


@pytest.fixture
def neox_path() -> Path:
    if not NEOX_TOKENIZER.is_file():
        pytest.skip(f"the GPT-NeoX tokenizer is not at {NEOX_TOKENIZER} (shared data absent)")
    return NEOX_TOKENIZER
