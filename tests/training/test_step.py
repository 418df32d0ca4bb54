"""The optimizer step without a host wait: a fused AdamW skips a non-finite step by itself, from a
device flag, and the trainer reads each step back one step late. Both must give exactly what the
step that waits gives: the same updates, losses, skips, guard and checkpoints."""
from __future__ import annotations

import json

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from mambalab.training.distributed import end_process_group
from mambalab.training.nan_guard import NonFiniteLossError
from mambalab.training.step import Stepper, skips_on_device

from train_helpers import (TINY_LM, OomAbove, gloo_rank, read_metrics, read_summary, run_in_process,
                           spawn_two_ranks)


class _Quadratic(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 6))

    def forward(self, input_ids, targets=None, doc_starts=None):
        x = input_ids.float()  # (B, L)
        return type("Out", (), {"loss": ((x[..., None] * self.w - 0.3) ** 2).mean()})()


def _stepper(deferred: bool) -> tuple[Stepper, torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = _Quadratic()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, fused=True)
    stepper = Stepper(Accelerator(cpu=True), model, opt, grad_clip=0.5, oom_retry=False, defer=True)
    assert stepper.deferred  # a fused AdamW without a loss scaler can skip on the device
    stepper.deferred = deferred
    return stepper, model, opt


def test_device_skip_matches_the_waiting_step_exactly():
    batch = {"input_ids": torch.arange(8).reshape(2, 4), "targets": torch.zeros(2, 4).long()}
    (fast, fast_model, fast_opt), (slow, slow_model, slow_opt) = _stepper(True), _stepper(False)
    bad_steps = {2, 3}
    for step in range(1, 6):
        fast.accumulate([batch], inject_nan=step in bad_steps)
        pending = fast.update(step)
        expected = slow.run([batch], inject_nan=step in bad_steps, step=step)
        got = pending.result()
        assert pending.step == step and got.finite == (step not in bad_steps)
        if got.finite:
            assert (got.loss, got.grad_norm) == (expected.loss, expected.grad_norm)
        else:
            assert got.loss != got.loss and not expected.finite  # NaN
        assert torch.equal(fast_model.w, slow_model.w), step  # bitwise: the same updates
    # the skipped steps did not count in AdamW's step (bias correction) either
    assert fast_opt.state[fast_model.w]["step"].item() == 3 == slow_opt.state[slow_model.w]["step"].item()
    assert not hasattr(fast_opt, "found_inf")  # the flag does not outlive the step


def test_only_fused_adam_without_a_scaler_skips_on_the_device():
    w = [torch.nn.Parameter(torch.zeros(2))]
    assert skips_on_device(torch.optim.AdamW(w, fused=True), scaler=None)
    assert skips_on_device(torch.optim.Adam(w, fused=True), scaler=None)
    assert not skips_on_device(torch.optim.AdamW(w), scaler=None)  # foreach: no found_inf
    assert not skips_on_device(torch.optim.SGD(w, lr=0.1), scaler=None)
    assert not skips_on_device(torch.optim.AdamW(w, fused=True), scaler=object())  # fp16


def test_update_without_gradients_is_an_error():
    stepper, _, _ = _stepper(True)
    with pytest.raises(RuntimeError, match="before accumulate"):
        stepper.update(1)


# Read-back one step late: logged only at the end and no periodic checkpoints, so that every step
# but the last is settled during the next one.
LATE = ["data=synthetic", "data.vocab_size=64", "tokenizer=byte", "data.eval_examples=8", "optimizer.fused=true",
        "trainer.overlap_steps=true", "trainer.log_every=100", "trainer.checkpoint_every=null"]


def _train_rows(run_dir):
    return [(r["step"], r["loss"], r["grad_norm"], r["skipped_steps"]) for r in read_metrics(run_dir)]


def test_trainer_reads_steps_back_late_with_the_same_result(tmp_path):
    late, waiting = tmp_path / "late", tmp_path / "waiting"
    run_in_process(late, *LATE, "trainer.debug_inject_nan_at_steps=[3]", base=TINY_LM)
    run_in_process(waiting, *LATE, "trainer.debug_inject_nan_at_steps=[3]",
                   "trainer.overlap_steps=false", base=TINY_LM)
    assert read_summary(late)["status"] == "completed" == read_summary(waiting)["status"]
    rows = _train_rows(late)
    assert rows == _train_rows(waiting) and rows[-1][0] == 6 and rows[-1][3] == 1
    a = load_file(str(late / "checkpoints" / "step_00000006" / "model.safetensors"))
    b = load_file(str(waiting / "checkpoints" / "step_00000006" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_steps_found_a_step_late_still_checkpoint_the_last_good_state(tmp_path):
    with pytest.raises(NonFiniteLossError, match="2 steps in a row"):
        run_in_process(tmp_path, *LATE, "trainer.debug_inject_nan_at_steps=[3,4]",
                       "trainer.max_bad_steps=2", base=TINY_LM)
    # step 4's verdict was read during step 5, before step 5's update: the checkpoint is step 4's
    state = json.loads((tmp_path / "checkpoints" / "step_00000004" / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["guard"] == {"in_a_row": 2, "total": 2}
    assert not (tmp_path / "checkpoints" / "step_00000005").exists()


def _batch(size: int) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.ones(size, 3).long(), "targets": torch.zeros(size, 3).long()}


def test_probe_finds_the_split_that_fits_and_leaves_no_gradients():
    model = OomAbove(limit=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    stepper = Stepper(Accelerator(cpu=True), model, opt, grad_clip=None, oom_retry=True)
    assert stepper.probe(model, _batch(8)) == 4  # 8 -> 4 -> 2 sequences a micro-batch
    assert stepper.micro_splits == 1 and model.w.grad is None  # only agree_splits sets it
    assert stepper.agree_splits(4, 8) == 4 == stepper.micro_splits  # one process: its own
    stepper.micro_splits = 8  # a resumed split is where the probe starts
    assert stepper.probe(model, _batch(8)) == 8
    # not even one sequence fits: the probe says so (twice the batch), agree_splits raises
    stepper.micro_splits = 1
    assert stepper.probe(OomAbove(limit=0), _batch(2)) == 4
    with pytest.raises(torch.cuda.OutOfMemoryError, match="micro-batch of 1 sequence"):
        stepper.agree_splits(4, 2)


def test_several_processes_do_not_retry_inside_the_step():
    """Another rank would be waiting in the backward's all-reduce: the trainer probes at start."""
    class TwoRanks:
        num_processes, scaler, device = 2, None, torch.device("cpu")

    model = OomAbove(limit=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert not Stepper(TwoRanks(), model, opt, grad_clip=None, oom_retry=True).retry_in_step
    assert Stepper(Accelerator(cpu=True), model, opt, grad_clip=None, oom_retry=True).retry_in_step


def _agree_worker(rank: int, port: int, found: list[int], out) -> None:
    gloo_rank(rank, port)
    acc = Accelerator(cpu=True)
    stepper = Stepper(acc, OomAbove(limit=8), None, grad_clip=None, oom_retry=True)
    out.put((rank, stepper.agree_splits(found[rank], 8)))
    acc.wait_for_everyone()
    end_process_group()


def test_ranks_agree_on_the_split_that_fits_everywhere():
    results = spawn_two_ranks(_agree_worker, [2, 8])
    assert results == {0: 8, 1: 8}  # rank 1 needed 8 pieces: every rank splits in 8
