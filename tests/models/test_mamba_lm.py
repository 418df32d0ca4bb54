"""MambaLM: shapes, names, init, loss, backward, checkpointing, documents, the 130M figures."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mambalab.models import MambaLM, build_mamba_lm


def test_parameter_names_and_shapes_follow_mamba_ssm(tiny):
    shapes = {k: tuple(v.shape) for k, v in tiny.state_dict().items()}
    d, di, n, r, v = 32, 64, 8, 2, 64                   # vocab 61 padded to 64
    assert shapes["backbone.embedding.weight"] == (v, d)
    assert shapes["lm_head.weight"] == (v, d)
    assert shapes["backbone.norm_f.weight"] == (d,)
    layer = "backbone.layers.1."
    assert shapes[layer + "norm.weight"] == (d,)
    expected = {"in_proj.weight": (2 * di, d), "conv1d.weight": (di, 1, 4), "conv1d.bias": (di,),
                "x_proj.weight": (r + 2 * n, di), "dt_proj.weight": (di, r),
                "dt_proj.bias": (di,), "A_log": (di, n), "D": (di,), "out_proj.weight": (d, di)}
    for name, shape in expected.items():
        assert shapes[layer + "mixer." + name] == shape
    assert len(shapes) == 1 + 2 * (1 + len(expected)) + 1 + 1
    assert tiny.lm_head.weight is tiny.backbone.embedding.weight


def test_init_and_no_weight_decay_marks(tiny):
    mixer = tiny.backbone.layers[0].mixer
    dt = F.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6
    torch.testing.assert_close(mixer.A_log.exp(), torch.arange(1, 9.0).repeat(64, 1))
    assert (mixer.D == 1).all()
    assert mixer.A_log._no_weight_decay and mixer.D._no_weight_decay
    assert mixer.dt_proj.weight.abs().max() <= 2 ** -0.5
    emb_std = tiny.backbone.embedding.weight.std().item()
    assert 0.015 < emb_std < 0.025
    # kaiming-uniform(a=sqrt 5) has bound 1/sqrt(fan_in); then / sqrt(n_layer = 2).
    bound = 1 / math.sqrt(64) / math.sqrt(2)
    assert mixer.out_proj.weight.abs().max() <= bound + 1e-6
    assert mixer.out_proj.weight.abs().max() > 0.9 * bound


def test_forward_logits_loss_and_backward_reach_every_parameter(tiny):
    ids = torch.randint(0, 61, (2, 19))
    targets = torch.randint(0, 61, (2, 19))
    targets[0, :3] = -100
    logits = tiny(ids).logits
    assert logits.shape == (2, 19, 64) and tiny(ids).loss is None
    out = tiny(ids, targets=targets)
    assert out.logits is None
    expected = F.cross_entropy(logits.reshape(-1, 64), targets.reshape(-1))
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-5)
    none = tiny(ids, targets=targets, reduction="none").loss
    assert none.shape == (2, 19) and (none[0, :3] == 0).all()
    torch.testing.assert_close(tiny(ids, targets=targets, reduction="sum").loss, none.sum())
    out.loss.backward()
    for name, p in tiny.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_gradient_checkpointing_gives_the_same_gradients(tiny):
    ids, targets = torch.randint(0, 61, (2, 12)), torch.randint(0, 61, (2, 12))
    tiny.train()
    tiny(ids, targets=targets).loss.backward()
    plain = {n: p.grad.clone() for n, p in tiny.named_parameters()}
    tiny.zero_grad()
    tiny.set_gradient_checkpointing(True)
    tiny(ids, targets=targets).loss.backward()
    for n, p in tiny.named_parameters():
        torch.testing.assert_close(p.grad, plain[n], rtol=1e-5, atol=1e-6)


def test_doc_starts_isolate_packed_documents(tiny):
    a, b = torch.randint(0, 61, (1, 7)), torch.randint(0, 61, (1, 9))
    packed = torch.cat([a, b], dim=1)
    starts = torch.zeros_like(packed, dtype=torch.bool)
    starts[0, 0] = starts[0, 7] = True
    with torch.no_grad():
        joint = tiny(packed, doc_starts=starts).logits
        torch.testing.assert_close(joint[:, :7], tiny(a).logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(joint[:, 7:], tiny(b).logits, rtol=1e-5, atol=1e-5)


def test_kernel_report_and_explicit_cuda_on_cpu(tiny):
    report = tiny.kernel_report()
    assert report["selective_scan"] == "reference" and report["cross_entropy"] == "chunked"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"kernels=cuda needs a CUDA GPU.*kernels=auto"):
            build_mamba_lm(d_model=16, n_layer=1, vocab_size=8, kernels="cuda")
    with pytest.raises(ValueError, match="vocab_size=auto"):
        build_mamba_lm(d_model=16, n_layer=1, vocab_size="auto")
    with pytest.raises(ValueError, match="model.d_model"):
        build_mamba_lm(d_model=0, n_layer=1, vocab_size=8)


def test_mamba_130m_parameter_count_and_first_loss():
    """129,135,360 parameters, as mamba_ssm's MambaLMHeadModel (d 768, 24 layers, vocab 50280).

    The first loss on random tokens is ln(V) plus half the logit variance: with the final norm's
    unit RMS and embedding std 0.02 that is d * 0.02^2 / 2 = 0.154, so 10.98 (HF's default
    initializer_range 0.1 gives d * 0.1^2 / 2 = 3.84 more: its 14.7).
    """
    torch.manual_seed(0)
    model = build_mamba_lm(d_model=768, n_layer=24, vocab_size=50280)
    assert isinstance(model, MambaLM)
    assert model.num_parameters() == 129_135_360
    ids = torch.randint(0, 50280, (4, 9))
    with torch.no_grad():
        loss = model(ids[:, :-1], targets=ids[:, 1:]).loss.item()
        logits = model(ids[:, :-1]).logits.double()                      # (4, 8, V)
    assert abs(loss - math.log(50280)) < 0.25
    # The same loss averaged over every possible target: free of the targets' sampling noise.
    expected_over_targets = (logits.logsumexp(-1) - logits.mean(-1)).mean().item()
    assert abs(expected_over_targets - (math.log(50280) + 768 * 0.02 ** 2 / 2)) < 0.05


def test_auto_mixer_rule_in_report_and_forward(monkeypatch):
    """With mamba_ssm's mixer resolved for auto, a forward with at least
    AUTO_TRITON_MIXER_MIN_ROWS scan rows runs the Triton mixer, a smaller one mamba_ssm's; the
    report says so."""
    from mambalab.models import lm as lm_mod
    from mambalab.ops import dispatch

    tiny = build_mamba_lm(d_model=32, n_layer=2, vocab_size=61, d_state=8)  # kernels=auto

    cuda_mix = {"selective_scan": "reference", "causal_conv1d": "reference",
                "rms_norm": "reference", "mamba_inner": "cuda"}
    monkeypatch.setattr(dispatch, "unavailable_reason", lambda op, impl, device: None)
    monkeypatch.setattr(type(tiny), "kernels", lambda self, device=None: dict(cuda_mix))
    assert tiny.config.kernels == "auto"
    assert "triton from batch" in tiny.kernel_report()["mixer"]
    seen = []
    monkeypatch.setattr(type(tiny.backbone.layers[0].mixer), "forward",
                        lambda self, hidden, kernels, *a, **k: seen.append(
                            kernels["mamba_inner"]) or hidden)
    rows = dispatch.AUTO_TRITON_MIXER_MIN_ROWS
    small = max(1, rows // tiny.config.d_inner - 1)
    with torch.no_grad():
        tiny.hidden_states(torch.zeros(small, 4, dtype=torch.long))
        tiny.hidden_states(torch.zeros(-(-rows // tiny.config.d_inner), 4, dtype=torch.long))
    n = tiny.config.n_layer
    assert seen == ["cuda"] * n + ["triton"] * n
    assert lm_mod.auto_mixer is dispatch.auto_mixer
