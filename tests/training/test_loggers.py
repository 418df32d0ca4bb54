"""Loggers: W&B offline writes its run under the run directory with an id derived from it (so a
resume continues it), TensorBoard writes events, metrics.jsonl is trimmed to the resumed step."""
from __future__ import annotations

import json

from train_helpers import read_summary, run_in_process
from mambalab.training.loggers import JsonlLogger, wandb_run_id


def test_wandb_offline_and_tensorboard_write_locally(tmp_path):
    run_in_process(tmp_path, "logger=[jsonl,tensorboard,wandb]", "logger.wandb.mode=offline",
                   "trainer.max_steps=2")
    assert read_summary(tmp_path)["status"] == "completed"
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith(wandb_run_id(tmp_path))
    assert any(runs[0].glob("*.wandb"))
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_wandb_run_id_is_stable_per_run_dir(tmp_path):
    assert wandb_run_id(tmp_path / "a") == wandb_run_id(tmp_path / "a")
    assert wandb_run_id(tmp_path / "a") != wandb_run_id(tmp_path / "b")


def test_jsonl_drops_lines_past_the_resumed_step(tmp_path):
    lines = [{"step": s, "split": "train", "loss": 1.0} for s in (1, 2, 3, 4)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"step": 5, "spl')
    logger = JsonlLogger()
    logger.start(tmp_path, {}, start_step=2)
    logger.log({"split": "train", "loss": float("nan")}, step=3)
    logger.finish("completed")
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[-1]["loss"] is None
