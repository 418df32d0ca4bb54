"""On a GPU machine: the training step replayed as a CUDA graph (trainer.cuda_graphs=true) trains
as the eager step does, skips a NaN step alike and captures again after it, resumes from its own
checkpoints, and the benchmark's "+graphs" rows run. Run: pytest -m gpu -s
tests/training/test_cuda_graph_gpu.py"""
from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from train_helpers import CONF, cli, read_metrics, read_summary

SMALL = [
    "~experiment", "model=mamba_tiny", "model.d_model=128", "model.n_layer=2", "model.kernels=triton",
    "data=synthetic", "tokenizer=byte", "data.seq_len=256", "data.batch_size=4",
    "trainer.mixed_precision=bf16", "trainer.max_steps=12", "trainer.log_every=1",
    "trainer.eval_every=null", "trainer.eval_max_batches=2", "trainer.checkpoint_every=4",
    "trainer.progress_bar=false", "scheduler.warmup_steps=3", "logger=[jsonl]",
    "trainer.debug_inject_nan_at_steps=[5]",
]


@pytest.mark.gpu
def test_graphed_steps_train_as_the_eager_ones(tmp_path):
    eager, graphed = tmp_path / "eager", tmp_path / "graphed"
    # the eager run reads each step back one step late too (overlap_steps), as a graphed one does
    a = cli(eager, "trainer.overlap_steps=true", "trainer.cuda_graphs=false", timeout=600, base=SMALL)
    b = cli(graphed, "trainer.cuda_graphs=true", timeout=600, base=SMALL)
    assert a.returncode == 0, a.stdout[-3000:] + a.stderr[-3000:]
    assert b.returncode == 0, b.stdout[-3000:] + b.stderr[-3000:]
    log = b.stdout + b.stderr
    # step 1 eager, captured at 2; step 5's NaN drops the graph: 6 eager, captured again at 7
    assert log.count("trainer.cuda_graphs: captured the step") == 2, log[-3000:]
    assert "capturing the step failed" not in log
    la = [r.get("loss") for r in read_metrics(eager)]  # none for the skipped step
    lb = [r.get("loss") for r in read_metrics(graphed)]
    print("\neager  ", la, "\ngraphed", lb)
    assert len(la) == len(lb) == 12 and la[4] is None and lb[4] is None
    assert read_summary(eager)["skipped_steps"] == read_summary(graphed)["skipped_steps"] == 1
    # the same kernels in the same order: equal up to the kernels' own run-to-run differences
    assert max(abs(x - y) for x, y in zip(la, lb) if x is not None) < 2e-3


@pytest.mark.gpu
def test_graphed_run_resumes_from_its_checkpoint(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    graphs = ["trainer.cuda_graphs=true"]
    assert cli(whole, *graphs, timeout=600, base=SMALL).returncode == 0
    assert cli(split, *graphs, "trainer.interrupt_at_step=8", timeout=600, base=SMALL).returncode == 75
    resumed = cli(split, *graphs, timeout=600, base=SMALL)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    a = [r.get("loss") for r in read_metrics(whole)]
    b = [r.get("loss") for r in read_metrics(split)]
    print("\nwhole  ", a[-4:], "\nresumed", b[-4:])
    assert len(a) == len(b) == 12
    assert max(abs(x - y) for x, y in zip(a, b) if x is not None) < 2e-3
    # the learning rate followed the schedule through the capture (a tensor the scheduler fills)
    assert [r["lr"] for r in read_metrics(whole)] == pytest.approx([r["lr"] for r in read_metrics(split)])


@pytest.mark.gpu
def test_a_step_that_cannot_be_captured_trains_on_eagerly(caplog):
    from types import SimpleNamespace

    from accelerate import Accelerator

    from mambalab.training.step import Stepper

    class ReadsBack(torch.nn.Module):  # a model whose forward reads a value back: not capturable
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(4))

        def forward(self, input_ids, targets=None, doc_starts=None):
            loss = (self.w * input_ids.float().mean()).square().sum()
            if loss.item() > 1e9:
                loss = loss * 0.0
            return SimpleNamespace(loss=loss)

    acc = Accelerator()
    model = ReadsBack().cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    model, opt = acc.prepare(model, opt)
    stepper = Stepper(acc, model, opt, grad_clip=1.0, oom_retry=False, cuda_graphs=True)
    batch = {"input_ids": torch.ones(2, 8, dtype=torch.long),
             "targets": torch.ones(2, 8, dtype=torch.long)}
    results = []
    with caplog.at_level("WARNING", logger="mambalab.training.step"):
        for step in range(1, 5):
            stepper.accumulate([batch])
            results.append(stepper.update(step).result())
    assert not stepper.cuda_graphs
    assert any("capturing the step failed" in r.getMessage() for r in caplog.records)
    assert all(r.finite for r in results) and results[-1].loss < results[0].loss


@pytest.mark.gpu
def test_bench_graph_rows(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="bench", overrides=[
            "bench.d_model=128", "bench.n_layer=2", "bench.vocab_size=1024", "bench.seq_len=256",
            "bench.batch_sizes=[2]", "bench.steps=3", "bench.warmup_steps=2",
            "bench.implementations=[mambalab]", "bench.kernels=[triton]",
            "bench.cuda_graphs=[false,true]", "bench.print_tables=false",
            f"bench.out={tmp_path / 'bench.json'}"])
    rows = {r["implementation"]: r for r in instantiate(cfg.bench)["training"]}
    eager, graphed = rows["mambalab[triton]"], rows["mambalab[triton]+graphs"]
    assert eager["status"] == graphed["status"] == "ok", (eager, graphed)
    # the same model, seed and batch: the first (eager warm-up) losses are the same step
    assert graphed["first_loss"] == pytest.approx(eager["first_loss"], rel=1e-3)
    assert graphed["last_loss"] < graphed["first_loss"]
    print(f"\n{torch.cuda.get_device_name()}: eager {eager['step_ms']:.2f} ms a step, "
          f"graphed {graphed['step_ms']:.2f}")
