"""The lanes backward's dB/dC partial sum (ops/triton/dbc_sum.py) against part.sum(1) in fp64,
written into strided views as the fused mixer passes them (CPU: TRITON_INTERPRET=1)."""
from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("triton")


def _dev() -> str:
    return "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"


@pytest.mark.parametrize("dtype,n_state,seqlen,block_l", [
    (torch.bfloat16, 16, 64, 32),   # the mixer's case: 16-bit partials, several programs a row
    (torch.float32, 5, 40, 32),     # N < 16 (rows 5..15 and 21..31 are padding), a partial block
])
def test_dbc_sum_matches_sum_over_warps(dtype, n_state, seqlen, block_l, monkeypatch):
    from mambalab.ops.triton import dbc_sum as mod

    monkeypatch.setitem(mod.CONFIG, "block_l", block_l)
    g = torch.Generator().manual_seed(0)
    bsz, n_warps = 3, 4
    part = torch.randn(bsz, n_warps, 32, seqlen, generator=g).to(dtype)
    # the outputs as rows of an (R + 2N, B*L) matrix, viewed (B, N, L); a sentinel elsewhere
    rank = 7
    mat = torch.full((rank + 2 * n_state, bsz * seqlen), -7.0, dtype=dtype)
    part_d, mat_d = part.to(_dev()), mat.to(_dev())
    db = mat_d[rank:rank + n_state].view(n_state, bsz, seqlen).permute(1, 0, 2)
    dc = mat_d[rank + n_state:].view(n_state, bsz, seqlen).permute(1, 0, 2)
    mod.dbc_sum(part_d, n_state, db, dc)
    want = part.double().sum(1)
    tol = dict(atol=2e-2, rtol=1e-2) if dtype == torch.bfloat16 else dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(db.double().cpu(), want[:, :n_state], **tol)
    torch.testing.assert_close(dc.double().cpu(), want[:, 16:16 + n_state], **tol)
    assert (mat_d[:rank].cpu() == -7.0).all(), "rows outside dB and dC were written"


def test_dbc_sum_rejects_bad_shapes():
    from mambalab.ops.triton.dbc_sum import dbc_sum

    part = torch.zeros(2, 3, 32, 8)
    with pytest.raises(ValueError, match="dB must be"):
        dbc_sum(part, 4, torch.zeros(2, 5, 8), torch.zeros(2, 4, 8))
    with pytest.raises(ValueError, match="part must be"):
        dbc_sum(torch.zeros(2, 3, 16, 8), 4, torch.zeros(2, 4, 8), torch.zeros(2, 4, 8))
