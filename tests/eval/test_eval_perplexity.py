"""Perplexity three ways, against a hand computation; the modes against each other."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from eval_toys import BigramLM, ToyRecurrentLM, text_data

from mambalab.data import ByteTokenizer, InductionHeadsDataModule
from mambalab.eval import EvalTotals, count_bytes, count_words, evaluate_split
from mambalab.eval.documents import EvalDocument
from mambalab.eval.per_document import score_streaming, score_strided, strided_windows

# The data module keeps each block's newline: the documents are "the café\n" and "a b  c\n".
TEXTS = ["the café", "a b  c"]
EOS = ByteTokenizer().eos_id


def test_word_and_byte_counts_follow_lm_eval():
    # lm-eval: len(re.split(r"\s+", text)); a trailing newline leaves an empty last piece.
    assert [count_words(t + "\n") for t in TEXTS] == [3, 4]
    assert [count_bytes(t + "\n") for t in TEXTS] == [10, 7]  # "é" is two UTF-8 bytes
    assert count_words("no newline") == 2


@pytest.mark.parametrize("mode", ["strided", "streaming"])
def test_three_perplexities_match_a_hand_computation(tmp_path, mode):
    data = text_data(tmp_path, TEXTS, seq_len=4, batch_size=2)
    model = BigramLM(data.vocab_size)
    # By hand: each document's first byte is predicted from end-of-text, then byte from byte.
    nll = 0.0
    for text in TEXTS:
        prev = EOS
        for b in (text + "\n").encode("utf-8"):
            nll += model.token_nll(prev, b)
            prev = b
    words, nbytes, tokens = 3 + 4, 10 + 7, 17

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
    cpu = torch.device("cpu")
    with torch.no_grad():
        expected = sum(model(torch.tensor([[EOS] + d.ids[:-1].tolist()]),
                             targets=torch.tensor([d.ids.tolist()]), reduction="sum").loss.item()
                       for d in docs)
        streamed = score_streaming(model, docs, EOS, chunk_len=5, batch_size=2, device=cpu)
        # Strided windows longer than every document give each token the whole document too.
        strided = score_strided(model, docs, EOS, seq_len=64, stride=16, batch_size=2, device=cpu)
    assert streamed.tokens == strided.tokens == sum(len(d.ids) for d in docs)
    assert streamed.nll_sum == pytest.approx(expected, rel=1e-5)
    assert strided.nll_sum == pytest.approx(expected, rel=1e-5)


def test_streaming_a_mamba_lm_equals_one_full_forward_per_document():
    from mambalab.models import build_mamba_lm

    tok = ByteTokenizer()
    torch.manual_seed(0)
    model = build_mamba_lm(d_model=16, n_layer=2, vocab_size=tok.vocab_size, d_state=4,
                           kernels="reference").eval()
    texts = ["a document of thirty-seven bytes long", "twenty bytes, or so.", "nine byte"]
    docs = [EvalDocument(np.asarray(tok.encode(t)), t) for t in texts]
    cpu = torch.device("cpu")
    with torch.no_grad():
        expected = sum(model(torch.tensor([[EOS] + d.ids[:-1].tolist()]),
                             targets=torch.tensor([d.ids.tolist()]), reduction="sum").loss.item()
                       for d in docs)
        # chunks of 8 cut every document: the state crosses 4, 2 and 1 chunk boundaries
        streamed = score_streaming(model, docs, EOS, chunk_len=8, batch_size=2, device=cpu)
    assert streamed.nll_sum == pytest.approx(expected, rel=1e-5)


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


def test_strided_with_stride_equal_to_seq_len_equals_chunked(tmp_path):
    # One document: the chunked stream [eos, doc, eos] cut every seq_len is the strided cut.
    data = text_data(tmp_path, ["one document that spans several windows"], seq_len=8)
    model = ToyRecurrentLM(data.vocab_size)
    chunked = evaluate_split(model, data, "validation", mode="chunked")
    strided = evaluate_split(model, data, "validation", mode="strided", stride=8)
    # chunked also scores the end-of-text that closes the stream; strided scores the text only
    stream = [EOS] + next(data.documents("validation")).tolist() + [EOS]
    last_start = ((len(stream) - 2) // 8) * 8
    inputs = torch.tensor([stream[last_start:-1]])
    targets = torch.full_like(inputs, -100)
    targets[0, -1] = EOS
    with torch.no_grad():
        eos_nll = model(inputs, targets=targets, reduction="sum").loss.item()
    assert chunked.tokens == strided.tokens + 1
    assert strided.nll_sum == pytest.approx(chunked.nll_sum - eos_nll, rel=1e-5)


def test_chunked_scales_words_and_bytes_to_the_scored_fraction(tmp_path):
    data = text_data(tmp_path, TEXTS, seq_len=4, batch_size=1)
    stats = data.split_stats("validation")
    targets = stats["stream_tokens"] - 1
    full = evaluate_split(BigramLM(data.vocab_size), data, "validation")
    assert full.tokens == targets
    assert full.words == pytest.approx(stats["words"]) and full.bytes == pytest.approx(stats["bytes"])
    part = evaluate_split(BigramLM(data.vocab_size), data, "validation", max_batches=2)
    assert part.tokens == 8
    assert part.words == pytest.approx(stats["words"] * 8 / targets)
    assert part.bytes == pytest.approx(stats["bytes"] * 8 / targets)


def test_totals_reduce_over_ranks(tmp_path):
    data = text_data(tmp_path, TEXTS + ["third one"], seq_len=4, batch_size=1)
    model = BigramLM(data.vocab_size)
    whole = evaluate_split(model, data, "validation", mode="streaming")
    shards = [evaluate_split(model, data, "validation", mode="streaming", rank=r, world_size=2)
              for r in range(2)]
    assert shards[0].documents == 2 and shards[1].documents == 1
    summed = shards[0] + shards[1]
    assert summed.tokens == whole.tokens and summed.nll_sum == pytest.approx(whole.nll_sum)
    # A fake two-rank all-reduce: the other rank holds shard 1; returned, or reduced in place.
    other = torch.tensor([shards[1].nll_sum, shards[1].tokens, shards[1].words, shards[1].bytes,
                          0, 0, shards[1].documents], dtype=torch.float64)

    def all_reduce_in_place(t):  # as torch.distributed.all_reduce: reduces t, returns None
        t.add_(other)

    for reduce_fn in (lambda t: t + other, all_reduce_in_place):
        assert shards[0].reduce(reduce_fn, device="cpu").metrics() == pytest.approx(whole.metrics())


def test_accuracy_task_streaming_equals_chunked():
    model = ToyRecurrentLM(16)
    task = InductionHeadsDataModule(vocab_size=16, seq_len=24, eval_batch_size=4, eval_examples=8,
                                    pin_memory=False)
    chunked = evaluate_split(model, task, "validation", mode="chunked")
    streamed = evaluate_split(model, task, "validation", mode="streaming", chunk_len=5)
    assert set(chunked.metrics()) == {"loss", "accuracy", "total"}
    assert chunked.total == 8 and streamed.correct == chunked.correct
    assert streamed.nll_sum == pytest.approx(chunked.nll_sum, rel=1e-5)


def test_bad_mode_and_empty_totals_are_named(tmp_path):
    with pytest.raises(ValueError, match="mode must be one of"):
        evaluate_split(BigramLM(258), text_data(tmp_path, TEXTS), "validation", mode="sliding")
    with pytest.raises(ValueError, match="no tokens were scored"):
        EvalTotals().metrics()
    task = InductionHeadsDataModule(vocab_size=16, seq_len=24, pin_memory=False)
    with pytest.raises(ValueError, match="synthetic"):
        evaluate_split(ToyRecurrentLM(16), task, "validation", mode="strided")
