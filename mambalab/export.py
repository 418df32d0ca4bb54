"""python -m mambalab.export ckpt=PATH out=DIR: an HF MambaForCausalLM folder with its tokenizer,
which transformers and ``lm_eval --model hf --model_args pretrained=DIR`` load (docs/evaluation.md).
This file composes the config and runs; nothing else."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mambalab.eval.config import register_eval_configs

register_eval_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from mambalab.eval.export import run_export

    run_export(cfg)


if __name__ == "__main__":
    main()
