"""CUDA graphs for the training step (mambalab/training/cuda_graph.py) where a CPU can check them:
what makes a step capturable, the optimizer's tensor lr that the schedulers fill, checkpoints that
resume the same with or without graphs, and the trainer training on eagerly, with a warning, where
graphs cannot run. The captures themselves: test_cuda_graph_gpu.py (GPU machine)."""
from __future__ import annotations

import logging

import pytest
import torch

from mambalab.training.cuda_graph import (batch_key, portable_scheduler_state, portable_state_dict,
                                          prepare_optimizer, unsupported_reason)
from train_helpers import TINY_LM, read_summary, run_in_process


def _adamw(fused: bool) -> torch.optim.AdamW:
    model = torch.nn.Linear(4, 3)
    return torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)


def test_unsupported_reasons_name_the_fix():
    cuda = torch.device("cuda")
    assert unsupported_reason(cuda, 1, True, False) is None
    assert "not CUDA" in unsupported_reason(torch.device("cpu"), 1, True, False)
    assert "one process" in unsupported_reason(cuda, 2, True, False)
    assert "fused" in unsupported_reason(cuda, 1, False, False)
    assert "reduce-overhead" in unsupported_reason(cuda, 1, True, True)


def test_scheduler_fills_the_tensor_lr_and_checkpoints_stay_portable():
    opt = _adamw(fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    prepare_optimizer(opt, torch.device("cpu"))
    lr = opt.param_groups[0]["lr"]
    assert torch.is_tensor(lr) and opt.param_groups[0]["capturable"] is True
    opt.step()
    sched.step()
    sched.step()
    assert opt.param_groups[0]["lr"] is lr  # filled in place: a captured graph reads the new value
    assert float(lr) == pytest.approx(1e-3 / 3)

    state = portable_state_dict(opt)
    assert state["param_groups"][0]["lr"] == pytest.approx(1e-3 / 3)
    assert isinstance(state["param_groups"][0]["lr"], float)
    assert state["param_groups"][0]["capturable"] is False
    assert torch.is_tensor(opt.param_groups[0]["lr"])  # the live optimizer keeps its tensor
    fresh = _adamw(fused=True)
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["lr"] == pytest.approx(1e-3 / 3)
    sched_state = portable_scheduler_state(sched)
    assert torch.is_tensor(sched.state_dict()["_last_lr"][0])  # what torch saves by itself
    assert sched_state["_last_lr"] == [pytest.approx(1e-3 / 3)]
    assert not any(torch.is_tensor(v) for v in sched_state["_last_lr"])


def test_batch_key_is_shapes_and_dtypes():
    a = [{"input_ids": torch.zeros(2, 8, dtype=torch.long), "doc_starts": None}]
    b = [{"input_ids": torch.ones(2, 8, dtype=torch.long), "doc_starts": None}]
    c = [{"input_ids": torch.zeros(1, 8, dtype=torch.long), "doc_starts": None}]
    assert batch_key(a) == batch_key(b) != batch_key(c)


def test_trainer_without_cuda_trains_eagerly_and_says_why(tmp_path, caplog):
    synth = ["data=synthetic", "tokenizer=byte", "optimizer.fused=true"]
    with caplog.at_level(logging.WARNING, logger="mambalab.training.trainer"):
        run_in_process(tmp_path, *synth, "trainer.cuda_graphs=true", base=TINY_LM)
    assert read_summary(tmp_path)["status"] == "completed"
    assert any("trainer.cuda_graphs=true but the step cannot be captured here: the device is cpu"
               in r.getMessage() for r in caplog.records)


class _EagerGraph:
    """Stands in for StepGraph on a CPU: `replay` runs the captured body for real, from gradients
    set to None as a capture starts them (the captured backward writes them, never adds)."""
    made: list[tuple] = []

    def __init__(self, body, micro, device) -> None:
        self.key, self.body, self.optimizer = batch_key(micro), body, None
        self.inputs = [dict(mb) for mb in micro]
        _EagerGraph.made.append(self.key)

    def matches(self, micro) -> bool:
        return batch_key(micro) == self.key

    def replay(self, micro) -> torch.Tensor:
        for p in self.body.__self__.model.parameters():
            p.grad = None
        return self.body([dict(mb) for mb in micro])


def test_the_graphed_step_logic_matches_the_eager_step(tmp_path, monkeypatch):
    """The Stepper's capture / replay / drop logic with the capture replaced by an eager stand-in:
    the same metrics, bitwise, as the eager step reading back late; capture after one eager step,
    again after the NaN step drops the graph; checkpoints resume."""
    import mambalab.training.step as step_mod
    import mambalab.training.trainer as trainer_mod
    from train_helpers import read_metrics

    monkeypatch.setattr(step_mod, "StepGraph", _EagerGraph)
    monkeypatch.setattr(trainer_mod, "unsupported_reason", lambda *a, **k: None)
    _EagerGraph.made = []
    common = ["data=synthetic", "tokenizer=byte", "optimizer.fused=true", "trainer.max_steps=8",
              "trainer.debug_inject_nan_at_steps=[3]", "trainer.checkpoint_every=4"]
    run_in_process(tmp_path / "eager", *common, "trainer.overlap_steps=true", base=TINY_LM)
    run_in_process(tmp_path / "graphs", *common, "trainer.cuda_graphs=true", base=TINY_LM)
    assert len(_EagerGraph.made) == 2  # steps 2 and 5 (3 was NaN: 4 ran eagerly)
    eager, graphs = read_metrics(tmp_path / "eager"), read_metrics(tmp_path / "graphs")
    assert [r["skipped_steps"] for r in eager] == [r["skipped_steps"] for r in graphs]
    assert ["loss" in r for r in eager] == ["loss" in r for r in graphs]
    # not bitwise: with graphs the lr is an fp32 tensor, the schedule's values rounded to fp32
    for k in ("loss", "grad_norm", "lr"):
        assert [r.get(k, 0.0) for r in graphs] == pytest.approx([r.get(k, 0.0) for r in eager],
                                                                rel=1e-5), k
    assert read_summary(tmp_path / "graphs")["skipped_steps"] == 1

    # a checkpoint written while graphs were on holds a plain lr (cuda_graph.portable_state_dict)
    state = torch.load(tmp_path / "graphs" / "checkpoints" / "step_00000004" / "optimizer.pt",
                       weights_only=False)
    assert all(isinstance(g["lr"], float) for g in state["param_groups"])
