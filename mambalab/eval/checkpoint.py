"""What ``ckpt=`` names: a run directory, a checkpoint directory, a model folder, or a hub id.

Resolving is separate from loading so that a wrong path fails at once, with a message that says
which of the accepted forms it is not, before any model or data is built.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WHICH = ("latest", "best")


@dataclass
class ResolvedCheckpoint:
    """ckpt= resolved: where the weights are, and the run they came from (if any)."""

    source: str                     # what the user passed
    kind: str                       # "run" | "checkpoint" | "hf" | "mamba_ssm" | "hub"
    path: str                       # what load_pretrained receives
    run_dir: Path | None            # the training run, whose config.yaml and folder we use
    run_config: DictConfig | None   # the run's resolved config.yaml

    @property
    def name(self) -> str:
        """A short label for tables: the run's folder name, or the folder or hub id."""
        return (self.run_dir or Path(self.source)).name if self.kind != "hub" else self.source


def resolve_checkpoint(ckpt: str, which: str = "latest") -> ResolvedCheckpoint:
    """Classify ``ckpt`` and check that it holds what evaluation needs; raise naming what is wrong."""
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if not ckpt:
        raise ValueError("ckpt is required: ckpt=outputs/<run>, a checkpoint directory, "
                         "an HF/mamba_ssm model folder, or a hub id such as state-spaces/mamba-130m-hf")
    path = Path(ckpt).expanduser()
    if not path.exists():
        if _HUB_ID.match(ckpt) and not ckpt.startswith((".", "/", "~")):
            return ResolvedCheckpoint(ckpt, "hub", ckpt, None, None)
        raise FileNotFoundError(f"checkpoint {ckpt!r} does not exist: it is neither a path on this "
                                f"machine nor a hub id of the form owner/name")
    if not path.is_dir():
        raise ValueError(f"checkpoint {ckpt!r} is a file; pass the folder that holds it "
                         f"(a run directory, checkpoints/step_XXXXXXXX, or a model folder)")
    if (path / "checkpoints").is_dir() or (path / "config.yaml").is_file() and not _has_weights(path):
        return _run_directory(ckpt, path, which)
    if (path / "model_config.json").is_file():
        return _checkpoint_directory(ckpt, path)
    if (path / "config.json").is_file():
        kind = "hf" if '"model_type"' in (path / "config.json").read_text() else "mamba_ssm"
        return ResolvedCheckpoint(ckpt, kind, str(path), None, None)
    raise ValueError(f"{ckpt!r} is not a run directory (config.yaml + checkpoints/), a checkpoint "
                     f"directory (model_config.json + model.safetensors) or a model folder "
                     f"(config.json): found {sorted(p.name for p in path.iterdir())[:10]}")


def _has_weights(path: Path) -> bool:
    return any((path / name).is_file() for name in
               ("model.safetensors", "pytorch_model.bin", "model_config.json", "config.json"))


def _run_directory(ckpt: str, path: Path, which: str) -> ResolvedCheckpoint:
    pointer = path / "checkpoints" / which
    if not pointer.is_file():
        steps = sorted(p.name for p in (path / "checkpoints").glob("step_*")) \
            if (path / "checkpoints").is_dir() else []
        hint = (f"complete steps found: {steps}; pass one as ckpt={path}/checkpoints/<step>"
                if steps else "it has no checkpoint yet: train it first (trainer.checkpoint_every)")
        raise FileNotFoundError(f"run directory {ckpt!r} has no checkpoints/{which} pointer; {hint}")
    step_dir = path / "checkpoints" / pointer.read_text().strip()
    _check_complete(step_dir, f"checkpoints/{which} of run {ckpt!r}")
    return ResolvedCheckpoint(ckpt, "run", str(path), path, _load_run_config(path))


def _checkpoint_directory(ckpt: str, path: Path) -> ResolvedCheckpoint:
    # A step folder of a run (run/checkpoints/step_X) or a save_model folder of its own.
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    if run_dir is not None:
        _check_complete(path, f"checkpoint {ckpt!r}")
    config = _load_run_config(run_dir) if run_dir is not None else None
    return ResolvedCheckpoint(ckpt, "checkpoint", str(path), run_dir, config)


def _check_complete(step_dir: Path, what: str) -> None:
    if not step_dir.is_dir():
        raise FileNotFoundError(f"{what} names {step_dir}, which does not exist")
    if not (step_dir / "COMPLETE").is_file():
        raise ValueError(f"{what} ({step_dir}) is incomplete: no COMPLETE marker (the save was "
                         f"interrupted); use an earlier step or the run's checkpoints/latest")
    if not (step_dir / "model_config.json").is_file():
        raise FileNotFoundError(f"{what} ({step_dir}) has no model_config.json: not a mambalab "
                                f"checkpoint")


def _load_run_config(run_dir: Path) -> DictConfig | None:
    config = run_dir / "config.yaml"
    return OmegaConf.load(config) if config.is_file() else None
