"""python -m mambalab.evaluate ckpt=PATH [data=...] [split=test] [mode=[chunked,streaming]] ...

Perplexity (token, word, bits per byte), synthetic-task accuracy, samples and a baseline
comparison; see docs/evaluation.md. This file composes the config and runs; nothing else.
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mambalab.eval.config import register_eval_configs

register_eval_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from mambalab.eval.app import run_evaluation

    run_evaluation(cfg)


if __name__ == "__main__":
    main()
