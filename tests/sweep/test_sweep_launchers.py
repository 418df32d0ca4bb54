"""Launchers and sweepers end to end, on the fake task (same run-folder contract, no training):
joblib gives concurrent jobs different GPUs, Optuna minimises the returned loss, Ray runs jobs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweep_helpers import FAKE_APP, run


def _fake_sweep(tmp_path: Path, *overrides: str, timeout: float = 300):
    return run([str(FAKE_APP), "-m", f"hydra.sweep.dir={tmp_path / 'multirun' / 'fake'}",
                *overrides], cwd=tmp_path, timeout=timeout)


def _summaries(sweep_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/summary.json"))]


def test_joblib_gives_each_concurrent_job_its_own_gpu(tmp_path: Path) -> None:
    # Two (pretend) GPUs, three worker processes, six jobs: a worker that comes third must wait
    # for a GPU, and a reused worker must stay on the GPU its CUDA would already be bound to.
    result = _fake_sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=3",
                         "hydra.callbacks.gpu_assignment.gpus=[0,1]", "sleep_s=0.6",
                         "optimizer.lr=1e-3,2e-3,3e-3,4e-3,5e-3,6e-3")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = _summaries(tmp_path / "multirun" / "fake")
    assert len(jobs) == 6 and {j["status"] for j in jobs} == {"completed"}
    assert {j["cuda_visible_devices"] for j in jobs} == {"0", "1"}
    # The worker saw its GPU already when it imported the task's modules (CUDA may be probed at
    # import time, after which CUDA_VISIBLE_DEVICES is no longer read).
    assert all(j["cuda_visible_devices_at_import"] == j["cuda_visible_devices"] for j in jobs)
    by_pid: dict[int, set[str]] = {}
    for job in jobs:
        by_pid.setdefault(job["pid"], set()).add(job["cuda_visible_devices"])
    assert all(len(devices) == 1 for devices in by_pid.values()), by_pid
    # Never two jobs on one GPU at the same time.
    for gpu in ("0", "1"):
        spans = sorted((j["start"], j["end"]) for j in jobs if j["cuda_visible_devices"] == gpu)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
    # And two jobs did run at once (one per GPU), so the sweep is parallel.
    spans = sorted((j["start"], j["end"]) for j in jobs)
    assert any(next_start < end for (_, end), (next_start, _) in zip(spans, spans[1:]))
    records = [json.loads(line) for line in
               (tmp_path / "multirun" / "fake" / "gpu_assignment.jsonl").read_text().splitlines()]
    assert sorted(r["job_num"] for r in records) == list(range(6))
    assert "gpus" in result.stdout   # the summary table's column


def test_joblib_without_gpus_runs_jobs_unassigned(tmp_path: Path) -> None:
    result = _fake_sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                         "hydra.callbacks.gpu_assignment.gpus=[]", "optimizer.lr=1e-3,2e-3",
                         "fail=false,true")
    assert result.returncode == 1
    jobs = _summaries(tmp_path / "multirun" / "fake")
    assert sorted(j["status"] for j in jobs) == ["completed", "completed", "failed", "failed"]
    assert all(j["cuda_visible_devices"] is None for j in jobs)
    assert "2 of 4 jobs did not complete" in result.stdout


def test_optuna_minimises_the_returned_loss_and_survives_failed_trials(tmp_path: Path) -> None:
    # The fake loss falls with lr; fail=true trials return NaN (failed trials) and are listed.
    result = _fake_sweep(tmp_path, "hydra/sweeper=optuna_lr", "hydra.sweeper.n_trials=6",
                         "hydra.sweeper.sampler.n_startup_trials=3", "fail=choice(false,true)")
    sweep_dir = tmp_path / "multirun" / "fake"
    jobs = _summaries(sweep_dir)
    assert len(jobs) == 6
    assert result.returncode == (1 if any(j["status"] == "failed" for j in jobs) else 0)
    best = yaml_load(sweep_dir / "optimization_results.yaml")
    completed = [j for j in jobs if j["status"] == "completed"]
    assert best["best_value"] == pytest.approx(min(j["final"]["val"]["loss"] for j in completed))
    assert best["best_params"]["fail"] is False


def yaml_load(path: Path) -> dict:
    import yaml
    return yaml.safe_load(path.read_text())


@pytest.mark.slow
def test_ray_runs_each_job_as_a_task(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="hydra/launcher=ray needs ray (pip install -e '.[ray]')")
    result = _fake_sweep(tmp_path, "hydra/launcher=ray", "hydra.launcher.num_gpus=0",
                         "hydra.launcher.num_cpus=1", "+hydra.launcher.init.num_cpus=2",
                         "+hydra.launcher.init.include_dashboard=false",
                         "optimizer.lr=1e-3,2e-3", "fail=false,true", timeout=400)
    assert result.returncode == 1, result.stderr[-3000:]
    jobs = _summaries(tmp_path / "multirun" / "fake")
    assert sorted(j["status"] for j in jobs) == ["completed", "completed", "failed", "failed"]
    assert "2 of 4 jobs did not complete" in result.stdout


@pytest.mark.slow
def test_ray_refuses_gpus_the_cluster_does_not_have(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="hydra/launcher=ray needs ray (pip install -e '.[ray]')")
    result = _fake_sweep(tmp_path, "hydra/launcher=ray", "hydra.launcher.num_gpus=1",
                         "+hydra.launcher.init.num_cpus=1", "+hydra.launcher.init.num_gpus=0",
                         "+hydra.launcher.init.include_dashboard=false", "optimizer.lr=1e-3",
                         timeout=400)
    assert result.returncode != 0
    assert "hydra.launcher.num_gpus=0 for CPU jobs" in result.stderr + result.stdout
