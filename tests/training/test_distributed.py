"""RankFlags (mambalab/training/distributed.py): what one rank raises reaches every rank one
exchange later, on two gloo processes."""
from __future__ import annotations

import pytest
from accelerate import Accelerator

from mambalab.training.distributed import RankFlags, end_process_group
from train_helpers import gloo_rank, spawn_two_ranks


def _flags_worker(rank: int, port: int, out) -> None:
    gloo_rank(rank, port)
    acc = Accelerator(cpu=True)
    flags = RankFlags(acc, 2)
    seen = []
    for call in range(4):
        # rank 1 raises its first flag at call 1 only; rank 0 its second from call 2 on
        seen.append(flags.exchange([rank == 1 and call == 1, rank == 0 and call >= 2]))
    out.put((rank, seen))
    acc.wait_for_everyone()
    end_process_group()


def test_a_flag_one_rank_raises_reaches_every_rank_one_call_later():
    results = spawn_two_ranks(_flags_worker)
    want = [[False, False], [False, False], [True, False], [False, True]]
    assert results == {0: want, 1: want}


def test_flags_are_counted():
    with pytest.raises(ValueError, match="expected 2 flags, got 1"):
        RankFlags(Accelerator(cpu=True), 2).exchange([True])
