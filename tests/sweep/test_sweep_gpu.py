"""On a machine with 2+ GPUs: a joblib sweep puts concurrent jobs on different physical GPUs."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from sweep_helpers import FAKE_APP, TINY_TRAIN, run

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _two_gpus() -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs: run on the 2-GPU machine")


def test_concurrent_jobs_use_different_physical_gpus(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "multirun" / "fake"
    result = run([str(FAKE_APP), "-m", f"hydra.sweep.dir={sweep_dir}", "hydra/launcher=joblib",
                  "hydra.launcher.n_jobs=2", "touch_cuda=true", "sleep_s=2",
                  "optimizer.lr=1e-3,2e-3,3e-3,4e-3"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")]
    assert len(jobs) == 4
    # Two workers, each bound to one GPU for all its jobs; the two GPUs differ.
    uuids = {job["pid"]: job["gpu_uuid"] for job in jobs}
    assert len(set(uuids.values())) == 2, uuids
    assert all(job["gpu_uuid"] == uuids[job["pid"]] for job in jobs)


def test_train_sweep_runs_one_job_per_gpu(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "multirun" / "train"
    result = run(["-m", "mambalab.train", "-m", *TINY_TRAIN, "trainer.mixed_precision=bf16",
                  f"hydra.sweep.dir={sweep_dir}", "hydra/launcher=joblib",
                  "hydra.launcher.n_jobs=2", "optimizer.lr=1e-3,2e-3"], cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    devices = []
    for job in sorted(d for d in sweep_dir.iterdir() if d.is_dir() and not d.name.startswith(".")):
        assert json.loads((job / "summary.json").read_text())["status"] == "completed"
        devices += re.findall(r"runs on CUDA_VISIBLE_DEVICES=(\S+)", (job / "train.log").read_text())
    assert len(devices) == 2 and len(set(devices)) == 2, devices
