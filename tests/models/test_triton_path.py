"""kernels=triton wired through MambaLM: loss, every gradient, document starts and carried state
equal the reference path (CPU: the Triton interpreter, which tests/conftest.py turns on where
there is no GPU, at a tiny size)."""
from __future__ import annotations

import pytest
import torch

from mambalab.models import build_mamba_lm
from mambalab.ops.dispatch import unavailable_reason

pytest.importorskip("triton")


def test_triton_model_matches_reference_model():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for op in ("selective_scan", "causal_conv1d", "rms_norm", "mamba_inner"):
        reason = unavailable_reason(op, "triton", device)
        if reason is not None:
            pytest.skip(f"triton {op}: {reason}")
    torch.manual_seed(0)
    kw = dict(d_model=16, n_layer=1, vocab_size=32, d_state=4)
    fast = build_mamba_lm(**kw, kernels="triton").to(device)
    ref = build_mamba_lm(**kw, kernels="reference").to(device)
    ref.load_state_dict(fast.state_dict())
    report = fast.kernel_report()
    assert report["mamba_inner"] == "triton" and report["stateful_scan"] == "triton"
    ids = torch.randint(0, 32, (2, 12), device=device)
    targets = torch.randint(0, 32, (2, 12), device=device)
    starts = torch.zeros_like(ids, dtype=torch.bool)
    starts[:, 0] = True
    starts[1, 5] = True
    loss_fast = fast(ids, targets=targets, doc_starts=starts).loss
    loss_ref = ref(ids, targets=targets, doc_starts=starts).loss
    loss_fast.backward(), loss_ref.backward()
    torch.testing.assert_close(loss_fast, loss_ref, rtol=1e-5, atol=1e-5)
    ref_params = dict(ref.named_parameters())
    for name, p in fast.named_parameters():
        torch.testing.assert_close(p.grad, ref_params[name].grad, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        full = ref(ids).logits
        state = fast.allocate_state(2)
        chunks = [fast(ids[:, :5], state=state).logits, fast(ids[:, 5:], state=state).logits]
    torch.testing.assert_close(torch.cat(chunks, 1), full, rtol=1e-4, atol=1e-5)


def test_auto_with_document_starts_leaves_mamba_ssms_mixer_for_triton():
    """kernels=auto prefers mamba_ssm's mixer where it is installed, but that mixer cannot reset at
    document starts: with doc_starts, auto takes the Triton mixer for that forward, while an
    explicit kernels=cuda says why it cannot. (Resolution faked to cuda; the Triton kernels run
    under the interpreter on a CPU.)"""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if unavailable_reason("mamba_inner", "triton", device) is not None:
        pytest.skip("the Triton mixer cannot run here")
    torch.manual_seed(0)
    kw = dict(d_model=16, n_layer=1, vocab_size=32, d_state=4)
    model = build_mamba_lm(**kw, kernels="auto").to(device)
    ref = build_mamba_lm(**kw, kernels="reference").to(device)
    ref.load_state_dict(model.state_dict())
    model._kernels_by_device[str(torch.device(device))] = {
        "selective_scan": "cuda", "causal_conv1d": "cuda", "rms_norm": "triton",
        "mamba_inner": "cuda"}
    ids = torch.randint(0, 32, (2, 12), device=device)
    starts = torch.zeros_like(ids, dtype=torch.bool)
    starts[1, 5] = True
    with torch.no_grad():
        torch.testing.assert_close(model(ids, doc_starts=starts).logits,
                                   ref(ids, doc_starts=starts).logits, rtol=1e-4, atol=1e-5)
        model.config.kernels = "cuda"
        with pytest.raises(ValueError, match="model.kernels=cuda means mamba_ssm's kernels"):
            model(ids, doc_starts=starts)
