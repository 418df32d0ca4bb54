"""The summary of a sweep folder, on run folders written here in the train app's format."""
from __future__ import annotations

import csv
import io
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from mambalab.sweep import main as sweep_main
from mambalab.sweeps import load_sweep, summarize_sweep, swept_keys
from sweep_helpers import write_run

COMMON = ["experiment=quickstart", "trainer.max_steps=20"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "multirun" / "lr"
    write_run(root / "optimizer.lr=0.001", COMMON + ["optimizer.lr=0.001"], "completed", [3.0, 2.5])
    write_run(root / "optimizer.lr=0.003", COMMON + ["optimizer.lr=0.003"], "completed", [2.9, 2.2, 2.3])
    write_run(root / "optimizer.lr=0.01", COMMON + ["optimizer.lr=0.01"], "failed", [4.0],
              error="Traceback (most recent call last):\n  File x\nNonFiniteLossError: 5 steps in a row")
    # Killed mid-run: summary.json still says running, the lock names a process that is gone.
    write_run(root / "optimizer.lr=0.03", COMMON + ["optimizer.lr=0.03"], "running", [5.0],
              lock_pid=_dead_pid(), host=socket.gethostname())
    # Killed before the run wrote anything but Hydra's files.
    write_run(root / "optimizer.lr=0.1", COMMON + ["optimizer.lr=0.1"], None, [])
    return root


def test_load_sweep_reads_status_metrics_and_curves(sweep: Path) -> None:
    jobs = {job.override_values()["optimizer.lr"]: job for job in load_sweep(sweep)}
    assert sorted(jobs) == ["0.001", "0.003", "0.01", "0.03", "0.1"]
    assert {k: j.status for k, j in jobs.items()} == {
        "0.001": "completed", "0.003": "completed", "0.01": "failed", "0.03": "interrupted",
        "0.1": "no summary"}
    done = jobs["0.003"]
    assert (done.step, done.tokens, done.tok_per_s, done.wall_time_s) == (30, 3000, 480.0, 75.0)
    assert done.final_val_loss == pytest.approx(2.3) and done.best_val_loss == pytest.approx(2.2)
    assert done.best_val_ppl == pytest.approx(2.718281828 ** 2.2, rel=1e-6)
    # Validation records have no tokens of their own: they come from the train record of the step.
    assert done.val_curve == [(1000, 2.9), (2000, 2.2), (3000, 2.3)]
    # Without a summary, the metrics log still gives the step reached and the last loss.
    killed = jobs["0.03"]
    assert (killed.step, killed.final_val_loss) == (10, 5.0)
    assert jobs["0.1"].step is None and jobs["0.1"].val_curve == []
    assert swept_keys(list(jobs.values())) == ["optimizer.lr"]


def test_summarize_writes_table_csv_png_and_lists_unfinished(sweep: Path) -> None:
    out = io.StringIO()
    summary = summarize_sweep(sweep, console=Console(file=out, width=250))
    text = out.getvalue()
    assert "sweep lr: 2/5 completed" in text
    assert "3 of 5 jobs did not complete" in text
    assert "NonFiniteLossError: 5 steps in a row" in text
    assert "killed while running" in text and "killed before it wrote summary.json" in text
    assert [j.override_values()["optimizer.lr"] for j in summary.unfinished] == ["0.01", "0.03", "0.1"]

    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["optimizer.lr"] for r in rows] == ["0.001", "0.003", "0.01", "0.03", "0.1"]
    assert [r["status"] for r in rows] == ["completed", "completed", "failed", "interrupted",
                                           "no summary"]
    assert float(rows[1]["final_val_loss"]) == pytest.approx(2.3)
    assert rows[2]["error"] == "NonFiniteLossError: 5 steps in a row"
    png = (sweep / "summary.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_cli_exit_codes(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert sweep_main([str(sweep), "--no-files"]) == 1
    assert not (sweep / "summary.csv").exists()
    assert sweep_main([str(sweep), "--exit-zero"]) == 0
    assert (sweep / "summary.csv").exists()
    ok = tmp_path / "multirun" / "ok"
    write_run(ok / "a", ["optimizer.lr=1"], "completed", [1.0])
    assert sweep_main([str(ok)]) == 0
    assert sweep_main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_objective_is_the_final_validation_loss_or_none() -> None:
    from mambalab.sweeps.objective import final_val_loss

    done = {"status": "completed", "final": {"train": {"loss": 9.0}, "eval": {"loss": 2.5}}}
    assert final_val_loss(done) == 2.5
    assert final_val_loss({**done, "status": "failed"}) is None
    assert final_val_loss({"status": "completed", "final": {"eval": None}}) is None
    assert final_val_loss(None) is None
