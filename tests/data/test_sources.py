from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mambalab.data import TextDataModule, is_article_title, rebuild_articles
from mambalab.data.sources import held_out, read_documents

from datagen import WIKITEXT_LINES, write_docs


def test_article_titles_but_not_sections():
    assert is_article_title(" = Alpha Article = \n")
    assert is_article_title(" = Alpha = Beta = ")  # '=' inside a title is still a title
    assert not is_article_title(" = = History = = \n")
    assert not is_article_title(" = = = Early = = = \n")
    assert not is_article_title(" Alpha = beta . \n")


def test_rebuild_articles_from_raw_lines_and_hf_rows_agree():
    articles = list(rebuild_articles(WIKITEXT_LINES))
    assert len(articles) == 2
    assert articles[0].startswith(" = Alpha Article = \n\n Alpha is")
    assert " = = History = = \n" in articles[0] and " Early times . \n" in articles[0]
    assert articles[1] == " = Beta = \n\n Beta follows alpha . \n"
    # The HF dataset gives blank lines as "" instead of " \n": same articles.
    hf_rows = ["" if not line.strip() else line for line in WIKITEXT_LINES]
    assert list(rebuild_articles(hf_rows)) == articles


def test_every_source_type(tmp_path):
    texts = ["first document\nwith two lines\n", "second one\n", "third, ünïcode\n"]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    with gzip.open(tmp_path / "b.json.gz", "wt") as f:
        f.write("".join(json.dumps({"body": t}) + "\n" for t in texts))
    pq.write_table(pa.table({"text": texts}), tmp_path / "c.parquet")
    (tmp_path / "d.txt").write_text("\n\n".join(t.rstrip("\n") for t in texts) + "\n")
    (tmp_path / "wiki.valid.raw").write_text("".join(WIKITEXT_LINES))

    assert list(read_documents([str(tmp_path / "a.jsonl")], "auto", "text", "file")) == texts
    assert list(read_documents([str(tmp_path / "b.json.gz")], "auto", "body", "file")) == texts
    assert list(read_documents([str(tmp_path / "c.parquet")], "auto", "text", "file")) == texts
    whole = list(read_documents([str(tmp_path / "d.txt")], "txt", "text", "file"))
    assert whole == [(tmp_path / "d.txt").read_text()]
    blocks = list(read_documents([str(tmp_path / "d.txt")], "txt", "text", "blank_line"))
    assert [b.strip() for b in blocks] == [t.strip() for t in texts]
    wiki = list(read_documents([str(tmp_path / "wiki.valid.raw")], "auto", "text", "file"))
    assert wiki == list(rebuild_articles(WIKITEXT_LINES))


def test_bad_inputs_are_named(tmp_path, byte_tok):
    (tmp_path / "a.jsonl").write_text(json.dumps({"content": "x"}) + "\n")
    with pytest.raises(KeyError, match="data.text_field"):
        list(read_documents([str(tmp_path / "a.jsonl")], "auto", "text", "file"))
    with pytest.raises(FileNotFoundError, match="data.train_files"):
        TextDataModule(tokenizer=byte_tok, train_files=str(tmp_path / "missing/*.txt"))
    (tmp_path / "x.weird").write_text("x")
    with pytest.raises(ValueError, match="data.format"):
        list(read_documents([str(tmp_path / "x.weird")], "auto", "text", "file"))


def test_held_out_fraction_is_seeded_and_complementary():
    docs = [f"d{i}" for i in range(5000)]
    val = list(held_out(iter(docs), 0.1, seed=3, keep="validation"))
    train = list(held_out(iter(docs), 0.1, seed=3, keep="train"))
    assert sorted(val + train) == sorted(docs) and not set(val) & set(train)
    assert 350 < len(val) < 650
    assert val == list(held_out(iter(docs), 0.1, seed=3, keep="validation"))
    assert val != list(held_out(iter(docs), 0.1, seed=4, keep="validation"))


def test_text_module_with_files_per_split_and_fraction(tmp_path, byte_tok):
    texts = write_docs(tmp_path / "train", 40)
    val_texts = write_docs(tmp_path / "val", 3, prefix="val")
    data = TextDataModule(tokenizer=byte_tok, train_files=str(tmp_path / "train/*.txt"),
                          validation_files=[str(tmp_path / "val/*.txt")], seq_len=16, batch_size=2,
                          cache_dir=str(tmp_path / "cache"), num_proc=1, progress=False)
    data.prepare()
    assert data.splits == ["train", "validation"]
    assert [byte_tok.decode(d.tolist()) for d in data.documents("train")] == texts
    assert [byte_tok.decode(d.tolist()) for d in data.documents("validation")] == val_texts
    held = TextDataModule(tokenizer=byte_tok, train_files=str(tmp_path / "train/*.txt"),
                          validation_fraction=0.25, split_seed=1, seq_len=16, batch_size=2,
                          cache_dir=str(tmp_path / "cache"), num_proc=1, progress=False)
    held.prepare()
    train_docs = {byte_tok.decode(d.tolist()) for d in held.documents("train")}
    val_docs = {byte_tok.decode(d.tolist()) for d in held.documents("validation")}
    assert train_docs | val_docs == set(texts) and not train_docs & val_docs and val_docs
    with pytest.raises(KeyError, match="test"):
        held.eval_loader("test")
