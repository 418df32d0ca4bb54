"""The Hydra callback that gives each concurrent job of a joblib sweep its own GPU(s)."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mambalab.sweeps.gpus import (acquire_group, assign_devices, gpu_groups, record_assignment,
                                  release_group, visible_gpus)

log = logging.getLogger(__name__)

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


class GpuAssignmentCallback(Callback):
    """Sets `CUDA_VISIBLE_DEVICES` in the worker before each job starts (before the task can touch
    CUDA), so that `hydra/launcher=joblib` runs one job per GPU group at a time.

    The groups are computed once in the launching process (`on_multirun_start`) and travel to
    the workers inside this (pickled) callback. Launchers not listed in `launchers` (Ray, SLURM)
    place jobs on GPUs themselves, and the basic launcher runs one job at a time: both untouched.

    When: CUDA reads CUDA_VISIBLE_DEVICES once per process, and a loky worker imports the task
    (mambalab.train, torch, and whatever probes CUDA at import) while it unpickles the job, before
    any callback runs. joblib pickles a job as `(execute_job, (idx, overrides, hydra_context,
    config, task_function, ...))`, so this callback, inside `hydra_context`, is unpickled before
    the task function: `__setstate__` claims the GPU group and sets the variable there, in a
    worker that has imported nothing but Hydra. `on_job_start` covers n_jobs=1, where joblib runs
    the jobs in this process without pickling.
    """

    def __init__(self, gpus: list[Any] | None = None, gpus_per_job: int = 1,
                 launchers: list[str] | None = None) -> None:
        self.gpus = None if gpus is None else [str(g) for g in gpus]
        self.gpus_per_job = int(gpus_per_job)
        self.launchers = list(launchers) if launchers is not None else [JOBLIB]
        self.groups: list[list[str]] = []
        self._launching_pid: int | None = None
        self._slot_dir: Path | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.groups and os.getpid() != self._launching_pid:
            self._claim()

    def _claim(self) -> list[str]:
        assert self._slot_dir is not None
        devices = self.groups[acquire_group(self._slot_dir, len(self.groups))]
        assign_devices(devices)
        return devices

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if str(config.hydra.launcher.get("_target_")) not in self.launchers:
            return
        self.groups = gpu_groups(visible_gpus() if self.gpus is None else self.gpus,
                                 self.gpus_per_job)
        self._launching_pid = os.getpid()
        self._slot_dir = Path(str(config.hydra.sweep.dir)).absolute() / ".gpu_slots"
        if self.groups:
            n_jobs = config.hydra.launcher.get("n_jobs")
            log.info(f"GPU groups for concurrent jobs: {[','.join(g) for g in self.groups]}; "
                     f"hydra.launcher.n_jobs={n_jobs} (jobs beyond {len(self.groups)} at once wait "
                     "for a free group)")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.groups:
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        devices = self._claim()   # in a worker: claimed already while unpickling this job
        record_assignment(sweep_dir, int(config.hydra.job.num), str(config.hydra.runtime.output_dir),
                          devices)
        log.info(f"job #{config.hydra.job.num} runs on CUDA_VISIBLE_DEVICES={','.join(devices)}")

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if self.groups:
            release_group()
