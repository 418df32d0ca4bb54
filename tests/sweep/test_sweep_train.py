"""Sweeps of the real train app on a tiny model: a failing job, and a sweep killed and re-run."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sweep_helpers import TINY_TRAIN, env, run


def _train_sweep(sweep_dir: Path, *overrides: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return run(["-m", "mambalab.train", "-m", *TINY_TRAIN, f"hydra.sweep.dir={sweep_dir}",
                *overrides], cwd=sweep_dir.parents[1], timeout=timeout)


def _job_dir(sweep_dir: Path, key: str, value: str) -> Path:
    [found] = [d for d in sweep_dir.iterdir() if f"{key}={value}" in d.name.split(",")]
    return found


def _snapshot(job_dir: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file the training wrote (not Hydra's .hydra/ nor the job log,
    which Hydra rewrites and appends to for every job it starts, skipped ones included)."""
    return {str(p.relative_to(job_dir)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(job_dir.rglob("*"))
            if p.is_file() and ".hydra" not in p.parts and p.suffix != ".log"}


def test_a_failing_job_does_not_stop_the_sweep(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "multirun" / "lr"
    # lr=-1 makes AdamW raise at construction: the job fails, the other three train.
    result = _train_sweep(sweep_dir, "optimizer.lr=1e-3,2e-3,3e-3,-1")
    assert result.returncode == 1, result.stderr[-3000:]
    for lr in ("0.001", "0.002", "0.003"):
        summary = json.loads((_job_dir(sweep_dir, "optimizer.lr", lr) / "summary.json").read_text())
        assert (summary["status"], summary["step"]) == ("completed", 4)
    failed = json.loads((_job_dir(sweep_dir, "optimizer.lr", "-1") / "summary.json").read_text())
    assert failed["status"] == "failed" and "Invalid learning rate" in failed["error"]
    assert "1 of 4 jobs did not complete" in result.stdout
    assert "Invalid learning rate" in result.stdout.split("did not complete")[1]

    rows = {r["optimizer.lr"]: r for r in csv.DictReader((sweep_dir / "summary.csv").open())}
    assert {lr: r["status"] for lr, r in rows.items()} == {
        "0.001": "completed", "0.002": "completed", "0.003": "completed", "-1": "failed"}
    assert all(float(rows[lr]["final_val_loss"]) > 0 for lr in ("0.001", "0.002", "0.003"))
    assert (sweep_dir / "summary.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_a_killed_sweep_resumes_where_it_stopped(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "multirun" / "steps"
    # Three jobs that differ in length; the third checkpoints every 2 of its 24 steps, which gives
    # the kill below a window of many steps after its first checkpoint.
    overrides = ["trainer.max_steps=4,6,24", "trainer.checkpoint_every=2", "trainer.eval_every=4"]
    cmd = [sys.executable, "-m", "mambalab.train", "-m", *TINY_TRAIN,
           f"hydra.sweep.dir={sweep_dir}", *overrides]
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    latest = None
    deadline = time.monotonic() + 500
    while time.monotonic() < deadline and proc.poll() is None:
        third = [d for d in sweep_dir.glob("*trainer.max_steps=24*")]
        if third and (third[0] / "checkpoints" / "latest").exists():
            latest = third[0]
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert latest is not None, (tmp_path / "first.log").read_text()[-3000:]

    first, second = (_job_dir(sweep_dir, "trainer.max_steps", n) for n in ("4", "6"))
    for job in (first, second):
        assert json.loads((job / "summary.json").read_text())["status"] == "completed"
    killed_at = json.loads((latest / "summary.json").read_text())
    assert killed_at["status"] == "running" and killed_at["step"] < 24
    # On demand, the summary tells the killed job from a running one (its process is gone).
    on_demand = run(["-m", "mambalab.sweep", str(sweep_dir), "--no-files"], cwd=tmp_path)
    assert on_demand.returncode == 1 and "interrupted" in on_demand.stdout
    before = {job: _snapshot(job) for job in (first, second)}
    # Resume takes the newest complete checkpoint: `latest` itself, or a newer one if the kill fell
    # between that one's COMPLETE and the update of `latest`.
    complete = [int(d.name.rsplit("_", 1)[1]) for d in (latest / "checkpoints").glob("step_*")
                if (d / "COMPLETE").exists()]
    checkpoint_step = max(complete)
    assert checkpoint_step >= int((latest / "checkpoints" / "latest").read_text().strip().rsplit("_", 1)[1]) >= 2

    result = run(cmd[1:], cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Completed jobs are skipped: not a byte nor a timestamp of what they wrote changed.
    assert "already completed" in result.stdout
    assert {job: _snapshot(job) for job in (first, second)} == before
    # The killed job continued from its checkpoint instead of starting over.
    summary = json.loads((latest / "summary.json").read_text())
    assert (summary["status"], summary["step"]) == ("completed", 24)
    log_text = (latest / "train.log").read_text()
    assert "resumed from" in log_text and f"(step {checkpoint_step}," in log_text
    records = [json.loads(line) for line in (latest / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if r.get("split") == "train"]
    assert train_steps.count(1) == 1 and max(train_steps) == 24
    assert "3/3 completed" in result.stdout


@pytest.mark.slow
def test_optuna_search_minimises_final_val_loss_and_resumes(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "multirun" / "optuna"
    args = ["hydra/sweeper=optuna_lr", "hydra.sweeper.n_trials=3",
            "hydra.sweeper.sampler.n_startup_trials=2"]
    first = _train_sweep(sweep_dir, *args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    losses = {}
    for job in (d for d in sweep_dir.iterdir() if (d / "summary.json").exists()):
        summary = json.loads((job / "summary.json").read_text())
        losses[job.name] = summary["final"]["eval"]["loss"]
    assert len(losses) == 3 and best["best_value"] == pytest.approx(min(losses.values()))

    # The same command again: the seeded sampler proposes the same three trials, whose runs are
    # complete, so nothing trains and the search ends with the same best trial.
    second = _train_sweep(sweep_dir, *args)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert second.stdout.count("already completed") == 3
    assert yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text()) == best
