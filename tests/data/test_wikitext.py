from __future__ import annotations

import time

import numpy as np
import pytest

import mambalab.data.text as text_module
from mambalab.data import TextDataModule, WikiTextDataModule
from mambalab.data.sources import HubUnavailableError

from datagen import WIKITEXT_LINES


def test_offline_and_not_cached_fails_at_once_pointing_to_data_text(tmp_path, byte_tok, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    data = WikiTextDataModule(tokenizer=byte_tok, dataset_config="wikitext-2-raw-v1",
                              cache_dir=str(tmp_path), progress=False)
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError) as info:
        data.prepare()
    assert time.perf_counter() - start < 30
    message = str(info.value)
    assert "not in the local cache" in message and "data=text data.train_files=" in message


def test_hub_rows_become_articles_and_a_built_cache_needs_no_hub(tmp_path, byte_tok, monkeypatch):
    hf_rows = ["" if not line.strip() else line for line in WIKITEXT_LINES]
    monkeypatch.setattr(text_module, "load_hub_split", lambda *a: (iter(hf_rows), "rev"))
    kw = dict(tokenizer=byte_tok, dataset_config="wikitext-2-raw-v1", seq_len=16, batch_size=1,
              cache_dir=str(tmp_path / "cache"), num_proc=1, progress=False)
    built = WikiTextDataModule(**kw)
    built.prepare()
    assert built.split_stats("validation")["documents"] == 2

    def unreachable(*args):
        raise AssertionError("the hub was contacted although the cache exists")

    monkeypatch.setattr(text_module, "load_hub_split", unreachable)
    reused = WikiTextDataModule(**kw)
    reused.prepare()
    assert not reused.built_cache
    # The raw file through data=text gives the very same tokens as the hub rows.
    (tmp_path / "wiki.valid.raw").write_text("".join(WIKITEXT_LINES))
    local = TextDataModule(tokenizer=byte_tok, train_files=str(tmp_path / "wiki.valid.raw"),
                           cache_dir=str(tmp_path / "cache"), num_proc=1, progress=False)
    local.prepare()
    assert np.array_equal(local.cache.tokens("train"), reused.cache.tokens("validation"))


def test_a_failed_build_leaves_no_temporary_folder(tmp_path, byte_tok, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    data = WikiTextDataModule(tokenizer=byte_tok, cache_dir=str(tmp_path), progress=False)
    with pytest.raises(HubUnavailableError):
        data.prepare()
    assert not [p for p in tmp_path.iterdir() if p.name != ".locks"]
