from __future__ import annotations

import pytest
import torch

from mambalab.data import (IGNORE_INDEX, InductionHeadsDataModule, RandomTokensDataModule,
                           SelectiveCopyingDataModule)


def solve_induction_heads(input_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The answer is the token after the first occurrence of the trigger (V-1). (B,)"""
    first = (input_ids == vocab_size - 1).int().argmax(dim=1)
    return input_ids[torch.arange(len(input_ids)), first + 1]


def solve_selective_copying(input_ids: torch.Tensor, vocab_size: int, k: int) -> torch.Tensor:
    """The data tokens (neither noise 0 nor marker V-1) of the context, in order. (B, K)"""
    context = input_ids[:, :-k]
    return torch.stack([row[(row != 0) & (row != vocab_size - 1)] for row in context])


def _accuracy(batches, predict) -> float:
    right = total = 0
    for batch in batches:
        scored = batch["targets"] != IGNORE_INDEX
        predicted = predict(batch["input_ids"])
        right += int((predicted.flatten() == batch["targets"][scored]).sum())
        total += int(scored.sum())
    return right / total


@pytest.mark.parametrize("length", [256, 64, 4096])
def test_a_hand_written_solver_scores_100_percent_on_induction_heads(length):
    data = InductionHeadsDataModule(eval_lengths=[256, 4096], eval_examples=64, eval_batch_size=16)
    assert (data.vocab_size, data.seq_len, data.batch_size, data.metric) == (16, 256, 8, "accuracy")
    batches = list(data.eval_loader("validation", seq_len=length))
    assert sum(len(b["input_ids"]) for b in batches) == 64
    for b in batches:
        assert ((b["targets"] != IGNORE_INDEX).sum(dim=1) == 1).all()  # only the answer is scored
        assert (b["input_ids"] == 15).sum(dim=1).eq(2).all()  # the trigger occurs exactly twice
    assert _accuracy(batches, lambda x: solve_induction_heads(x, 16)) == 1.0
    train = next(data.train_loader(seed=0))
    assert _accuracy([train], lambda x: solve_induction_heads(x, 16)) == 1.0


def test_a_hand_written_solver_scores_100_percent_on_selective_copying():
    data = SelectiveCopyingDataModule(seq_len=512, eval_examples=20, eval_batch_size=8)
    assert (data.vocab_size, data.num_data_tokens) == (16, 16)
    batches = list(data.eval_loader("test"))
    for b in batches:
        assert ((b["targets"] != IGNORE_INDEX).sum(dim=1) == 16).all()
    assert _accuracy(batches, lambda x: solve_selective_copying(x, 16, 16)) == 1.0
    assert _accuracy([next(data.train_loader())], lambda x: solve_selective_copying(x, 16, 16)) == 1.0
    paper = next(SelectiveCopyingDataModule().train_loader())  # the paper's 4096 x 16 data tokens
    assert paper["input_ids"].shape == (8, 4096)
    assert _accuracy([paper], lambda x: solve_selective_copying(x, 16, 16)) == 1.0


def test_synthetic_loaders_resume_exactly_and_ranks_differ():
    data = InductionHeadsDataModule(seq_len=64)
    loader = data.train_loader(rank=0, world_size=2, seed=3)
    first = [next(loader) for _ in range(5)]
    state = loader.state_dict()
    rest = [next(loader) for _ in range(3)]
    resumed = data.train_loader(rank=0, world_size=2, seed=3)
    resumed.load_state_dict(state)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(rest, [next(resumed) for _ in range(3)]))
    other_rank = next(data.train_loader(rank=1, world_size=2, seed=3))
    assert not torch.equal(first[0]["input_ids"], other_rank["input_ids"])


def test_long_eval_lengths_are_generated_lazily_with_a_smaller_batch():
    data = InductionHeadsDataModule(eval_lengths=[256, 1 << 20], eval_examples=4, eval_batch_size=64,
                                    eval_tokens_per_batch=1 << 20)
    loader = data.eval_loader("validation", seq_len=1 << 20, max_batches=1)
    assert data.eval_batch_size_at(1 << 20) == 1 and data.eval_batch_size_at(256) == 64
    (batch,) = list(loader)
    assert batch["input_ids"].shape == (1, 1 << 20)
    assert _accuracy([batch], lambda x: solve_induction_heads(x, 16)) == 1.0
    assert data.eval_lengths == [256, 1 << 20]


def test_random_tokens_cover_the_vocabulary_and_score_everything():
    data = RandomTokensDataModule(vocab_size=100, seq_len=32, batch_size=4, doc_boundaries=True)
    batch = next(data.train_loader())
    assert batch["input_ids"].max() < 100 and (batch["targets"] != IGNORE_INDEX).all()
    assert torch.equal(batch["targets"][:, :-1], batch["input_ids"][:, 1:])
    assert batch["doc_starts"][:, 0].all() and not batch["doc_starts"][:, 1:].any()
    assert (data.task, data.metric) == ("synthetic", "perplexity")


def test_bad_synthetic_settings_fail_at_prepare():
    with pytest.raises(ValueError, match="2 \\* num_data_tokens"):
        SelectiveCopyingDataModule(seq_len=20, num_data_tokens=16).prepare()
