"""Ray launcher: each job of a sweep is one Ray task with its own GPUs, on a local or remote cluster.

Ours rather than hydra-ray-launcher because that plugin pins `cloudpickle<3`, which conflicts with
joblib>=1.5 (needed by hydra-joblib-launcher), and it drags in boto3 and the AWS autoscaler. This
one needs only `ray` (`pip install "mambalab[ray]"`). Ray sets `CUDA_VISIBLE_DEVICES` for each task
from its `num_gpus`, so concurrent jobs never share a GPU. Registered with Hydra as
`hydra_plugins.mambalab_sweeps.launchers.RayTaskLauncher`; configured by `conf/hydra/launcher/ray.yaml`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


def _run_job_in_ray_task(hydra_context: HydraContext, sweep_config: DictConfig,
                         task_function: TaskFunction, singleton_state: dict[Any, Any]) -> JobReturn:
    """Runs inside the Ray worker, where Ray has already set CUDA_VISIBLE_DEVICES."""
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=hydra_context, config=sweep_config, task_function=task_function,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


class RayTaskLauncherImpl(Launcher):
    def __init__(self, address: str | None = None, num_gpus: float = 1.0, num_cpus: float = 1.0,
                 max_retries: int = 0, init: dict[str, Any] | None = None,
                 runtime_env: dict[str, Any] | None = None) -> None:
        self.address = address
        self.num_gpus = float(num_gpus)
        self.num_cpus = float(num_cpus)
        self.max_retries = int(max_retries)
        # Nested config nodes arrive as DictConfig; Ray wants plain dicts.
        self.init_kwargs = dict(_plain(init) or {})
        self.runtime_env = dict(_plain(runtime_env) or {})
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def _start_ray(self) -> Any:
        try:
            import ray
        except ImportError as err:
            raise ImportError("hydra/launcher=ray needs Ray: pip install 'ray>=2.9' "
                              "(or pip install -e '.[ray]')") from err
        if not ray.is_initialized():
            ray.init(address=self.address, runtime_env=self.runtime_env or None,
                     **self.init_kwargs)
        gpus = ray.cluster_resources().get("GPU", 0.0)
        if self.num_gpus > gpus:
            raise RuntimeError(
                f"hydra.launcher.num_gpus={self.num_gpus:g} but the Ray cluster has {gpus:g} GPU(s): "
                "no job could ever be scheduled. Use hydra.launcher.num_gpus=0 for CPU jobs, or "
                "point hydra.launcher.address (RAY_ADDRESS) at a cluster with GPUs.")
        return ray

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.task_function is not None
        assert self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        ray = self._start_ray()
        remote_job = ray.remote(num_gpus=self.num_gpus, num_cpus=self.num_cpus,
                                max_retries=self.max_retries)(_run_job_in_ray_task)
        log.info(f"Ray is launching {len(job_overrides)} jobs ({self.num_gpus:g} GPU, "
                 f"{self.num_cpus:g} CPU each) in {sweep_dir}")
        refs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            sweep_config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
                sweep_config.hydra.job.num = idx
            refs.append(remote_job.remote(self.hydra_context, sweep_config, self.task_function,
                                          Singleton.get_state()))
        return [ray.get(ref) for ref in refs]


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
