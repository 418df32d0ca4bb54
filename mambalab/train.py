"""`python -m mambalab.train [overrides]`: compose the config, build the parts, fit.

    python -m mambalab.train                               # the seed recipe (wt103_mamba_130m)
    python -m mambalab.train experiment=quickstart         # CPU, offline, about a minute
    python -m mambalab.train -m optimizer.lr=3e-4,5e-4     # a sweep; re-running it resumes it
"""
from __future__ import annotations

import logging
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mambalab.config import ConfigError, TrainerConfig, register_configs
from mambalab.training.job import run_job
from mambalab.training.rng import seed_everything
from mambalab.training.run_dir import RunDir
from mambalab.training.trainer import Trainer

log = logging.getLogger("mambalab.train")

register_configs()


def model_config_for(model_cfg: DictConfig, data_vocab_size: int) -> DictConfig:
    """`vocab_size: auto` becomes the data's; an explicit one must cover the data's ids."""
    vocab = model_cfg.get("vocab_size", "auto")
    if vocab == "auto":
        return OmegaConf.merge(model_cfg, {"vocab_size": int(data_vocab_size)})
    if int(vocab) < data_vocab_size:
        raise ConfigError(
            f"model.vocab_size={vocab} is smaller than the data's vocabulary (data.vocab_size="
            f"{data_vocab_size}): token ids would fall outside the embedding. Use "
            f"model.vocab_size=auto or a value >= {data_vocab_size}")
    return model_cfg


def train(cfg: DictConfig, trainer_config: TrainerConfig, run_dir: RunDir) -> dict[str, Any]:
    seed_everything(cfg.seed)
    log.info("Instantiating tokenizer <%s>", cfg.tokenizer._target_)
    tokenizer = instantiate(cfg.tokenizer)
    log.info("Instantiating data <%s>", cfg.data._target_)
    data = instantiate(cfg.data, tokenizer=tokenizer)
    log.info("Instantiating model <%s>", cfg.model._target_)
    model = instantiate(model_config_for(cfg.model, data.vocab_size))
    optimizer = instantiate(cfg.optimizer)  # _partial_: called with the model by the trainer
    scheduler = instantiate(cfg.scheduler)  # _partial_: called with the optimizer and total steps
    loggers = [instantiate(node) for node in (cfg.get("logger") or {}).values()]
    trainer = Trainer(model=model, data=data, optimizer=optimizer, scheduler=scheduler,
                      loggers=loggers, config=trainer_config, run_dir=run_dir, seed=cfg.seed,
                      tokenizer=tokenizer, resolved_config=OmegaConf.to_container(cfg, resolve=True))
    return trainer.fit()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> dict[str, Any] | None:
    return run_job(cfg, train)


if __name__ == "__main__":
    main()
