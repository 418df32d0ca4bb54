"""Every launcher and sweeper config composes with the real train config, and Hydra can build each."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mambalab.config import register_configs
from sweep_helpers import REPO, env, run

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
RAY = "hydra_plugins.mambalab_sweeps.launchers.RayTaskLauncher"
OPTUNA = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


def _compose(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=True)


def _select(cfg, key: str):
    return OmegaConf.select(cfg, key, throw_on_resolution_failure=True)


@pytest.mark.parametrize("processes", [1, 4])
def test_launchers_compose_and_follow_num_processes(processes: int) -> None:
    common = (f"trainer.num_processes={processes}",)
    cfg = _compose("hydra/launcher=joblib", *common)
    assert _select(cfg, "hydra.launcher._target_") == JOBLIB
    assert _select(cfg, "hydra.callbacks.gpu_assignment.gpus_per_job") == processes
    assert _select(cfg, "hydra.callbacks.sweep_summary._target_").endswith("SweepSummaryCallback")

    cfg = _compose("hydra/launcher=slurm", "hydra.launcher.partition=gpu", *common)
    assert _select(cfg, "hydra.launcher._target_") == SLURM
    assert _select(cfg, "hydra.launcher.gpus_per_node") == processes
    assert (_select(cfg, "hydra.launcher.tasks_per_node"), _select(cfg, "hydra.launcher.max_num_timeout"),
            _select(cfg, "hydra.launcher.partition")) == (1, 3, "gpu")
    assert _select(cfg, "hydra.launcher.submitit_folder").startswith("multirun/")
    assert _select(_compose("hydra/launcher=submitit_slurm"), "hydra.launcher._target_") == SLURM

    cfg = _compose("hydra/launcher=ray", *common)
    assert _select(cfg, "hydra.launcher._target_") == RAY
    assert _select(cfg, "hydra.launcher.num_gpus") == processes


def test_sweepers_compose() -> None:
    cfg = _compose("hydra/sweeper=optuna_lr", "hydra.sweeper.n_trials=5")
    sweeper = cfg.hydra.sweeper
    assert (sweeper._target_, sweeper.direction, sweeper.n_trials) == (OPTUNA, "minimize", 5)
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == 0
    assert sweeper.params == {"optimizer.lr": "tag(log, interval(1e-4, 3e-3))"}
    assert _compose("hydra/sweeper=optuna").hydra.sweeper._target_ == OPTUNA
    assert _compose().hydra.sweeper._target_.endswith("BasicSweeper")


def test_hydra_builds_every_launcher_and_sweeper(tmp_path: Path) -> None:
    """In a fresh process (plugin discovery scans `hydra_plugins` once per process): Hydra finds
    our Ray launcher, and instantiates each launcher and sweeper from its composed config."""
    script = f"""
import json
from hydra import compose, initialize_config_dir
from hydra.core.plugins import Plugins
from hydra.core.utils import setup_globals
from hydra.types import HydraContext
from hydra._internal.callbacks import Callbacks
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from mambalab.config import register_configs

register_configs()
setup_globals()
built = {{}}
for group, choice in [("launcher", "joblib"), ("launcher", "slurm"), ("launcher", "ray"),
                      ("sweeper", "optuna_lr")]:
    with initialize_config_dir(config_dir="{REPO / 'conf'}", version_base="1.3"):
        cfg = compose("train", [f"hydra/{{group}}={{choice}}"], return_hydra_config=True)
    context = HydraContext(config_loader=ConfigLoaderImpl(create_config_search_path("{REPO / 'conf'}")),
                           callbacks=Callbacks())
    if group == "launcher":
        plugin = Plugins.instance().instantiate_launcher(hydra_context=context,
                                                         task_function=print, config=cfg)
    else:
        plugin = Plugins.instance().instantiate_sweeper(hydra_context=context,
                                                        task_function=print, config=cfg)
    built[choice] = type(plugin).__module__ + "." + type(plugin).__name__
print(json.dumps(built))
"""
    result = run(["-c", script], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    built = json.loads(result.stdout.strip().splitlines()[-1])
    assert built == {"joblib": JOBLIB, "slurm": SLURM, "ray": RAY, "optuna_lr": OPTUNA}


def test_cfg_job_with_each_launcher_and_sweeper(tmp_path: Path) -> None:
    """`python -m mambalab.train --cfg job` with each choice, as a user would check a command
    (the four processes run at once: each spends its time importing)."""
    choices = ("hydra/launcher=joblib", "hydra/launcher=slurm", "hydra/launcher=ray",
               "hydra/sweeper=optuna_lr")
    procs = {choice: subprocess.Popen(
        [sys.executable, "-m", "mambalab.train", "--cfg", "job", choice, "experiment=quickstart"],
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for choice in choices}
    for choice, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (choice, err[-3000:])
        assert "optimizer:" in out and "lr: 0.003" in out
