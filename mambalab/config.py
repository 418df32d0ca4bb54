"""Typed schemas behind the YAML, and a start-up check of every `_target_` node.

Two layers catch a bad config before any work is done:
1. Structured configs in Hydra's ConfigStore (`trainer/base_trainer`, `optimizer/base_adamw`): the
   YAML options extend them, so an unknown or mistyped key fails at compose time with its full name.
2. `validate_targets(cfg)`: every node with a `_target_` (model, data, tokenizer, ... owned by
   other parts and not typed here) is checked against its target's signature.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from mambalab.training.typecheck import ConfigError, validate_targets

__all__ = ["AdamWConfig", "ConfigError", "TrainerConfig", "register_configs", "validate_targets"]


@dataclass
class TrainerConfig:
    """Everything the training loop decides; `instantiate(cfg.trainer)` returns this object."""

    _target_: str = "mambalab.config.TrainerConfig"
    # Stop at whichever of these is reached first; at least one must be set.
    max_steps: int | None = None  # optimizer steps
    max_tokens: int | None = None  # tokens seen by the optimizer, all ranks together
    epochs: float | None = None  # passes over the training split
    # Training-time budget in seconds: the run ends normally (end-of-training evaluation and
    # checkpoint, status completed, summary `stopped_by: max_time_s`) at the first step boundary
    # past it. Counted is the time spent in optimizer steps only (data, forward, backward, update;
    # not set-up, evaluation, checkpointing or samples), summed over resumed attempts through the
    # checkpoint, so a resumed run gets what is left. The lr schedule still spans the step limit
    # above: set max_steps near what the budget allows, or use a constant/wsd schedule.
    max_time_s: float | None = None
    # Gradient accumulation: either fixed, or derived from the tokens each optimizer step sees
    # (tokens_per_step / (batch_size * seq_len * num_processes), which must divide exactly).
    grad_accum_steps: int = 1
    tokens_per_step: int | None = None
    mixed_precision: str = "bf16"  # no | bf16 | fp16 (fp32 master weights; fp16 adds a scaler)
    grad_clip: float | None = 1.0  # max global grad norm; null: no clipping (the norm is logged)
    compile: bool = False  # torch.compile the model
    strategy: str = "ddp"  # ddp | fsdp (only matters with several processes)
    num_processes: int = 1  # >1: the app starts this many workers itself (torch.distributed.run)
    log_every: int = 10
    eval_every: int | None = 1000  # null: only at the end
    eval_at_end: bool = True
    eval_split: str = "validation"
    eval_max_batches: int | None = 100
    checkpoint_every: int | None = 1000  # null: only at the end (and on SIGTERM/SIGINT)
    keep_last: int = 2  # complete checkpoints kept, besides the best
    save_best: bool = True  # checkpoint whenever the validation loss improves; `checkpoints/best`
    sample_every: int | None = None  # generated samples in metrics.jsonl every N steps
    sample_prompt: str = "The"
    sample_tokens: int = 64
    resume: str = "auto"  # auto: resume if a valid checkpoint exists | true: must | false: fresh
    max_bad_steps: int = 5  # non-finite loss/grad steps in a row before the run stops
    oom_retry: bool = False  # CUDA OOM: halve the micro-batch, double accumulation, retry the step
    overlap_steps: bool = False  # queue step k + 1 before reading step k back (fused AdamW, no fp16)
    # the step as one CUDA graph, replayed: auto (where it can: one CUDA process, fused AdamW, no
    # fp16 scaler, no torch.compile) | true (the same, warning where it cannot) | false
    cuda_graphs: str = "auto"
    progress_bar: bool = True
    cpu_threads: int | None = None  # torch intra-op threads on CPU; null: torch's default
    peak_flops: float | None = None  # per device, for MFU; null: looked up from the GPU's name
    # Simulates a pre-emption: checkpoint and exit after this step, exactly as SIGTERM does; the
    # schedule is unchanged, so re-running without it resumes the same run (also for time-boxed jobs).
    interrupt_at_step: int | None = None
    # Test aid only: the loss of these optimizer steps is made NaN to exercise the non-finite guard.
    debug_inject_nan_at_steps: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.resume = str(self.resume).lower()
        self.cuda_graphs = str(self.cuda_graphs).lower()
        choices = {
            "resume": (self.resume, ("auto", "true", "false")),
            "cuda_graphs": (self.cuda_graphs, ("auto", "true", "false")),
            "mixed_precision": (self.mixed_precision, ("no", "bf16", "fp16")),
            "strategy": (self.strategy, ("ddp", "fsdp")),
        }
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"trainer.{key}={value!r}: expected one of {', '.join(allowed)}")
        if self.max_steps is None and self.max_tokens is None and self.epochs is None:
            raise ConfigError(
                "trainer: none of max_steps, max_tokens, epochs is set; set one "
                "(e.g. trainer.max_steps=1000)"
            )
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise ConfigError(f"trainer.max_time_s={self.max_time_s}: must be > 0 seconds, or null "
                              "for no time budget")
        for key in ("grad_accum_steps", "num_processes", "log_every", "max_bad_steps"):
            if getattr(self, key) < 1:
                raise ConfigError(f"trainer.{key}={getattr(self, key)}: must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "_target_"}


@dataclass
class AdamWConfig:
    """Schema of `conf/optimizer/adamw.yaml` (a `_partial_` node: the parameters come later)."""

    _target_: str = "mambalab.training.optim.build_adamw"
    _partial_: bool = True
    lr: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1
    fused: str = "auto"  # auto: fused kernels on CUDA | true | false


_MAX_LEAF_BYTES = 255  # what Linux and macOS file systems take for one name


def _run_leaf(override_dirname: str) -> str:
    """A run's folder name (outputs/<name>/<leaf>, multirun/<sweep>/<leaf>): its overrides, or
    `base` when there are none. A path given as a value would nest folders, so '/' becomes '_';
    a name too long for the file system is cut and ends with a hash of the whole, so that the same
    command still finds the same folder and different ones never share it."""
    leaf = (override_dirname or "base").replace("/", "_")
    raw = leaf.encode()
    if len(raw) > _MAX_LEAF_BYTES:
        digest = hashlib.sha1(raw).hexdigest()[:12]
        leaf = raw[: _MAX_LEAF_BYTES - 13].decode(errors="ignore") + "-" + digest
    return leaf


def register_configs() -> None:
    """Register the schemas and resolvers; idempotent (train.py and the tests both call it)."""
    cs = ConfigStore.instance()
    cs.store(group="trainer", name="base_trainer", node=TrainerConfig)
    cs.store(group="optimizer", name="base_adamw", node=AdamWConfig)
    if not OmegaConf.has_resolver("mambalab.run_leaf"):
        OmegaConf.register_new_resolver("mambalab.run_leaf", _run_leaf)


register_configs()
