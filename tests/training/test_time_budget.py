"""trainer.max_time_s: a training-time budget that ends the run like its step limit, and that a
resumed run continues (the time already trained is in the checkpoint)."""
from __future__ import annotations

import json

import pytest

from mambalab.config import ConfigError, TrainerConfig

from train_helpers import read_metrics, run_in_process


def test_budget_ends_the_run_with_eval_and_checkpoint(tmp_path):
    # 400 steps would take seconds; a 0.3 s budget stops far earlier, at a step boundary.
    summary = run_in_process(tmp_path, "trainer.max_steps=400", "trainer.max_time_s=0.3",
                             "trainer.checkpoint_every=null", "trainer.log_every=50")
    step = summary["step"]
    assert summary["status"] == "completed" and summary["stopped_by"] == "max_time_s"
    assert 1 <= step < 400 and summary["total_steps"] == 400
    assert summary["train_time_s"] >= 0.3 and summary["max_time_s"] == 0.3
    # Ended like a normal end: the last step logged, evaluated and checkpointed.
    assert read_metrics(tmp_path)[-1]["step"] == step
    evals = read_metrics(tmp_path, "validation")
    assert [e["step"] for e in evals] == [step]
    assert evals[0]["tokens"] == summary["tokens"] and evals[0]["train_time_s"] >= 0.3
    assert 0 <= evals[0]["accuracy"] <= 1  # the quickstart task's metric
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == f"step_{step:08d}"
    assert summary["final"]["eval"]["loss"] == evals[0]["loss"]


def test_resumed_run_gets_what_is_left_of_the_budget(tmp_path):
    with pytest.raises(SystemExit):
        run_in_process(tmp_path, "trainer.interrupt_at_step=3")
    state = json.loads((tmp_path / "checkpoints" / "step_00000003" / "trainer_state.json").read_text())
    spent = state["train_time_s"]
    assert spent > 0
    # A budget just above what the first attempt spent: the resumed attempt may take only one
    # step (a fresh budget of this size would allow about three more).
    summary = run_in_process(tmp_path, f"trainer.max_time_s={spent * 1.0001}")
    assert summary["status"] == "completed" and summary["stopped_by"] == "max_time_s"
    assert summary["step"] == 4 and summary["train_time_s"] > spent


def test_a_run_ended_by_its_budget_continues_with_more_time(tmp_path):
    args = ["trainer.max_steps=200", "trainer.log_every=20", "trainer.checkpoint_every=null"]
    first = run_in_process(tmp_path, *args, "trainer.max_time_s=0.2")
    assert first["stopped_by"] == "max_time_s" and first["step"] < 200
    # The same budget: nothing left to do, the run is skipped as completed.
    assert run_in_process(tmp_path, *args, "trainer.max_time_s=0.2")["step"] == first["step"]
    more = run_in_process(tmp_path, *args, "trainer.max_time_s=3600")
    assert more["status"] == "completed" and more["stopped_by"] == "total_steps"
    assert more["step"] == 200 and more["train_time_s"] > first["train_time_s"]
    steps = [r["step"] for r in read_metrics(tmp_path)]
    assert steps == sorted(set(steps)) and steps[-1] == 200 and first["step"] in steps


def test_step_limit_still_ends_a_run_with_a_budget(tmp_path):
    summary = run_in_process(tmp_path, "trainer.max_time_s=3600")
    assert summary["step"] == 6 and summary["stopped_by"] == "total_steps"


@pytest.mark.parametrize("bad", [0, -5.0])
def test_budget_must_be_positive(bad):
    with pytest.raises(ConfigError, match=r"trainer.max_time_s=.*must be > 0"):
        TrainerConfig(max_steps=10, max_time_s=bad)


def test_the_budget_that_ended_a_run_counts_as_spent():
    """With several processes the summary holds rank 0's clock, which can be under the budget
    another rank's clock spent: the same budget again must not resume the run (a sweep run twice
    would add steps to it each time); a larger one must; summaries without max_time_s compare
    the time."""
    from mambalab.training.job import _more_time

    ended = {"stopped_by": "max_time_s", "step": 18, "total_steps": 400, "train_time_s": 0.47,
             "max_time_s": 0.5}
    assert not _more_time(ended, TrainerConfig(max_steps=400, max_time_s=0.5))
    assert _more_time(ended, TrainerConfig(max_steps=400, max_time_s=0.6))
    assert _more_time(ended, TrainerConfig(max_steps=400))  # no budget: train on to the step limit
    legacy = {k: v for k, v in ended.items() if k != "max_time_s"}
    assert _more_time(legacy, TrainerConfig(max_steps=400, max_time_s=0.5))
    assert not _more_time(dict(ended, stopped_by="total_steps"), TrainerConfig(max_steps=400))
