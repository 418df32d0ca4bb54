"""The training loop and its components: checkpointing, run directories, optimizer and schedules,
hooks, metrics, loggers. Names are imported lazily: `mambalab.config` imports `training.typecheck`,
and the trainer imports `mambalab.config`."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Trainer": "mambalab.training.trainer",
    "TrainingInterrupted": "mambalab.training.trainer",
    "Checkpointer": "mambalab.training.checkpointer",
    "CheckpointError": "mambalab.training.checkpointer",
    "RunDir": "mambalab.training.run_dir",
    "RunLockedError": "mambalab.training.run_dir",
    "NonFiniteLossError": "mambalab.training.nan_guard",
    "build_adamw": "mambalab.training.optim",
    "run_job": "mambalab.training.job",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mambalab.training' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
