"""Shared by the sweep tests: write run folders as the train app does, run apps as subprocesses."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
FAKE_APP = Path(__file__).resolve().parent / "fake_app.py"

# A train job small enough for 2 busy CPU cores: 1 layer of width 16 on 16-token induction-heads
# sequences, evaluated and checkpointed every 2 steps.
TINY_TRAIN = ["experiment=quickstart", "model.d_model=16", "model.n_layer=1", "data.seq_len=16",
              "data.batch_size=4", "data.eval_lengths=[16]", "data.eval_examples=16",
              "scheduler.warmup_steps=1", "trainer.max_steps=4", "trainer.eval_every=2",
              "trainer.checkpoint_every=2", "trainer.log_every=1", "trainer.progress_bar=false"]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    e["MAMBALAB_CONF_DIR"] = str(REPO / "conf")
    e["COLUMNS"] = "200"
    return e


def run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env(), capture_output=True,
                          text=True, timeout=timeout)


def write_run(job_dir: Path, overrides: list[str], status: str | None, val_losses: list[float],
              tokens_per_step: int = 100, error: str | None = None, lock_pid: int | None = None,
              host: str | None = None) -> None:
    """A run folder in the train app's format: .hydra/overrides.yaml, metrics.jsonl, summary.json."""
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    with (job_dir / "metrics.jsonl").open("w") as f:
        for i, loss in enumerate(val_losses, start=1):
            step = 10 * i
            f.write(json.dumps({"step": step, "split": "train", "loss": loss + 0.05,
                                "tokens": step * tokens_per_step, "tok_per_s": 500.0}) + "\n")
            # Like the train app: validation records carry no `tokens` of their own.
            f.write(json.dumps({"step": step, "split": "validation", "loss": loss,
                                "ppl": math.exp(loss)}) + "\n")
        f.write('{"step": 99, "split": "tra')   # a line cut off by a kill: ignored
    if status is not None:
        steps = 10 * len(val_losses)
        last = {"loss": val_losses[-1], "ppl": math.exp(val_losses[-1])} if val_losses else None
        best = min(val_losses) if val_losses else None
        summary = {"status": status, "step": steps, "tokens": steps * tokens_per_step,
                   "wall_time_s": 75.0, "tok_per_s": 480.0, "tokens_per_step": tokens_per_step,
                   "final": {"train": {"loss": 9.0}, "eval": last},
                   "best": {"step": 10, "loss": best,
                            "metrics": {"loss": best, "ppl": math.exp(best)} if best else None},
                   "error": error}
        (job_dir / "summary.json").write_text(json.dumps(summary))
    if lock_pid is not None:
        (job_dir / ".lock").write_text(f"pid {lock_pid} on host {host} since 2026-01-01 00:00:00\n")
