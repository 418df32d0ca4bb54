"""Non-finite loss or gradient: skip the update, count it, stop after too many in a row."""
from __future__ import annotations


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm was NaN/Inf for trainer.max_bad_steps steps in a row."""


class NonFiniteGuard:
    def __init__(self, max_bad_steps: int) -> None:
        self.max_bad_steps = max_bad_steps
        self.in_a_row = 0
        self.total = 0

    def record(self, finite: bool, step: int) -> bool:
        """Record one step; returns whether its update may be applied. Raises once the limit is hit
        (the caller checkpoints the last good state first: see `exhausted`)."""
        if finite:
            self.in_a_row = 0
            return True
        self.in_a_row += 1
        self.total += 1
        return False

    @property
    def exhausted(self) -> bool:
        return self.in_a_row >= self.max_bad_steps

    def error(self, step: int) -> NonFiniteLossError:
        return NonFiniteLossError(
            f"loss or gradient norm was NaN/Inf for {self.in_a_row} steps in a row (up to step "
            f"{step}; trainer.max_bad_steps={self.max_bad_steps}); the last good weights were "
            "checkpointed. Lower optimizer.lr, lengthen the scheduler's warmup, or clip harder "
            "(trainer.grad_clip); with fp16, try trainer.mixed_precision=bf16"
        )

    def state_dict(self) -> dict[str, int]:
        return {"in_a_row": self.in_a_row, "total": self.total}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.in_a_row, self.total = state["in_a_row"], state["total"]
