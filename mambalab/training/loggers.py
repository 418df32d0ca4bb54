"""Metric loggers: jsonl (always: the run's metrics.jsonl), TensorBoard, Weights & Biases.

Construction is cheap and side-effect free (every rank instantiates the config); the trainer calls
`start` on rank 0 only, `log` for each event, and `finish` always, on failure too.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class Logger:
    def start(self, run_dir: Path, config: dict[str, Any], start_step: int) -> None:
        """Open the sink; start_step > 0 on resume (events after it from a dead attempt are stale)."""

    def log(self, metrics: dict[str, Any], step: int) -> None:
        raise NotImplementedError

    def finish(self, status: str) -> None:
        """status: completed | failed | interrupted."""


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}


class JsonlLogger(Logger):
    """One JSON object a line in `<run>/metrics.jsonl`; on resume, lines past the resumed step
    (written by the attempt that died after its last checkpoint) are dropped first."""

    def __init__(self, filename: str = "metrics.jsonl") -> None:
        self.filename = filename
        self._f = None

    def start(self, run_dir: Path, config: dict[str, Any], start_step: int) -> None:
        path = Path(run_dir) / self.filename
        if path.exists():
            kept = []
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= start_step:
                        kept.append(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
            path.write_text("".join(k + "\n" for k in kept))
        self._f = open(path, "a", buffering=1)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in metrics.items()}
        self._f.write(json.dumps({"step": step, **clean}) + "\n")

    def finish(self, status: str) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class TensorBoardLogger(Logger):
    """Scalars under `<run>/tensorboard/<split>/<name>`."""

    def __init__(self, subdir: str = "tensorboard") -> None:
        self.subdir = subdir
        self._writer = None

    def start(self, run_dir: Path, config: dict[str, Any], start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step hides events past the resumed step, so a resumed curve has no fold.
        self._writer = SummaryWriter(log_dir=str(Path(run_dir) / self.subdir),
                                     purge_step=start_step + 1 if start_step else None)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        split = metrics.get("split", "train")
        for k, v in _scalars(metrics).items():
            self._writer.add_scalar(f"{split}/{k}", v, step)

    def finish(self, status: str) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def wandb_run_id(run_dir: Path) -> str:
    """Stable across attempts of the same run directory, so a resume continues the W&B run."""
    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


class WandbLogger(Logger):
    """mode: online | offline (written under <run>/wandb, `wandb sync` later) | disabled."""

    def __init__(self, project: str = "mambalab", mode: str = "online", entity: str | None = None,
                 group: str | None = None, tags: list[str] | None = None) -> None:
        if mode not in ("online", "offline", "disabled"):
            raise ValueError(f"logger.wandb.mode={mode!r}: expected online, offline or disabled")
        self.project, self.mode, self.entity, self.group = project, mode, entity, group
        self.tags = list(tags or [])
        self._run = None

    def start(self, run_dir: Path, config: dict[str, Any], start_step: int) -> None:
        import wandb

        run_dir = Path(run_dir)
        os.environ.setdefault("WANDB_SILENT", "true")
        self._run = wandb.init(
            project=self.project, entity=self.entity, group=self.group, tags=self.tags,
            mode=self.mode, dir=str(run_dir), id=wandb_run_id(run_dir), resume="allow",
            name=f"{run_dir.parent.name}/{run_dir.name}", config=config,
        )
        log.info("W&B run %s (%s)", self._run.id, self.mode)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        split = metrics.get("split", "train")
        self._run.log({f"{split}/{k}": v for k, v in _scalars(metrics).items()}, step=step)

    def finish(self, status: str) -> None:
        if self._run is not None:
            self._run.finish(exit_code=0 if status == "completed" else 1)
            self._run = None
