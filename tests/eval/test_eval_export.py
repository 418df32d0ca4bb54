"""python -m mambalab.export: an HF folder that transformers loads with equal logits and tokenizer."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from eval_toys import make_run, save_tiny_hf_model
from hydra import compose, initialize_config_dir

from mambalab.eval.config import register_eval_configs
from mambalab.eval.export import run_export
from mambalab.models import load_pretrained

CONF = str(Path(__file__).resolve().parents[2] / "conf")
TEXTS = ["the café is open", "exported models keep their tokenizer"]


def export(*overrides: str) -> dict:
    register_eval_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return run_export(compose("export", overrides=list(overrides)))


def test_export_loads_in_transformers_with_equal_logits(tmp_path):
    from transformers import AutoTokenizer, MambaForCausalLM

    _, tokenizer = save_tiny_hf_model(tmp_path / "tok", TEXTS)  # its tokenizer trains the run
    run = make_run(tmp_path / "run", {"_target_": "unused.at.export"},
                   {"_target_": "mambalab.data.HFTokenizer", "path": str(tmp_path / "tok")},
                   vocab_size=len(tokenizer))
    out = tmp_path / "exported"
    report = export(f"ckpt={run}", f"out={out}")
    assert report["hf_tokenizer"] and report["max_abs_logit_diff"] < 1e-4

    hf_model = MambaForCausalLM.from_pretrained(str(out)).eval()
    hf_tokenizer = AutoTokenizer.from_pretrained(str(out))
    ids = hf_tokenizer.encode(TEXTS[1], add_special_tokens=False)
    assert ids == tokenizer.encode(TEXTS[1], add_special_tokens=False)
    ours = load_pretrained(run, kernels="reference").eval()
    with torch.no_grad():
        expected = ours(torch.tensor([ids])).logits
        got = hf_model(torch.tensor([ids])).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_export_of_a_missing_checkpoint_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export(f"ckpt={tmp_path / 'nope'}", f"out={tmp_path / 'out'}")
