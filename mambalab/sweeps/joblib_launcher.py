"""Joblib launcher that gives each concurrent job its own GPU(s).

It runs jobs as hydra-joblib-launcher does (loky worker processes, `execute_job`), and before a
job starts in a worker it pins the worker to a GPU group (see `mambalab.sweeps.gpus`). Registered
with Hydra as `hydra_plugins.mambalab_sweeps.launchers.GpuJoblibLauncher`; configured by
`conf/hydra/launcher/joblib.yaml`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from joblib import Parallel, delayed
from omegaconf import DictConfig, OmegaConf, open_dict

from mambalab.sweeps.gpus import (assign_devices, claim_slot, gpu_groups, record_assignment,
                                  visible_gpus)

log = logging.getLogger(__name__)


def _execute_job_on_gpus(idx: int, overrides: Sequence[str], hydra_context: HydraContext,
                         config: DictConfig, task_function: TaskFunction,
                         singleton_state: dict[Any, Any], groups: list[list[str]],
                         sweep_dir: str) -> JobReturn:
    """Runs in the worker: claim a GPU group (first job of this worker only), then the job."""
    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    if groups:
        devices = groups[claim_slot(Path(sweep_dir) / ".gpu_slots", len(groups))]
        assign_devices(devices)
        job_dir = str(Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir))
        record_assignment(Path(sweep_dir), idx, job_dir, devices)
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=hydra_context, config=sweep_config, task_function=task_function,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


class GpuJoblibLauncherImpl(JoblibLauncher):
    """`JoblibLauncher` plus `gpus` (null: every visible GPU; []: none) and `gpus_per_job`."""

    def __init__(self, gpus: Any = None, gpus_per_job: int = 1, **joblib_kwargs: Any) -> None:
        super().__init__(**joblib_kwargs)
        self.gpus = None if gpus is None else [str(g) for g in gpus]
        self.gpus_per_job = int(gpus_per_job)

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.task_function is not None
        assert self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)

        groups = gpu_groups(visible_gpus() if self.gpus is None else self.gpus, self.gpus_per_job)
        joblib_cfg = dict(OmegaConf.to_container(OmegaConf.create(self.joblib), resolve=True))
        # loky only: the threading backend shares one process, hence one CUDA_VISIBLE_DEVICES.
        joblib_cfg["backend"] = "loky"
        process_joblib_cfg(joblib_cfg)
        n_jobs = int(joblib_cfg.get("n_jobs") or -1)
        if groups:
            if n_jobs == -1:
                n_jobs = len(groups)
            if n_jobs > len(groups):
                raise ValueError(
                    f"hydra.launcher.n_jobs={n_jobs} but only {len(groups)} GPU group(s) of "
                    f"{self.gpus_per_job} GPU(s): at most one job runs per group. Lower n_jobs, "
                    "or set hydra.launcher.gpus=[] to run without GPU assignment (CPU jobs).")
            joblib_cfg["n_jobs"] = n_jobs
        log.info(f"Joblib.Parallel(n_jobs={joblib_cfg.get('n_jobs')}) is launching "
                 f"{len(job_overrides)} jobs in {sweep_dir}; GPU groups: "
                 f"{[','.join(g) for g in groups] or 'none (CPU)'}")
        for idx, overrides in enumerate(job_overrides):
            log.info(f"\t#{initial_job_idx + idx} : {' '.join(filter_overrides(overrides))}")

        singleton_state = Singleton.get_state()
        runs = Parallel(**joblib_cfg)(
            delayed(_execute_job_on_gpus)(initial_job_idx + idx, overrides, self.hydra_context,
                                          self.config, self.task_function, singleton_state,
                                          groups, str(sweep_dir))
            for idx, overrides in enumerate(job_overrides))
        assert isinstance(runs, list) and all(isinstance(r, JobReturn) for r in runs)
        return runs
