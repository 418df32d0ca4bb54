"""The app as a process: SIGTERM saves, SIGKILL mid-save resumes from the previous checkpoint,
the lock refuses a second process, a non-finite loss is skipped and too many stop the run."""
from __future__ import annotations

import json
import signal
import time

from train_helpers import cli, read_metrics, read_summary
from mambalab.training.run_dir import RunDir


def _wait_for(predicate, proc, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run exited early:\n{proc.stdout.read()}"
        assert time.time() < deadline, "timed out waiting for the run"
        time.sleep(0.05)


def test_sigterm_checkpoints_then_exits(tmp_path):
    proc = cli(tmp_path, "trainer.max_steps=100000", "trainer.checkpoint_every=null",
               background=True)
    _wait_for(lambda: (tmp_path / "metrics.jsonl").exists()
              and len(read_metrics(tmp_path)) >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "received SIGTERM" in out
    summary = read_summary(tmp_path)
    assert summary["status"] == "interrupted"
    latest = (tmp_path / "checkpoints" / "latest").read_text().strip()
    assert latest == f"step_{summary['step']:08d}" and summary["step"] >= 2
    assert (tmp_path / "checkpoints" / latest / "COMPLETE").exists()


def test_sigkill_during_save_resumes_from_previous_complete(tmp_path):
    # The step-4 save pauses after writing its files, before COMPLETE: kill it there.
    proc = cli(tmp_path, env={"MAMBALAB_TEST_PAUSE_SAVE": "4:120"}, background=True)
    partial = tmp_path / "checkpoints" / "step_00000004"
    _wait_for(lambda: (partial / "trainer_state.json").exists(), proc)
    proc.kill()
    proc.wait()
    assert not (partial / "COMPLETE").exists()
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_00000002"

    done = cli(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    log = done.stdout + done.stderr
    assert "step_00000004 is not usable: partial" in log
    assert "resumed from" in log and "step_00000002" in log
    assert read_summary(tmp_path)["status"] == "completed"
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5, 6]


def test_lock_refuses_a_second_process(tmp_path):
    holder = RunDir(tmp_path)
    holder.acquire_lock()
    try:
        second = cli(tmp_path)
    finally:
        holder.release_lock()
    assert second.returncode != 0
    err = second.stdout + second.stderr
    assert "is in use by pid" in err and "RunLockedError" in err
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "summary.json").exists()


def test_injected_nan_is_skipped(tmp_path):
    done = cli(tmp_path, "trainer.debug_inject_nan_at_steps=[3]")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = read_summary(tmp_path)
    assert summary["status"] == "completed" and summary["skipped_steps"] == 1
    assert "step 3: non-finite loss" in done.stdout + done.stderr


def test_max_bad_steps_in_a_row_stop_the_run_with_a_checkpoint(tmp_path):
    done = cli(tmp_path, "trainer.debug_inject_nan_at_steps=[3,4]", "trainer.max_bad_steps=2",
               "trainer.checkpoint_every=null")
    assert done.returncode != 0
    err = done.stdout + done.stderr
    assert "NonFiniteLossError" in err and "2 steps in a row" in err
    summary = read_summary(tmp_path)
    assert summary["status"] == "failed" and "NonFiniteLossError" in summary["error"]
    # The last good state is checkpointed: steps 3 and 4 applied no update.
    state = json.loads((tmp_path / "checkpoints" / "step_00000004" / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["guard"] == {"in_a_row": 2, "total": 2}
