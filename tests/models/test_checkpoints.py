"""Checkpoints: mambalab dirs and run dirs, HF both ways, mamba_ssm folders, clear errors."""
from __future__ import annotations

import json

import pytest
import torch

from mambalab.models import build_mamba_lm, export_hf, load_pretrained, save_model


def logits_of(model, ids):
    model.eval()
    with torch.no_grad():
        out = model(ids)
    return out.logits


def test_save_and_load_a_model_dir_and_a_run_dir(tiny, tmp_path):
    ids = torch.randint(0, 61, (2, 9))
    step = tmp_path / "run" / "checkpoints" / "step_00000010"
    save_model(tiny, step)
    spec = json.loads((step / "model_config.json").read_text())
    assert spec["target"] == "mambalab.models.build_mamba_lm" and spec["kwargs"]["d_state"] == 8
    loaded = load_pretrained(step)
    torch.testing.assert_close(logits_of(loaded, ids), logits_of(tiny, ids))
    assert loaded.lm_head.weight is loaded.backbone.embedding.weight
    # A run directory: checkpoints/latest and checkpoints/best name step folders.
    other = build_mamba_lm(d_model=32, n_layer=2, vocab_size=61, d_state=8)
    save_model(other, tmp_path / "run" / "checkpoints" / "step_00000020")
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step_00000020\n")
    (tmp_path / "run" / "checkpoints" / "best").write_text("step_00000010\n")
    torch.testing.assert_close(logits_of(load_pretrained(tmp_path / "run"), ids),
                               logits_of(other, ids))
    torch.testing.assert_close(logits_of(load_pretrained(tmp_path / "run", which="best"), ids),
                               logits_of(tiny, ids))
    # init_from: a fresh build that starts from those weights (fine-tuning).
    tuned = build_mamba_lm(d_model=32, n_layer=2, vocab_size=61, d_state=8,
                           init_from=str(tmp_path / "run"))
    torch.testing.assert_close(logits_of(tuned, ids), logits_of(other, ids))


def test_mismatched_checkpoints_name_the_tensor(tiny, tmp_path):
    save_model(tiny, tmp_path / "ckpt")
    with pytest.raises(ValueError, match=r"shape mismatch for backbone\.embedding\.weight"):
        build_mamba_lm(d_model=32, n_layer=2, vocab_size=200, d_state=8,
                       init_from=str(tmp_path / "ckpt"))
    with pytest.raises(ValueError, match=r"unknown tensor backbone\.layers\.1\.mixer\.A_log"):
        build_mamba_lm(d_model=32, n_layer=1, vocab_size=61, d_state=8,
                       init_from=str(tmp_path / "ckpt"))
    with pytest.raises(ValueError, match=r"missing tensor backbone\.layers\.2\.norm\.weight"):
        build_mamba_lm(d_model=32, n_layer=3, vocab_size=61, d_state=8,
                       init_from=str(tmp_path / "ckpt"))
    with pytest.raises(FileNotFoundError, match="not a mambalab model directory"):
        load_pretrained(tmp_path)


def test_hub_id_offline_fails_at_once_with_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"(?s)offline.*huggingface-cli download"):
        load_pretrained("state-spaces/some-model-that-is-not-cached")


def tiny_hf_model():
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(0)
    config = MambaConfig(hidden_size=32, num_hidden_layers=2, vocab_size=64, state_size=8,
                         expand=2, conv_kernel=4, time_step_rank=4, initializer_range=0.02)
    return MambaForCausalLM(config).eval()


def test_hf_folder_loads_with_equal_logits(tmp_path):
    hf = tiny_hf_model()
    hf.save_pretrained(tmp_path / "hf")
    ours = load_pretrained(tmp_path / "hf")
    ids = torch.randint(0, 64, (2, 13))
    with torch.no_grad():
        expected = hf(ids).logits
    assert (logits_of(ours, ids) - expected).abs().max() < 1e-4
    assert ours.config.dt_rank == 4 and ours.config.padded_vocab_size == 64


def test_export_hf_loads_in_transformers_with_equal_logits(tiny, tmp_path):
    from transformers import MambaForCausalLM

    export_hf(tiny, tmp_path / "export")
    hf = MambaForCausalLM.from_pretrained(tmp_path / "export").eval()
    ids = torch.randint(0, 61, (2, 13))
    with torch.no_grad():
        got = hf(ids).logits
    assert (got - logits_of(tiny, ids)).abs().max() < 1e-4
    assert hf.config.vocab_size == 64 and hf.config.time_step_rank == 2


def test_mamba_ssm_folder_loads(tiny, tmp_path):
    """As state-spaces/mamba-130m: config.json (unpadded vocab, ssm_cfg) + pytorch_model.bin
    holding the tied lm_head.weight too."""
    folder = tmp_path / "mamba_ssm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "d_model": 32, "n_layer": 2, "vocab_size": 61, "ssm_cfg": {"d_state": 8},
        "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
        "pad_vocab_size_multiple": 8}))
    torch.save({k: v.clone() for k, v in tiny.state_dict().items()}, folder / "pytorch_model.bin")
    loaded = load_pretrained(folder, kernels="reference")
    ids = torch.randint(0, 61, (2, 11))
    torch.testing.assert_close(logits_of(loaded, ids), logits_of(tiny, ids))
    # A Mamba-2 config is refused by name, not half-loaded.
    (folder / "config.json").write_text(json.dumps({
        "d_model": 32, "n_layer": 2, "vocab_size": 61, "ssm_cfg": {"layer": "Mamba2"}}))
    with pytest.raises(ValueError, match="only Mamba-1"):
        load_pretrained(folder)


class _Tokenizer:
    eos_id = 3

    def save_pretrained(self, directory):
        (directory / "tokenizer.json").write_text("{}")


def test_export_hf_writes_the_tokenizer_and_its_eos(tiny, tmp_path):
    out = export_hf(tiny, tmp_path / "export", tokenizer=_Tokenizer())
    config = json.loads((out / "config.json").read_text())
    assert (out / "tokenizer.json").is_file() and config["eos_token_id"] == 3
    assert config["hidden_size"] == 32 and config["state_size"] == 8
    assert config["tie_word_embeddings"] is True and config["use_conv_bias"] is True


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_loading_with_kernels_cuda_on_cpu_fails_at_build(tiny, tmp_path):
    save_model(tiny, tmp_path / "ckpt")
    with pytest.raises(ValueError, match="kernels=cuda needs a CUDA GPU"):
        load_pretrained(tmp_path / "ckpt", kernels="cuda")
