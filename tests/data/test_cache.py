from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mambalab.data import ByteTokenizer, TextDataModule
from mambalab.data.cache import TokenCache

from datagen import write_docs

REPO = Path(__file__).resolve().parents[2]


def _module(tmp_path: Path, tok, **kw) -> TextDataModule:
    return TextDataModule(tokenizer=tok, train_files=str(tmp_path / "train/*.txt"), seq_len=8,
                          batch_size=2, cache_dir=str(tmp_path / "cache"), num_proc=1, progress=False, **kw)


def test_layout_counts_and_documents(tmp_path, byte_tok):
    texts = write_docs(tmp_path / "train", 5)
    data = _module(tmp_path, byte_tok)
    cache = data.prepare()
    stream = np.asarray(cache.tokens("train"))
    assert stream.dtype == np.uint16  # 258 ids fit
    expected = [byte_tok.eos_id]
    for t in texts:
        expected += byte_tok.encode(t) + [byte_tok.eos_id]
    assert stream.tolist() == expected  # eos d0 eos d1 ... eos
    assert [d.tolist() for d in data.documents("train")] == [byte_tok.encode(t) for t in texts]
    stats = data.split_stats("train")
    assert stats["documents"] == 5
    assert stats["tokens"] == sum(len(t.encode()) for t in texts) == stats["bytes"]
    assert stats["words"] == sum(len(t.split()) for t in texts)
    meta = json.loads((cache.directory / "meta.json").read_text())
    assert meta["tokenizer"]["fingerprint"] == byte_tok.fingerprint() and meta["dtype"] == "uint16"


def test_parallel_build_matches_serial(tmp_path, byte_tok):
    write_docs(tmp_path / "train", 30)
    serial = _module(tmp_path, byte_tok).prepare()
    parallel = TextDataModule(tokenizer=byte_tok, train_files=str(tmp_path / "train/*.txt"),
                              cache_dir=str(tmp_path / "cache2"), num_proc=2, progress=True).prepare()
    assert np.array_equal(serial.tokens("train"), parallel.tokens("train"))
    assert np.array_equal(serial.offsets("train"), parallel.offsets("train"))


def test_reused_then_rebuilt_on_tokenizer_or_source_change(tmp_path, byte_tok):
    write_docs(tmp_path / "train", 4)
    first = _module(tmp_path, byte_tok)
    first.prepare()
    assert first.built_cache
    again = _module(tmp_path, ByteTokenizer())
    again.prepare()
    assert not again.built_cache and again.cache.directory == first.cache.directory
    other_tok = _module(tmp_path, ByteTokenizer(special_tokens=["<eos>", "<pad>", "<sep>"]))
    other_tok.prepare()
    assert other_tok.built_cache and other_tok.cache.directory != first.cache.directory
    (tmp_path / "train" / "doc_000.txt").write_text("changed text, changed size\n")
    changed = _module(tmp_path, byte_tok)
    changed.prepare()
    assert changed.built_cache and changed.cache.directory != first.cache.directory
    assert next(changed.documents("train")).tolist() == byte_tok.encode("changed text, changed size\n")


_BUILDER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from mambalab.data import ByteTokenizer, build_or_load
    cache_dir, marker, delay = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    def docs():
        for i in range(40):
            if i == 3:
                marker.write_text("started")
            time.sleep(delay)
            yield f"document {i} " * 20
    cache, built = build_or_load(cache_dir, "slow", {"source": "test"}, {"train": docs},
                                 ByteTokenizer(), num_proc=1, progress=False)
    print(json.dumps({"built": built, "dir": str(cache.directory)}))
""")


def _spawn(tmp_path: Path, marker: str, delay: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, "-c", _BUILDER, str(tmp_path / "cache"),
                             str(tmp_path / marker), str(delay)], stdout=subprocess.PIPE, env=env, text=True)


def _wait_for(path: Path, timeout_s: float = 60) -> None:
    deadline = time.time() + timeout_s
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_killed_build_leaves_nothing_complete_and_is_redone(tmp_path):
    proc = _spawn(tmp_path, "started", delay=0.5)
    _wait_for(tmp_path / "started")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cache_dir = tmp_path / "cache"
    assert not [p for p in cache_dir.iterdir() if (p / "meta.json").exists()]
    assert list(cache_dir.glob(".tmp-*"))  # the partial build is only a temporary folder
    proc = _spawn(tmp_path, "again", delay=0.0)
    result = json.loads(proc.communicate(timeout=120)[0].strip().splitlines()[-1])
    assert result["built"] and not list(cache_dir.glob(".tmp-*"))
    assert TokenCache(result["dir"]).stats("train")["documents"] == 40


def test_two_concurrent_builders_build_once(tmp_path):
    first = _spawn(tmp_path, "first", delay=0.15)  # a 6 s build
    _wait_for(tmp_path / "first")  # the first holds the lock and is mid-build
    second = _spawn(tmp_path, "second", delay=0.15)
    outputs = [p.communicate(timeout=120)[0].strip().splitlines() for p in (first, second)]
    results = [json.loads(lines[-1]) for lines in outputs]
    assert [r["built"] for r in results] == [True, False]
    assert results[0]["dir"] == results[1]["dir"]
    assert any("waiting" in line for line in outputs[1])  # it found the lock taken and waited
    assert not (tmp_path / "second").exists()  # the waiter never read its documents


def test_key_names_content_not_location_and_a_cache_alone_is_enough(tmp_path, byte_tok):
    import shutil

    from mambalab.data import CachedDataModule

    write_docs(tmp_path / "train", 6)
    first = _module(tmp_path, byte_tok)
    first.prepare()
    shutil.copytree(tmp_path / "train", tmp_path / "elsewhere" / "train")  # new paths and mtimes
    moved = _module(tmp_path / "elsewhere", byte_tok)
    moved.cache_dir = str(tmp_path / "cache")
    moved.prepare()
    assert not moved.built_cache
    shutil.rmtree(tmp_path / "train")  # the source is gone: the cache folder suffices
    cached = CachedDataModule(tokenizer=byte_tok, path=first.cache.directory.name,
                              cache_dir=str(tmp_path / "cache"), seq_len=8, batch_size=2)
    cached.prepare()
    assert cached.splits == ["train"] and cached.split_stats("train") == first.split_stats("train")
    assert next(cached.train_loader())["input_ids"].shape == (2, 8)
    saved = ByteTokenizer.from_pretrained(first.cache.directory / "tokenizer")  # carried with the cache
    assert saved.fingerprint() == byte_tok.fingerprint()
    wrong = CachedDataModule(tokenizer=ByteTokenizer(special_tokens=["<e>", "<p>", "<x>"]),
                             path=str(first.cache.directory), seq_len=8, batch_size=2)
    with pytest.raises(ValueError, match="was built with tokenizer"):
        wrong.prepare()
