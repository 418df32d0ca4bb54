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


def _full_logits_reference(h, w, t, reduction, dtype):
    """F.cross_entropy in fp64 of the logits the fused path makes: dtype-rounded operands."""
    h64 = h.detach().to(dtype).double().requires_grad_()
    w64 = w.detach().to(dtype).double().requires_grad_()
    loss = F.cross_entropy(h64 @ w64.T, t, reduction=reduction)
    return loss, h64, w64


@pytest.mark.parametrize("dtype,vocab,rows,reduction,chunk_mem_const,block,warps", [
    (torch.float32, 1000, 37, "mean", 4, 4096, 8),
    (torch.float32, 1000, 37, "sum", 1, 256, 2),    # several row chunks, several column blocks
    (torch.bfloat16, 5000, 19, "mean", 4, 1024, 4),
    (torch.float32, 37, 5, "mean", 4, 4096, 8),     # vocabulary below one block
])
def test_triton_path_matches_full_logits(dtype, vocab, rows, reduction, chunk_mem_const, block,
                                         warps, monkeypatch):
    """mambalab's Triton row kernel (TRITON_INTERPRET=1 on the CPU): loss and both gradients as
    F.cross_entropy of the full logits, ignored rows included, the upstream gradient applied; the
    fp32 head's gradient comes back fp32."""
    from mambalab.ops.cross_entropy import config

    monkeypatch.setitem(config.CONFIG, "chunk_mem_const", chunk_mem_const)
    monkeypatch.setitem(config.CONFIG, "block", block)
    monkeypatch.setitem(config.CONFIG, "warps", warps)
    torch.manual_seed(0)
    h = torch.randn(rows, 16, dtype=dtype, requires_grad=True)
    w = torch.randn(vocab, 16, dtype=torch.float32, requires_grad=True)
    t = torch.randint(0, vocab, (rows,))
    t[[1, 3]] = -100
    loss = fused_linear_cross_entropy(h, w, t, reduction=reduction, impl="triton")
    ref, h64, w64 = _full_logits_reference(h, w, t, reduction, dtype)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=2e-2, rtol=1e-2)
    torch.testing.assert_close(loss.double(), ref.detach(), **tol)
    gh, gw = torch.autograd.grad(loss * 3.0, (h, w))
    rh, rw = torch.autograd.grad(ref * 3.0, (h64, w64))
    assert gh.dtype == dtype and gw.dtype == torch.float32
    assert (gh[[1, 3]] == 0).all()
    scale = rw.abs().max().item()
    torch.testing.assert_close(gw.double(), rw, atol=(1e-5 if dtype == torch.float32 else 1e-2)
                               * scale, rtol=0)
    torch.testing.assert_close(gh.double(), rh, atol=(1e-5 if dtype == torch.float32 else 1e-2)
                               * rh.abs().max().item(), rtol=0)


def test_triton_path_edge_cases():
    """Nothing scored: a nan mean (as F.cross_entropy) and zero gradients; a head without
    gradient; reduction none is refused with the fix named."""
    h = torch.randn(6, 8, requires_grad=True)
    w = torch.randn(40, 8)
    t = torch.full((6,), -100)
    loss = fused_linear_cross_entropy(h, w, t, impl="triton")
    assert torch.isnan(loss) and torch.isnan(F.cross_entropy(h @ w.T, t))
    (g,) = torch.autograd.grad(loss.nan_to_num(0.0) + 0 * h.sum(), (h,))
    assert (g == 0).all()
    t = torch.randint(0, 40, (6,))
    loss = fused_linear_cross_entropy(h, w, t, impl="triton")
    (g,) = torch.autograd.grad(loss, (h,))
    (r,) = torch.autograd.grad(F.cross_entropy(h @ w.T, t), (h,))
    torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="mean|sum"):
        fused_linear_cross_entropy(h, w, t, reduction="none", impl="triton")
    with pytest.raises(ValueError, match="auto|triton|liger|chunked"):
        fused_linear_cross_entropy(h, w, t, impl="fast")


def test_triton_path_skips_gradients_without_grad_mode(monkeypatch):
    """Under no_grad (evaluation) the row kernel is asked for no gradient (autograd's
    needs_input_grad says True there), and the loss is the same."""
    import mambalab.ops.triton.cross_entropy as ce_kernel

    asked = []
    real = ce_kernel.cross_entropy_rows_

    def spy(logits, targets, loss, scale, *args, **kwargs):
        asked.append(scale is not None)
        return real(logits, targets, loss, scale, *args, **kwargs)

    monkeypatch.setattr(ce_kernel, "cross_entropy_rows_", spy)
    h = torch.randn(6, 8, requires_grad=True)
    w = torch.randn(40, 8, requires_grad=True)
    t = torch.randint(0, 40, (6,))
    with torch.no_grad():
        evaluated = fused_linear_cross_entropy(h, w, t, impl="triton")
    n_eval = len(asked)
    trained = fused_linear_cross_entropy(h, w, t, impl="triton")
    assert n_eval > 0 and not any(asked[:n_eval]) and all(asked[n_eval:])
    torch.testing.assert_close(evaluated, trained.detach())


def test_cuda_choice_follows_config(monkeypatch):
    """impl auto on CUDA: CONFIG's cuda_impl where it runs, the other fused one otherwise; the CPU
    and reduction none: chunked. (Which one runs is asked of the availability checks, so this
    runs without a GPU.)"""
    import mambalab.ops.cross_entropy as ce

    monkeypatch.setattr(ce, "_triton_unavailable_reason", lambda device: None)
    monkeypatch.setattr(ce, "liger_unavailable_reason", lambda: None)
    monkeypatch.setitem(ce.CONFIG, "cuda_impl", "triton")
    assert ce.resolve_cross_entropy("cuda") == "triton"
    assert ce.resolve_cross_entropy("cuda", "none") == "chunked"
    assert ce.resolve_cross_entropy("cpu") == "chunked"
    monkeypatch.setitem(ce.CONFIG, "cuda_impl", "liger")
    assert ce.resolve_cross_entropy("cuda") == "liger"
    monkeypatch.setattr(ce, "liger_unavailable_reason", lambda: "not installed")
    assert ce.resolve_cross_entropy("cuda") == "triton"
    monkeypatch.setitem(ce.CONFIG, "cuda_impl", "fastest")
    with pytest.raises(ValueError, match="triton|liger"):
        ce.resolve_cross_entropy("cuda")
