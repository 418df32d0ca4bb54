"""What a sweeper optimises: a job's final validation loss, read from its summary."""
from __future__ import annotations

from typing import Any

from mambalab.sweeps.results import COMPLETED, as_number, val_metrics


def final_val_loss(summary: dict[str, Any] | None) -> float | None:
    """The final validation loss of a completed job; None for a job that failed, was interrupted,
    or never evaluated.

    None, not NaN: hydra-optuna-sweeper records a return value that is not float-castable as a
    failed trial and goes on (with max_failure_rate: 1.0), while a NaN makes optuna<3's
    `study.tell` raise twice and ends the whole search.
    """
    if not summary or summary.get("status") != COMPLETED:
        return None
    return as_number(val_metrics(summary.get("final")).get("loss"))
