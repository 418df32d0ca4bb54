"""Stop at step k and resume == an uninterrupted run, bitwise on the CPU; corrupt checkpoints."""
from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import load_file

from train_helpers import read_metrics, read_summary, run_in_process
from mambalab.training.checkpointer import CheckpointError


def _losses(run_dir):
    return [(r["step"], r["loss"], r["grad_norm"], r["lr"]) for r in read_metrics(run_dir)]


def test_interrupt_then_resume_matches_uninterrupted_bitwise(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    run_in_process(whole)
    with pytest.raises(SystemExit) as stop:
        run_in_process(split, "trainer.interrupt_at_step=3")
    assert stop.value.code == 75
    assert read_summary(split)["status"] == "interrupted"
    assert (split / "checkpoints" / "latest").read_text().strip() == "step_00000003"
    run_in_process(split)  # the same command without the interruption resumes it

    assert read_summary(split)["status"] == "completed"
    assert _losses(split) == _losses(whole)  # float equality: bitwise
    assert [s for s, *_ in _losses(split)] == [1, 2, 3, 4, 5, 6]
    a = load_file(str(whole / "checkpoints" / "step_00000006" / "model.safetensors"))
    b = load_file(str(split / "checkpoints" / "step_00000006" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_completed_run_is_skipped(tmp_path, capsys):
    run_in_process(tmp_path)
    before = (tmp_path / "metrics.jsonl").read_text()
    run_in_process(tmp_path)
    assert "already completed" in capsys.readouterr().out
    assert (tmp_path / "metrics.jsonl").read_text() == before


def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with pytest.raises(SystemExit):
        run_in_process(tmp_path, "trainer.interrupt_at_step=5")  # checkpoints at 2, 4 and 5
    weights = tmp_path / "checkpoints" / "step_00000005" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a truncated file
    run_in_process(tmp_path)
    assert "step_00000005 is not usable" in caplog.text and "bytes" in caplog.text
    assert "resumed from" in caplog.text and "step_00000004" in caplog.text
    assert read_summary(tmp_path)["status"] == "completed"
    steps = [r["step"] for r in read_metrics(tmp_path)]
    assert steps == [1, 2, 3, 4, 5, 6]  # the dead attempt's step-5 line was replaced


def test_resume_true_without_checkpoint_fails(tmp_path):
    with pytest.raises(CheckpointError, match="trainer.resume=true"):
        run_in_process(tmp_path, "trainer.resume=true")
    assert read_summary(tmp_path)["status"] == "failed"


def test_resume_false_starts_fresh(tmp_path):
    with pytest.raises(SystemExit):
        run_in_process(tmp_path, "trainer.interrupt_at_step=2")
    run_in_process(tmp_path, "trainer.resume=false", "trainer.max_steps=3")
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    assert read_summary(tmp_path)["step"] == 3


def test_unusable_complete_checkpoints_are_never_trained_over(tmp_path):
    with pytest.raises(SystemExit):
        run_in_process(tmp_path, "trainer.interrupt_at_step=2")
    state = tmp_path / "checkpoints" / "step_00000002" / "trainer_state.json"
    state.write_text(state.read_text().replace('"world_size": 1', '"world_size": 2 '))
    with pytest.raises(CheckpointError, match="none can be resumed .* trainer.resume=false"):
        run_in_process(tmp_path)
    assert (tmp_path / "checkpoints" / "step_00000002" / "COMPLETE").exists()
