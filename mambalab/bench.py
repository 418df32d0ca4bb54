"""python -m mambalab.bench: training throughput of mambalab against the reference implementations.

    python -m mambalab.bench                          # Mamba-130M, seq 2048, batch 8 and 16
    python -m mambalab.bench bench.ops=true bench.profile=true
    python -m mambalab.bench bench.implementations=[mambalab] bench.kernels=[triton]

Composes conf/bench.yaml, checks it, and runs ``mambalab.benchmarks.runner.run_benchmark``.
"""
from __future__ import annotations

import logging

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    from mambalab.training.typecheck import validate_targets

    validate_targets(cfg)
    log.info("Running <%s>", cfg.bench._target_)
    instantiate(cfg.bench)


if __name__ == "__main__":
    main()
