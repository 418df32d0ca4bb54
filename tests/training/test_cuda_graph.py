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
    with caplog.at_level(logging.INFO, logger="mambalab.training.trainer"):
        run_in_process(tmp_path / "true", *synth, "trainer.cuda_graphs=true", base=TINY_LM)
        asked = [r.getMessage() for r in caplog.records if "cuda_graphs" in r.getMessage()]
        caplog.clear()
        run_in_process(tmp_path / "auto", *synth, base=TINY_LM)  # the default: silent on a CPU
        default = [r.getMessage() for r in caplog.records if "cuda_graphs" in r.getMessage()]
    assert read_summary(tmp_path / "true")["status"] == read_summary(tmp_path / "auto")["status"] == "completed"
    assert asked == ["trainer.cuda_graphs=true but the step cannot be captured here: the device "
                     "is cpu, not CUDA. Training without CUDA graphs."]
    assert default == []


def test_cuda_graphs_setting_is_checked():
    from mambalab.config import ConfigError, TrainerConfig

    assert TrainerConfig(max_steps=1, cuda_graphs=True).cuda_graphs == "true"
    with pytest.raises(ConfigError, match="trainer.cuda_graphs='sometimes': expected one of auto"):
        TrainerConfig(max_steps=1, cuda_graphs="sometimes")


class _EagerGraph:
    """Stands in for StepGraph on a CPU, with a capture's effects on .grad: constructing it binds
    each parameter's .grad to a buffer (a captured backward allocates them), `replay` runs the
    step for real from gradients set to None (the captured backward writes them, never adds),
    leaves the new gradients in those buffers and does not rebind .grad (a replay cannot)."""
    made: list[tuple] = []

    def __init__(self, body, micro, device) -> None:
        self.key, self.body = batch_key(micro), body
        self.params = list(body.__self__.model.parameters())
        self.buffers = [torch.zeros_like(p) for p in self.params]
        for p, buf in zip(self.params, self.buffers):
            p.grad = buf
        _EagerGraph.made.append(self.key)

    def matches(self, micro) -> bool:
        return batch_key(micro) == self.key

    def replay(self, micro) -> torch.Tensor:
        bound = [p.grad for p in self.params]
        for p in self.params:
            p.grad = None
        out = self.body([dict(mb) for mb in micro])
        for p, buf, g in zip(self.params, self.buffers, bound):
            buf.copy_(p.grad)
            p.grad = g
        return out


@pytest.mark.parametrize("extra, captures", [
    (["trainer.debug_inject_nan_at_steps=[3]"], 2),  # at steps 2 and 5 (4 replayed, then dropped)
    (["trainer.eval_every=3"], 3),  # at 2, 5 and 8: each evaluation takes the graph's memory back
    (["trainer.grad_accum_steps=2"], 1),  # both micro-batches in one graph
])
def test_the_graphed_step_logic_matches_the_eager_step(tmp_path, monkeypatch, extra, captures):
    """The Stepper's capture / replay / drop logic with the capture replaced by an eager stand-in:
    the same metrics as the eager step reading back late; a capture after one eager step of the
    same shapes, again after a non-finite step or an evaluation drops the graph."""
    import mambalab.training.step as step_mod
    import mambalab.training.trainer as trainer_mod
    from train_helpers import read_metrics

    monkeypatch.setattr(step_mod, "StepGraph", _EagerGraph)
    monkeypatch.setattr(trainer_mod, "unsupported_reason", lambda *a, **k: None)
    _EagerGraph.made = []
    common = ["data=synthetic", "tokenizer=byte", "optimizer.fused=true", "trainer.max_steps=8",
              "trainer.checkpoint_every=4", *extra]
    run_in_process(tmp_path / "eager", *common, "trainer.overlap_steps=true",
                   "trainer.cuda_graphs=false", base=TINY_LM)
    run_in_process(tmp_path / "graphs", *common, "trainer.cuda_graphs=true", base=TINY_LM)
    assert len(_EagerGraph.made) == captures
    eager, graphs = read_metrics(tmp_path / "eager"), read_metrics(tmp_path / "graphs")
    assert [r["skipped_steps"] for r in eager] == [r["skipped_steps"] for r in graphs]
    assert ["loss" in r for r in eager] == ["loss" in r for r in graphs]
    # not bitwise: with graphs the lr is an fp32 tensor, the schedule's values rounded to fp32
    for k in ("loss", "grad_norm", "lr"):
        assert [r.get(k, 0.0) for r in graphs] == pytest.approx([r.get(k, 0.0) for r in eager],
                                                                rel=1e-5), k
    assert read_summary(tmp_path / "graphs")["skipped_steps"] == read_summary(
        tmp_path / "eager")["skipped_steps"]
    evals = [read_metrics(tmp_path / run, "validation") for run in ("eager", "graphs")]
    assert [r["loss"] for r in evals[1]] == pytest.approx([r["loss"] for r in evals[0]], rel=1e-5)

    # a checkpoint written while graphs were on holds a plain lr (cuda_graph.portable_state_dict)
    folder = sorted((tmp_path / "graphs" / "checkpoints").glob("step_*"))[-1]
    state = torch.load(folder / "optimizer.pt", weights_only=False)
    assert all(isinstance(g["lr"], float) for g in state["param_groups"])


def test_an_eager_step_after_a_dropped_graph_starts_from_zero_gradients(monkeypatch):
    """Right after a capture .grad are the graph's buffers, holding the last replay's gradients;
    an eager step after the graph is dropped (a non-finite step) must not add to them."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    import mambalab.training.step as step_mod

    monkeypatch.setattr(step_mod, "StepGraph", _EagerGraph)

    class Quadratic(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))

        def forward(self, input_ids, targets=None, doc_starts=None):
            return SimpleNamespace(loss=(self.w * input_ids.float().mean()).square().sum())

    acc = Accelerator(cpu=True)
    model = Quadratic()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    model, opt = acc.prepare(model, opt)
    stepper = step_mod.Stepper(acc, model, opt, grad_clip=None, oom_retry=False, cuda_graphs=True)
    batch = {"input_ids": torch.full((2, 4), 3), "targets": torch.zeros(2, 4, dtype=torch.long)}
    for step in (1, 2):  # eager, then captured and replayed
        stepper.accumulate([batch])
        stepper.update(step).result()
    assert stepper._graph is not None and model.w.grad is not None  # the graph's buffers
    stepper.drop_graph()  # as after a non-finite step
    stepper.accumulate([batch])  # eager
    expected = 2 * model.w.detach() * 9.0  # d/dw of (3 w)^2
    assert torch.allclose(model.w.grad, expected), (model.w.grad, expected)


def test_a_graph_is_captured_at_the_split_the_oom_retry_found(monkeypatch):
    from accelerate import Accelerator

    import mambalab.training.step as step_mod
    from train_helpers import OomAbove

    monkeypatch.setattr(step_mod, "StepGraph", _EagerGraph)
    _EagerGraph.made = []
    acc = Accelerator(cpu=True)
    model = OomAbove(limit=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    stepper = step_mod.Stepper(acc, model, opt, grad_clip=None, oom_retry=True, cuda_graphs=True)
    batch = {"input_ids": torch.ones(4, 8, dtype=torch.long), "targets": torch.ones(4, 8, dtype=torch.long)}
    results = []
    for step in range(1, 5):
        stepper.accumulate([batch])
        results.append(stepper.update(step).result())
    assert stepper.micro_splits == 2 and stepper.cuda_graphs
    # step 1 ran out of memory at 4 and ran as 2 x 2, step 2 eagerly at the new split, step 3 captured
    assert _EagerGraph.made == [batch_key([{k: v[:2] for k, v in batch.items()}] * 2)]
    assert all(r.finite for r in results)
