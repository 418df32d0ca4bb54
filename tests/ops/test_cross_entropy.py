"""The chunked fused linear cross-entropy equals F.cross_entropy of the full logits."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mambalab.ops.cross_entropy import (chunked_linear_cross_entropy, fused_linear_cross_entropy,
                                        resolve_cross_entropy)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_values_and_gradients_match_full_logits(reduction):
    torch.manual_seed(0)
    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 50, (37,))
    t[[3, 10, 36]] = -100
    up = torch.randn(37, dtype=torch.float64) if reduction == "none" else None
    ours = chunked_linear_cross_entropy(h, w, t, reduction=reduction, chunk_rows=8)
    ref = F.cross_entropy(h @ w.T, t, reduction=reduction)
    torch.testing.assert_close(ours.double(), ref)
    g_ours = torch.autograd.grad(ours if up is None else (ours * up).sum(), (h, w))
    g_ref = torch.autograd.grad(ref if up is None else (ref * up).sum(), (h, w))
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b)
    if reduction == "none":
        assert (ours[[3, 10, 36]] == 0).all()


def test_fp32_loss_from_bf16_inputs_and_cpu_path():
    h, w = torch.randn(10, 8).bfloat16(), torch.randn(20, 8).bfloat16()
    t = torch.randint(0, 20, (10,))
    loss = fused_linear_cross_entropy(h, w, t)
    assert loss.dtype == torch.float32
    assert resolve_cross_entropy("cpu") == "chunked"
    with pytest.raises(ValueError, match="reduction"):
        fused_linear_cross_entropy(h, w, t, reduction="avg")


@pytest.mark.parametrize("chunk_mem_const", [1, 4])
def test_liger_path_passes_its_chunk_budget(chunk_mem_const, monkeypatch):
    """The liger path (run here under TRITON_INTERPRET=1) hands CONFIG's chunk_mem_const to
    liger's Function, matched by name, and still equals F.cross_entropy, ignored rows included."""
    pytest.importorskip("liger_kernel")
    import os

    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("liger's kernels run on the CPU only under TRITON_INTERPRET=1")
    import liger_kernel.ops.fused_linear_cross_entropy as liger_fl

    from mambalab.ops.cross_entropy import liger as ours

    if ours._function_params() is None or "chunk_mem_const" not in dict(ours._function_params()):
        pytest.skip("this liger-kernel has no chunk_mem_const")
    monkeypatch.setitem(ours.CONFIG, "chunk_mem_const", chunk_mem_const)
    seen = []
    real = liger_fl.fused_linear_cross_entropy_forward

    def spy(*args, **kwargs):
        seen.append(kwargs.get("chunk_mem_const"))
        return real(*args, **kwargs)

    monkeypatch.setattr(liger_fl, "fused_linear_cross_entropy_forward", spy)
    torch.manual_seed(0)
    h = torch.randn(64, 16, requires_grad=True)
    w = torch.randn(50, 16, requires_grad=True)
    t = torch.randint(0, 50, (64,))
    t[[3, 10]] = -100
    loss = ours.liger_linear_cross_entropy(h, w, t)
    ref = F.cross_entropy(h @ w.T, t)
    assert seen == [chunk_mem_const]
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(torch.autograd.grad(loss, (h, w)), torch.autograd.grad(ref, (h, w))):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
