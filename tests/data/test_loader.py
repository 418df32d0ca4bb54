from __future__ import annotations

import numpy as np
import pytest
import torch

from mambalab.data import IGNORE_INDEX, EvalWindowLoader, TextDataModule, WindowLoader

from datagen import write_docs


def _stream(n: int = 1000) -> np.ndarray:
    return (np.arange(n) % 251).astype(np.uint16)


def _take(loader, n: int) -> list[dict]:
    return [next(loader) for _ in range(n)]


def _same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_windows_are_shifted_pairs():
    tokens = np.arange(200, dtype=np.uint16)
    batch = next(WindowLoader(tokens, seq_len=10, batch_size=3, seed=0))
    assert batch["input_ids"].shape == (3, 10) and batch["input_ids"].dtype == torch.int64
    assert torch.equal(batch["targets"][:, :-1], batch["input_ids"][:, 1:])
    assert torch.all(batch["input_ids"][:, 0] % 10 == 0)


def test_resume_from_any_step_equals_uninterrupted():
    # 99 windows, 2 ranks of batch 4: 12 batches an epoch; 30 batches cross two epoch boundaries.
    make = lambda: WindowLoader(_stream(), seq_len=10, batch_size=4, rank=1, world_size=2, seed=7)
    reference = _take(make(), 30)
    for k in (0, 1, 11, 12, 13, 25):
        loader = make()
        head = _take(loader, k)
        state = loader.state_dict()
        _take(loader, 3)  # the prefetch thread runs ahead; the saved state must not
        resumed = make()
        resumed.load_state_dict(state)
        assert _same(head + _take(resumed, 30 - k), reference), k
    loader = make()
    _take(loader, 13)
    assert (loader.epoch, loader.batch_in_epoch, loader.batches_per_epoch) == (1, 1, 12)
    loader.load_state_dict({**loader.state_dict(), "next_batch": 2})  # rewind in place
    assert _same(_take(loader, 28), reference[2:])


def test_each_epoch_has_a_new_order_and_a_new_seed_changes_it():
    loader = WindowLoader(_stream(), seq_len=10, batch_size=3, seed=1)
    assert not np.array_equal(loader.epoch_order(0), loader.epoch_order(1))
    assert not np.array_equal(loader.epoch_order(0), WindowLoader(_stream(), 10, 3, seed=2).epoch_order(0))


def test_rank_shards_are_disjoint_complete_and_equal():
    world, bs = 3, 4
    loaders = [WindowLoader(np.arange(961, dtype=np.uint16), seq_len=10, batch_size=bs, rank=r, world_size=world, seed=3)
               for r in range(world)]  # 96 windows = 8 batches per rank
    per_rank = [{int(i) for b in range(l.batches_per_epoch) for i in l.window_ids(b)} for l in loaders]
    assert [len(s) for s in per_rank] == [8 * bs] * world
    assert set.union(*per_rank) == set(range(96)) and sum(map(len, per_rank)) == 96
    firsts = [next(l)["input_ids"][:, 0] // 10 for l in loaders]  # window ids from the data itself
    assert [set(f.tolist()) for f in firsts] == [set(l.window_ids(0).tolist()) for l in loaders]


def test_resume_with_another_world_size_continues_the_same_order():
    one = WindowLoader(_stream(), seq_len=10, batch_size=4, world_size=1, seed=5)
    _take(one, 4)  # 16 windows consumed
    two = WindowLoader(_stream(), seq_len=10, batch_size=4, rank=0, world_size=2, seed=5)
    with pytest.warns(UserWarning, match="world_size=2"):
        two.load_state_dict(one.state_dict())
    assert np.array_equal(two.window_ids(two._next), one.epoch_order(0)[16:20])
    with pytest.raises(ValueError, match="seq_len"):
        WindowLoader(_stream(), seq_len=20, batch_size=4).load_state_dict(one.state_dict())


def test_too_little_data_is_a_clear_error():
    with pytest.raises(ValueError, match="lower data.seq_len or data.batch_size"):
        WindowLoader(_stream(50), seq_len=10, batch_size=8)


def test_eval_scores_every_target_once_in_fixed_order():
    tokens = np.arange(1, 108, dtype=np.uint16)  # 106 targets: 10 full windows and a 6-token one
    loader = EvalWindowLoader(tokens, seq_len=10, batch_size=4, pad_id=0)
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and batches[-1]["targets"].shape == (3, 10)
    targets = torch.cat([b["targets"].flatten() for b in batches])
    scored = targets[targets != IGNORE_INDEX]
    assert scored.tolist() == tokens[1:].tolist()
    assert _same(batches, list(loader))  # fixed order
    shards = [list(EvalWindowLoader(tokens, 10, 2, rank=r, world_size=2, max_batches=5)) for r in range(2)]
    assert [len(s) for s in shards] == [3, 2]  # global batches 0,2,4 and 1,3
    capped = list(EvalWindowLoader(tokens, 10, 2, max_batches=5))
    assert _same([capped[i] for i in (0, 2, 4, 1, 3)], shards[0] + shards[1])


def test_doc_starts_mark_the_first_token_of_each_document(tmp_path, byte_tok):
    texts = write_docs(tmp_path / "train", 12)
    data = TextDataModule(tokenizer=byte_tok, train_files=str(tmp_path / "train/*.txt"), seq_len=32,
                          batch_size=4, doc_boundaries=True, cache_dir=str(tmp_path / "cache"),
                          num_proc=1, progress=False, validation_fraction=0.3)
    data.prepare()
    for batch in [next(data.train_loader(seed=1)), *data.eval_loader("validation")]:
        starts = batch["doc_starts"]
        assert starts.dtype == torch.bool and starts.shape == batch["input_ids"].shape
        after_eos = torch.zeros_like(starts)
        after_eos[:, 1:] = batch["input_ids"][:, :-1] == byte_tok.eos_id
        assert torch.equal(starts[:, 1:], after_eos[:, 1:])  # bytes never equal eos (256)
    ids = batch["input_ids"]
    assert ids.max() < data.vocab_size


@pytest.mark.gpu
def test_batches_are_pinned_for_asynchronous_copies_on_cuda():
    loader = WindowLoader(_stream(), seq_len=10, batch_size=4, pin_memory="auto")
    batch = next(loader)
    assert all(t.is_pinned() for t in batch.values())
    on_gpu = {k: v.to("cuda", non_blocking=True) for k, v in batch.items()}
    torch.cuda.synchronize()
    assert torch.equal(on_gpu["input_ids"].cpu(), batch["input_ids"])
    eval_batch = next(iter(EvalWindowLoader(_stream(), seq_len=10, batch_size=4)))
    assert eval_batch["input_ids"].is_pinned()
