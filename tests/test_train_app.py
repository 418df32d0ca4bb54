"""The app from the command line: the quickstart end to end, sweeps that survive a failing job,
and a bad key failing before any work."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["experiment=quickstart", "model.d_model=16", "model.n_layer=1", "model.d_state=4",
        "data.seq_len=16", "data.batch_size=4", "data.eval_examples=8", "data.eval_lengths=[16]",
        "data.prefetch=1", "trainer.max_steps=3", "trainer.progress_bar=false", "trainer.cpu_threads=1"]


def train(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "mambalab.train", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_quickstart_learns_induction_heads(tmp_path):
    done = train("experiment=quickstart", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_loss = [r["loss"] for r in rows if r["split"] == "train"]
    evals = [r for r in rows if r["split"] == "validation"]
    assert train_loss[-1] < train_loss[0] - 1.0, train_loss
    assert evals[-1]["accuracy"] >= 0.9, evals
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["final"]["eval"]["accuracy"] >= 0.9


def test_sweep_records_a_failed_job_and_goes_on(tmp_path):
    # Job max_bad_steps=1 fails at its injected NaN; job max_bad_steps=5 skips it and completes.
    done = train("-m", *TINY, "trainer.debug_inject_nan_at_steps=[2]", "trainer.max_bad_steps=1,5",
                 f"hydra.sweep.dir={tmp_path}")
    jobs = {p.name: json.loads((p / "summary.json").read_text())
            for p in tmp_path.iterdir() if (p / "summary.json").exists()}
    assert len(jobs) == 2, list(tmp_path.iterdir())
    failed = next(v for k, v in jobs.items() if "trainer.max_bad_steps=1," in k)
    completed = next(v for k, v in jobs.items() if "trainer.max_bad_steps=5," in k)
    assert failed["status"] == "failed" and "NonFiniteLossError" in failed["error"]
    assert completed["status"] == "completed" and completed["skipped_steps"] == 1
    assert done.returncode != 0  # the sweep's summary callback reports the failed job

    again = train("-m", *TINY, "trainer.debug_inject_nan_at_steps=[2]", "trainer.max_bad_steps=5",
                  f"hydra.sweep.dir={tmp_path}")
    assert "already completed (summary.json); skipping" in again.stdout
    assert json.loads((next(tmp_path.glob("*max_bad_steps=5,*")) / "summary.json").read_text()) == completed


def test_bad_key_fails_before_any_work(tmp_path):
    done = train(*TINY, "+model.d_modle=32", f"hydra.run.dir={tmp_path}")
    assert done.returncode != 0
    assert "model.d_modle: unknown key for mambalab.models.build_mamba_lm" in done.stderr + done.stdout
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "summary.json").exists()
