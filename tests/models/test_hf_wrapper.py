"""HFMambaLM: transformers' MambaForCausalLM behind the MambaLM forward contract."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mambalab.models import load_pretrained, save_model
from mambalab.models.hf import HFMambaLM, build_hf_mamba_lm


@pytest.fixture
def hf_tiny():
    torch.manual_seed(0)
    return build_hf_mamba_lm(d_model=32, n_layer=2, vocab_size=61, d_state=8,
                             gradient_checkpointing=True)


def test_forward_contract_loss_and_checkpointed_backward(hf_tiny):
    ids, targets = torch.randint(0, 61, (2, 9)), torch.randint(0, 61, (2, 9))
    targets[1, -2:] = -100
    assert isinstance(hf_tiny, HFMambaLM) and hf_tiny.gradient_checkpointing
    hf_tiny.eval()
    with torch.no_grad():
        logits = hf_tiny(ids).logits
        assert logits.shape == (2, 9, 64)
        expected = F.cross_entropy(logits.reshape(-1, 64), targets.reshape(-1))
        torch.testing.assert_close(hf_tiny(ids, targets=targets).loss, expected)
        none = hf_tiny(ids, targets=targets, reduction="none").loss
        assert none.shape == (2, 9) and (none[1, -2:] == 0).all()
    hf_tiny.train()
    hf_tiny.set_gradient_checkpointing(False)
    assert not hf_tiny.gradient_checkpointing
    hf_tiny.set_gradient_checkpointing(True)
    hf_tiny(ids, targets=targets).loss.backward()
    assert all(p.grad is not None for p in hf_tiny.parameters())
    report = hf_tiny.kernel_report()
    assert report["hf_mixer"].startswith("torch (HF slow path")
    with pytest.raises(ValueError, match="document"):
        hf_tiny(ids, doc_starts=torch.zeros_like(ids, dtype=torch.bool))


def test_hf_init_is_hfs_and_save_load_round_trip(hf_tiny, tmp_path):
    emb = hf_tiny.hf_model.backbone.embeddings.weight
    assert 0.08 < emb.std().item() < 0.12          # HF's initializer_range 0.1, as documented
    save_model(hf_tiny, tmp_path / "ckpt")
    loaded = load_pretrained(tmp_path / "ckpt")
    assert isinstance(loaded, HFMambaLM)
    ids = torch.randint(0, 61, (1, 7))
    hf_tiny.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, hf_tiny(ids).logits)


def test_generate_runs_on_the_hf_model(hf_tiny):
    from mambalab.models import generate

    hf_tiny.eval()
    prompt = torch.randint(0, 61, (1, 4))
    greedy = generate(hf_tiny, prompt, max_new_tokens=5, temperature=0.0)
    assert greedy.shape == (1, 9) and torch.equal(greedy[:, :4], prompt)
    with torch.no_grad():
        assert int(hf_tiny(prompt).logits[0, -1].argmax()) == int(greedy[0, 4])
    a = generate(hf_tiny, prompt, max_new_tokens=5, temperature=1.0, top_k=10, seed=3)
    b = generate(hf_tiny, prompt, max_new_tokens=5, temperature=1.0, top_k=10, seed=3)
    assert torch.equal(a, b)
