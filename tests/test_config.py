"""Every option of every config group composes, passes validate_targets and instantiates; a bad key,
a wrong type or a missing value fails before any work with the key's full name."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mambalab.config import ConfigError, TrainerConfig, validate_targets
from mambalab.train import model_config_for
from mambalab.training.job import RUNTIME_ARGS

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ["tokenizer", "data", "model", "optimizer", "scheduler", "trainer", "logger", "experiment"]
# Shrinks that keep each option's own keys but make instantiation instant.
SMALL_MODEL = ["model.d_model=16", "model.n_layer=1"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_cfg(*overrides: str, hydra_cfg: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=hydra_cfg)


@pytest.fixture(scope="module")
def neox_like_tokenizer(tmp_path_factory) -> str:
    """A small BPE tokenizer.json with GPT-NeoX's special tokens: the gpt_neox option offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.train_from_iterator(["hello world, the mamba trains"] * 20,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|padding|>"]))
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return str(path)


def build_text_cache(tmp_path: Path) -> str:
    """A token cache built from a small text file with the byte tokenizer (for data=cached)."""
    from mambalab.data import ByteTokenizer, TextDataModule

    data = TextDataModule(tokenizer=ByteTokenizer(), train_files=str(tmp_path / "train.txt"),
                          seq_len=16, batch_size=2, cache_dir=str(tmp_path / "cache"), num_proc=1,
                          progress=False)
    return str(data.prepare().directory)


def overrides_for(group: str, option: str, tmp_path: Path) -> list[str]:
    overrides = [f"{group}={option}", *SMALL_MODEL]
    if (group, option) == ("data", "text"):
        overrides.append(f"data.train_files={tmp_path}/train.txt")
    if (group, option) == ("data", "cached"):
        overrides += ["tokenizer=byte", f"data.path={build_text_cache(tmp_path)}"]
    return overrides


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_validates_and_instantiates(group, option, tmp_path, monkeypatch,
                                                          neox_like_tokenizer):
    monkeypatch.setenv("MAMBALAB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "train.txt").write_text("some text to train on\n" * 200)
    overrides = overrides_for(group, option, tmp_path)
    cfg = compose_cfg(*overrides)
    if cfg.tokenizer._target_.endswith("HFTokenizer"):  # offline: a local tokenizer.json
        cfg = compose_cfg(*overrides, f"tokenizer.path={neox_like_tokenizer}")
    validate_targets(cfg, provided=RUNTIME_ARGS)
    trainer = instantiate(cfg.trainer, _convert_="all")
    assert isinstance(trainer, TrainerConfig)
    tok = instantiate(cfg.tokenizer)
    data = instantiate(cfg.data, tokenizer=tok)  # no prepare(): hub datasets stay untouched
    model = instantiate(model_config_for(cfg.model, data.vocab_size))
    optimizer = instantiate(cfg.optimizer)(model=model)
    scheduler = instantiate(cfg.scheduler)(optimizer=optimizer, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert 0 < max(lrs) <= cfg.optimizer.lr * (1 + 1e-9)
    for node in (cfg.get("logger") or {}).values():
        instantiate(node)


def test_run_and_sweep_dirs_are_deterministic():
    cfg = compose_cfg("experiment=quickstart", "optimizer.lr=1e-3", "trainer.resume=true", hydra_cfg=True)
    assert cfg.hydra.run.dir == "outputs/quickstart/optimizer.lr=1e-3"
    assert cfg.hydra.sweep.dir == "multirun/quickstart" and cfg.sweep.name == "quickstart"
    assert compose_cfg(hydra_cfg=True).hydra.run.dir == "outputs/wt103_mamba_130m/base"
    assert compose_cfg("~experiment", hydra_cfg=True).hydra.run.dir == "outputs/default/base"


def test_run_folder_names_never_nest_and_fit_the_file_system():
    from mambalab.config import _run_leaf

    assert _run_leaf("") == "base"
    assert _run_leaf("optimizer.lr=3e-4") == "optimizer.lr=3e-4"
    # a path as a value must not create sub-folders
    assert _run_leaf("tokenizer.path=/data/neox/tokenizer.json") == "tokenizer.path=_data_neox_tokenizer.json"
    long_a = ",".join(f"trainer.key{i}=value{i}" for i in range(60))
    long_b = long_a.replace("value39", "other39")
    leaf_a, leaf_b = _run_leaf(long_a), _run_leaf(long_b)
    assert len(leaf_a.encode()) <= 255 and leaf_a == _run_leaf(long_a)  # same command, same folder
    assert leaf_a != leaf_b  # differing only past the cut still differs


def test_unknown_trainer_key_fails_with_its_name():
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg("trainer.max_stpes=10")  # the typed schema refuses it at compose time
    assert "Key 'max_stpes' not in 'TrainerConfig'" in str(err.value.__cause__)
    cfg = compose_cfg("+trainer.max_stpes=10")  # forced in: validate_targets still catches it
    with pytest.raises(ConfigError, match="trainer.max_stpes: unknown key for mambalab.config.TrainerConfig"):
        validate_targets(cfg, provided=RUNTIME_ARGS)


def test_wrong_trainer_type_fails_with_its_name():
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg("trainer.max_steps=many")
    assert "trainer.max_steps" in str(err.value.__cause__ or err.value)


def test_validate_targets_names_unknown_wrong_and_missing_keys():
    cfg = compose_cfg("experiment=quickstart", "+model.d_modle=64", "model.n_layer=two",
                      "data=text", "+scheduler.warmup=5")
    with pytest.raises(ConfigError) as err:
        validate_targets(cfg, provided=RUNTIME_ARGS)
    msg = str(err.value)
    assert "model.d_modle: unknown key for mambalab.models.build_mamba_lm" in msg
    assert "model.n_layer='two': expected int" in msg
    assert "data.train_files: required value missing (???)" in msg
    assert "scheduler.warmup: unknown key" in msg


def test_trainer_choices_and_stop_condition_are_checked():
    with pytest.raises(ConfigError, match="trainer.mixed_precision='fp8'"):
        TrainerConfig(max_steps=1, mixed_precision="fp8")
    with pytest.raises(ConfigError, match="none of max_steps, max_tokens, epochs"):
        TrainerConfig()
    assert TrainerConfig(max_steps=1, resume=True).resume == "true"


def test_model_vocab_smaller_than_data_is_refused():
    cfg = compose_cfg("experiment=quickstart", "model.vocab_size=8")
    with pytest.raises(ConfigError, match=r"model.vocab_size=8 is smaller .*data.vocab_size=16"):
        model_config_for(cfg.model, 16)
    assert model_config_for(compose_cfg("experiment=quickstart").model, 16).vocab_size == 16


def test_resolved_config_round_trips_to_yaml():
    cfg = compose_cfg("experiment=quickstart")
    assert json.loads(json.dumps(OmegaConf.to_container(cfg, resolve=True)))["name"] == "quickstart"
