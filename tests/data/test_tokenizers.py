from __future__ import annotations

import pytest

from mambalab.data import ByteTokenizer, HFTokenizer, RandomTokensDataModule, check_vocab


def test_byte_tokenizer_round_trip(byte_tok, tmp_path):
    text = "Mamba: sélective state spaces — 状态空间 🐍\nline two"
    ids = byte_tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert byte_tok.decode(ids) == text
    assert byte_tok.decode(ids + [byte_tok.eos_id]) == text  # special ids decode to nothing
    assert byte_tok.encode_batch([text, ""]) == [ids, []]
    assert (byte_tok.vocab_size, byte_tok.eos_id) == (258, 256)
    byte_tok.save_pretrained(tmp_path)
    assert (tmp_path / "byte_tokenizer.json").is_file()


def test_tokenizer_fingerprint_follows_what_changes_ids(byte_tok):
    assert byte_tok.fingerprint() == ByteTokenizer().fingerprint()
    assert byte_tok.fingerprint() != ByteTokenizer(special_tokens=["<eos>", "<pad>", "<bos>"]).fingerprint()


def test_gpt_neox_from_local_file(neox_path, tmp_path):
    tok = HFTokenizer(path=str(neox_path))
    assert (tok.vocab_size, tok.eos_id, tok.name) == (50277, 0, "gpt-neox-20b")
    assert tok.encode("Hello world") == [12092, 1533]
    assert tok.decode(tok.encode("Hello world")) == "Hello world"
    tok.save_pretrained(tmp_path)
    again = HFTokenizer(path=str(tmp_path))  # a saved folder loads back with the same ids
    assert again.fingerprint() == tok.fingerprint()


def test_gpt_neox_offline_without_path_points_to_tokenizer_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="tokenizer.path="):
        HFTokenizer(name="EleutherAI/gpt-neox-20b-not-cached-here")


def test_missing_tokenizer_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.path="):
        HFTokenizer(path=str(tmp_path / "nope.json"))


def test_check_vocab_refuses_a_smaller_model():
    data = RandomTokensDataModule(vocab_size=50277, seq_len=8, batch_size=1)
    check_vocab(50280, data)  # padded up: fine
    with pytest.raises(ValueError, match=r"\(50000 ids\).*\(50277 ids"):
        check_vocab(50000, data)
