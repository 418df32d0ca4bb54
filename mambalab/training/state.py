"""The trainer's own counters: checkpointed as `trainer_state.json`, so a resume continues them."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainState:
    step: int = 0  # optimizer steps taken (skipped non-finite steps included: their data was used)
    tokens: int = 0  # tokens consumed, all ranks together
    best_loss: float = math.inf  # best validation loss so far
    best_step: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    last_eval: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0  # training wall time over all attempts
    # Time inside optimizer steps only (no set-up, evaluation, checkpoints), over all attempts:
    # what trainer.max_time_s budgets, and the x axis of a wall-clock comparison of runs.
    train_time_s: float = 0.0
    micro_splits: int = 1  # micro-batch split that fit in memory (trainer.oom_retry)
    guard: dict[str, int] = field(default_factory=lambda: {"in_a_row": 0, "total": 0})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["best_loss"] = None if math.isinf(self.best_loss) else self.best_loss
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        if kwargs.get("best_loss") is None:
            kwargs["best_loss"] = math.inf
        return cls(**kwargs)
