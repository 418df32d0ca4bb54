"""RankFlags (mambalab/training/distributed.py): what one rank raises reaches every rank one
exchange later, on two gloo processes."""
from __future__ import annotations

import pytest
from accelerate import Accelerator

from mambalab.training.distributed import RankFlags


def _flags_worker(rank: int, port: int, out) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE="2")
    acc = Accelerator(cpu=True)
    flags = RankFlags(acc, 2)
    seen = []
    for call in range(4):
        # rank 1 raises its first flag at call 1 only; rank 0 its second from call 2 on
        seen.append(flags.exchange([rank == 1 and call == 1, rank == 0 and call >= 2]))
    out.put((rank, seen))
    acc.wait_for_everyone()


def test_a_flag_one_rank_raises_reaches_every_rank_one_call_later():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_flags_worker, args=(r, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    want = [[False, False], [False, False], [True, False], [False, True]]
    assert results == {0: want, 1: want}


def test_flags_are_counted():
    with pytest.raises(ValueError, match="expected 2 flags, got 1"):
        RankFlags(Accelerator(cpu=True), 2).exchange([True])
