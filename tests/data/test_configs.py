"""Compose every data and tokenizer config, instantiate it the way the entry points do, and load
a batch: the YAML keys must be exactly the targets' arguments."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from datagen import write_docs

CONF = Path(__file__).resolve().parents[2] / "conf"
SMALL = {"induction_heads": ["data.seq_len=32"], "selective_copying": ["data.seq_len=64"],
         "synthetic": ["data.seq_len=16", "data.vocab_size=300"]}


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(overrides=overrides)


@pytest.mark.parametrize("group", ["data", "tokenizer"])
def test_yaml_keys_are_the_targets_arguments(group):
    for path in sorted((CONF / group).glob("*.yaml")):
        node = OmegaConf.load(path)
        params = inspect.signature(get_class(node._target_)).parameters
        unknown = set(node) - {"_target_"} - set(params)
        assert not unknown, f"{path.name}: {unknown} are not arguments of {node._target_}"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_synthetic_configs_instantiate_and_load(name, tmp_path, monkeypatch):
    monkeypatch.setenv("MAMBALAB_CACHE", str(tmp_path))
    cfg = _compose([f"+data={name}", "+tokenizer=byte", *SMALL[name]])
    data = instantiate(cfg.data, tokenizer=instantiate(cfg.tokenizer))
    data.prepare()
    batch = next(data.train_loader())
    assert batch["input_ids"].shape == (data.batch_size, data.seq_len)
    assert data.cache_dir == str(tmp_path)


def test_text_config_with_sweep_style_overrides(tmp_path):
    write_docs(tmp_path / "corpus", 30)
    cfg = _compose(["+data=text", "+tokenizer=byte", f"data.train_files={tmp_path}/corpus/*.txt",
                    "data.validation_fraction=0.2", "data.seq_len=16", "data.batch_size=2",
                    f"data.cache_dir={tmp_path}/cache", "data.num_proc=1", "data.progress=false"])
    data = instantiate(cfg.data, tokenizer=instantiate(cfg.tokenizer))
    data.prepare()
    assert (data.seq_len, data.task, data.metric, data.splits) == (16, "lm", "perplexity", ["train", "validation"])
    assert next(data.train_loader())["input_ids"].shape == (2, 16)
    assert sum(1 for _ in data.eval_loader("validation", seq_len=8)) > 0


def test_text_config_requires_train_files():
    cfg = _compose(["+data=text", "+tokenizer=byte"])
    assert OmegaConf.is_missing(cfg.data, "train_files")


def test_prepare_command_builds_then_reuses(tmp_path, capsys):
    from mambalab.data.prepare import main

    write_docs(tmp_path / "corpus", 8)
    args = ["data=text", "tokenizer=byte", f"data.train_files={tmp_path}/corpus/*.txt",
            f"data.cache_dir={tmp_path}/cache", "data.num_proc=1", "data.progress=false"]
    first = main(args)
    again = main(args)
    assert first["built"] and not again["built"] and first["directory"] == again["directory"]
    assert first["splits"]["train"]["documents"] == 8
    assert "reused" in capsys.readouterr().out
