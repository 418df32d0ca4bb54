"""Perplexity three ways, against a hand computation; the modes against each other."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from eval_toys import BigramLM, ByteTokenizer, CopyTask, ListData, ToyRecurrentLM

from mambalab.eval import EvalTotals, count_bytes, count_words, evaluate_split
from mambalab.eval.documents import EvalDocument
from mambalab.eval.per_document import score_streaming, score_strided, strided_windows

TEXTS = ["the café", "a b  c"]


def test_word_and_byte_counts_follow_lm_eval():
    assert [count_words(t) for t in TEXTS] == [2, 3]
    assert [count_bytes(t) for t in TEXTS] == [9, 6]  # "é" is two UTF-8 bytes
    assert count_words(" leading space") == 3  # re.split keeps the empty first piece, as lm-eval


@pytest.mark.parametrize("mode", ["strided", "streaming"])
def test_three_perplexities_match_a_hand_computation(mode):
    tok = ByteTokenizer()
    model = BigramLM(tok.vocab_size)
    # By hand: each document's first byte is predicted from end-of-text, then byte from byte.
    nll = 0.0
    for text in TEXTS:
        prev = tok.eos_id
        for b in text.encode("utf-8"):
            nll += model.token_nll(prev, b)
            prev = b
    words, nbytes, tokens = 2 + 3, 9 + 6, 15

    data = ListData(TEXTS, seq_len=4, batch_size=2)
    metrics = evaluate_split(model, data, "validation", mode=mode, stride=3).metrics()
    assert metrics["tokens"] == tokens and metrics["documents"] == 2
    assert metrics["loss"] == pytest.approx(nll / tokens, rel=1e-6)
    assert metrics["ppl"] == pytest.approx(math.exp(nll / tokens), rel=1e-6)
    assert metrics["word_ppl"] == pytest.approx(math.exp(nll / words), rel=1e-6)
    assert metrics["byte_ppl"] == pytest.approx(math.exp(nll / nbytes), rel=1e-6)
    assert metrics["bpb"] == pytest.approx(nll / (nbytes * math.log(2)), rel=1e-6)


def test_streaming_equals_one_full_forward_per_document():
    tok = ByteTokenizer()
    model = ToyRecurrentLM(tok.vocab_size).eval()
    texts = ["a longer first document, of forty bytes.", "short", "middle length one"]
    docs = [EvalDocument(np.asarray(tok.encode(t)), t) for t in texts]
    expected = 0.0
    with torch.no_grad():
        for doc in docs:
            inp = torch.tensor([[tok.eos_id] + doc.ids[:-1].tolist()])
            expected += model(inp, targets=torch.tensor([doc.ids.tolist()]), reduction="sum").loss.item()
    with torch.no_grad():
        streamed = score_streaming(model, docs, tok.eos_id, chunk_len=5, batch_size=2,
                                   device=torch.device("cpu"))
    assert streamed.tokens == sum(len(d.ids) for d in docs)
    assert streamed.nll_sum == pytest.approx(expected, rel=1e-5)
    # Strided windows longer than every document give each token the whole document too.
    with torch.no_grad():
        strided = score_strided(model, docs, tok.eos_id, seq_len=64, stride=16, batch_size=2,
                                device=torch.device("cpu"))
    assert strided.nll_sum == pytest.approx(expected, rel=1e-5)


def test_strided_windows_score_every_token_once_with_enough_context():
    for length, seq_len, stride in [(1, 4, 2), (10, 4, 4), (23, 8, 3), (8, 8, 5)]:
        scored = []
        for begin, end, score_from in strided_windows(length, seq_len, stride):
            assert end - begin <= seq_len
            scored += list(range(score_from, end))
            if begin > 0:  # past the first window, at least seq_len - stride tokens of context
                assert score_from - begin >= seq_len - stride
        assert scored == list(range(length))
    with pytest.raises(ValueError, match="stride"):
        strided_windows(10, 4, 5)


def test_strided_with_stride_equal_to_seq_len_equals_chunked():
    # One document: the chunked stream [eos, doc] cut every seq_len is the strided windows' cut.
    model = ToyRecurrentLM(257)
    data = ListData(["one document that spans several windows"], seq_len=8, batch_size=3)
    chunked = evaluate_split(model, data, "validation", mode="chunked")
    strided = evaluate_split(model, data, "validation", mode="strided", stride=8)
    # chunked also scores the end-of-text that closes the document; strided scores the text only
    assert chunked.tokens == strided.tokens + 1
    data_no_eos_nll = chunked.nll_sum - _last_eos_nll(model, data)
    assert strided.nll_sum == pytest.approx(data_no_eos_nll, rel=1e-5)


def _last_eos_nll(model, data) -> float:
    stream = data.stream()
    seq_len = data.seq_len
    last_window_start = ((len(stream) - 2) // seq_len) * seq_len
    inp = torch.tensor([stream[last_window_start:-1]])
    tgt = torch.full_like(inp, -100)
    tgt[0, -1] = stream[-1]
    with torch.no_grad():
        return model(inp, targets=tgt, reduction="sum").loss.item()


def test_chunked_scales_words_and_bytes_to_the_scored_fraction():
    data = ListData(TEXTS, seq_len=4, batch_size=1)
    stats = data.split_stats("validation")
    full = evaluate_split(BigramLM(257), data, "validation")
    assert full.tokens == stats["tokens"]
    assert full.words == pytest.approx(stats["words"]) and full.bytes == pytest.approx(stats["bytes"])
    part = evaluate_split(BigramLM(257), data, "validation", max_batches=2)
    assert part.tokens == 8
    assert part.words == pytest.approx(stats["words"] * 8 / stats["tokens"])


def test_totals_reduce_over_ranks():
    data = ListData(TEXTS, seq_len=4, batch_size=1)
    model = BigramLM(257)
    whole = evaluate_split(model, data, "validation", mode="streaming")
    shards = [evaluate_split(model, data, "validation", mode="streaming", rank=r, world_size=2)
              for r in range(2)]
    summed = shards[0] + shards[1]
    assert summed.tokens == whole.tokens and summed.nll_sum == pytest.approx(whole.nll_sum)
    # A fake two-rank all-reduce: the other rank holds shard 1; returned, or reduced in place.
    other = torch.tensor([shards[1].nll_sum, shards[1].tokens, shards[1].words, shards[1].bytes,
                          0, 0, shards[1].documents], dtype=torch.float64)
    returned = shards[0].reduce(lambda t: t + other, device="cpu")

    def all_reduce_in_place(t):  # as torch.distributed.all_reduce: reduces t, returns None
        t.add_(other)

    in_place = shards[0].reduce(all_reduce_in_place, device="cpu")
    for reduced in (returned, in_place):
        assert reduced.metrics() == pytest.approx(whole.metrics())


def test_accuracy_task_streaming_equals_chunked():
    model = ToyRecurrentLM(8)
    task = CopyTask(vocab_size=8, seq_len=12)
    chunked = evaluate_split(model, task, "validation", mode="chunked")
    streamed = evaluate_split(model, task, "validation", mode="streaming", chunk_len=5)
    assert set(chunked.metrics()) == {"loss", "accuracy", "total"}
    assert chunked.total == 2 * 3 and streamed.correct == chunked.correct
    assert streamed.nll_sum == pytest.approx(chunked.nll_sum, rel=1e-5)


def test_bad_mode_and_empty_totals_are_named():
    with pytest.raises(ValueError, match="mode must be one of"):
        evaluate_split(BigramLM(257), ListData(TEXTS), "validation", mode="sliding")
    with pytest.raises(ValueError, match="no tokens were scored"):
        EvalTotals().metrics()
    with pytest.raises(ValueError, match="synthetic"):
        evaluate_split(ToyRecurrentLM(8), CopyTask(), "validation", mode="strided")
