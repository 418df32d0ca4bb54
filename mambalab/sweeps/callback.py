"""The Hydra callback that summarises a multirun when it ends, and fails it when a job failed."""
from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mambalab.sweeps.objective import final_val_loss
from mambalab.sweeps.summary import summarize_sweep


class SweepSummaryCallback(Callback):
    """Writes the sweep summary (table, `summary.csv`, `summary.png`) when a multirun ends.

    Jobs catch their own exceptions (the train task records `failed` in `summary.json` and returns),
    so the sweep always reaches its end; this callback then turns any job that did not complete
    into a non-zero exit, listing those jobs, so that a script or a scheduler sees the failure.
    """

    def __init__(self, fail_on_error: bool = True, write_files: bool = True) -> None:
        self.fail_on_error = fail_on_error
        self.write_files = write_files

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # The sweep folder exists before the sweeper starts, so that a sweeper's storage
        # (e.g. optuna's `sqlite:///${hydra.sweep.dir}/optuna.db`) can live inside it.
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """A job's return value becomes its objective: the train task returns its summary.json
        content, and a sweeper (Optuna) needs a number, the final validation loss (None when the
        job did not complete: the sweeper records a failed trial). Runs where the job ran
        (worker, Ray task, SLURM node), before its JobReturn goes back to the sweeper."""
        if job_return.status == JobStatus.COMPLETED and isinstance(job_return.return_value, Mapping) \
                and "status" in job_return.return_value:
            job_return.return_value = final_val_loss(dict(job_return.return_value))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        summary = summarize_sweep(str(config.hydra.sweep.dir), write_files=self.write_files)
        if self.fail_on_error and summary.unfinished:
            # SystemExit, not an exception: Hydra turns a callback's exceptions into warnings.
            sys.exit(1)
