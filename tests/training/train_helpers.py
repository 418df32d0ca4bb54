"""Shared helpers of the training tests: the real configs, shrunk to run in seconds on a CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import mambalab.config  # noqa: F401  (registers the schemas and resolvers)

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"

# The quickstart experiment at a size that takes a fraction of a second per step.
TINY = [
    "experiment=quickstart",
    "model.d_model=16", "model.n_layer=1", "model.d_state=4",
    "data.seq_len=16", "data.batch_size=4", "data.eval_examples=8", "data.eval_lengths=[16]",
    "data.prefetch=1",
    "trainer.max_steps=6", "trainer.log_every=1", "trainer.eval_every=null",
    "trainer.checkpoint_every=2", "trainer.progress_bar=false", "trainer.cpu_threads=1",
    "scheduler.warmup_steps=2",
]


def compose_cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


# A tiny language-model run (no experiment): add data=text or data=synthetic and their files.
TINY_LM = [
    "~experiment", "model=mamba_tiny", "model.d_model=16", "model.n_layer=1", "model.d_state=4",
    "data.seq_len=16", "data.batch_size=4", "data.prefetch=1", "logger=[jsonl]",
    "trainer.max_steps=6", "trainer.log_every=1", "trainer.eval_every=null", "trainer.eval_max_batches=2",
    "trainer.checkpoint_every=2", "trainer.progress_bar=false", "trainer.cpu_threads=1",
    "trainer.mixed_precision=no", "scheduler.warmup_steps=2",
]


def run_in_process(run_dir: Path, *overrides: str, base: list[str] = TINY) -> dict | None:
    """Run the app's job function on `run_dir` in this process (no Hydra run-dir handling)."""
    from mambalab.train import train
    from mambalab.training.job import run_job

    return run_job(compose_cfg(*base, *overrides), train, run_dir=str(run_dir))


def cli(run_dir: Path, *overrides: str, env: dict | None = None, background: bool = False,
        timeout: float = 240, base: list[str] = TINY) -> subprocess.CompletedProcess | subprocess.Popen:
    """`python -m mambalab.train` with the tiny overrides, writing to `run_dir`."""
    cmd = [sys.executable, "-m", "mambalab.train", *base, *overrides, f"hydra.run.dir={run_dir}"]
    full_env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                **(env or {})}
    if background:
        return subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


def read_metrics(run_dir: Path, split: str = "train") -> list[dict]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("split") == split]


def read_summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


class OomAbove(torch.nn.Module):
    """A model that runs out of 'memory' for micro-batches of more than `limit` sequences."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.w = limit, torch.nn.Parameter(torch.ones(1))

    def forward(self, input_ids, targets=None, doc_starts=None):
        if input_ids.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return type("Out", (), {"loss": (self.w * input_ids.float()).mean()})()


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MAMBALAB_CACHE", str(tmp_path / "cache"))
    return tmp_path


def gloo_rank(rank: int, port: int) -> None:
    """In a worker of `spawn_two_ranks`: the environment of rank `rank` of 2 (gloo, this host)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE="2")


def spawn_two_ranks(worker, *args) -> dict:
    """Run `worker(rank, port, *args, out)` in two spawned processes (a module-level function that
    calls `gloo_rank`, puts (rank, result) on `out` and ends with `end_process_group`, as the
    app's workers do); returns {rank: result}."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, port, *args, out)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results
