"""exp2_poly (mambalab/ops/triton/fast_math.py) against torch.exp2, under TRITON_INTERPRET=1 on
the CPU or on a GPU: its error is MUFU's, and the clamps hold at the range's ends."""
from __future__ import annotations

import os

import pytest
import torch

triton = pytest.importorskip("triton")
import triton.language as tl  # noqa: E402

from mambalab.ops.triton.fast_math import exp2_poly  # noqa: E402


@triton.jit
def _exp2_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(y_ptr + offs, exp2_poly(tl.load(x_ptr + offs, mask=mask, other=0.0)), mask=mask)


def _dev() -> str:
    return "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"


def _exp2(x: torch.Tensor) -> torch.Tensor:
    y = torch.empty_like(x)
    _exp2_kernel[(triton.cdiv(x.numel(), 1024),)](x, y, x.numel(), BLOCK=1024)
    return y


def test_exp2_poly_matches_exp2_to_fp32_precision():
    # the scan's decays: dt * A * log2(e) <= 0, mostly in (-30, 0]; positive values too
    x = torch.cat([torch.linspace(-124.9, 125.9, 40_001), torch.rand(20_000) * -30.0,
                   torch.tensor([0.0, 0.5, -0.5, 1.0, -1.0, 0.49999997, -0.49999997])])
    x = x.to(_dev())
    got = _exp2(x).double()
    want = torch.exp2(x.double())
    rel = ((got - want).abs() / want).max().item()
    assert rel < 3e-7, f"largest relative error {rel:.3g}"
    assert _exp2(torch.zeros(1, device=_dev())).item() == 1.0


def test_exp2_poly_clamps_instead_of_wrapping():
    x = torch.tensor([-126.0, -200.0, -1e30, 127.0, 1e30], device=_dev())
    got = _exp2(x).cpu()
    assert torch.isfinite(got).all() and (got > 0).all(), got
    assert torch.allclose(got[:3], torch.full((3,), 2.0 ** -125), rtol=1e-6)
    assert torch.allclose(got[3:], torch.full((2,), 2.0 ** 126), rtol=1e-6)
