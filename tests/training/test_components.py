"""Schedules, parameter groups, accumulation planning, checkpoint retention."""
from __future__ import annotations


import pytest
import torch

from mambalab.models import build_mamba_lm
from mambalab.training.checkpointer import Checkpointer
from mambalab.training.optim import build_adamw, no_decay_names
from mambalab.training.schedules import constant, cosine, linear, wsd

from train_helpers import TINY_LM, OomAbove, run_in_process


def _lrs(make, total=100, **kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make(opt, total_steps=total, **kw)
    out = []
    for _ in range(total):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


def test_schedules_warm_up_then_follow_their_shape():
    cos = _lrs(cosine, warmup_steps=10, min_lr_ratio=0.1)
    assert cos[0] == pytest.approx(0.1) and cos[9] == pytest.approx(1.0)
    assert cos[-1] == pytest.approx(0.1, abs=2e-3) and all(a >= b for a, b in zip(cos[9:], cos[10:]))
    lin = _lrs(linear, warmup_steps=0, min_lr_ratio=0.0)
    assert lin[0] == 1.0 and lin[50] == pytest.approx(0.5)
    w = _lrs(wsd, warmup_steps=10, decay_fraction=0.2)
    assert w[10:80] == [1.0] * 70 and w[-1] == pytest.approx(0.05)
    assert _lrs(constant, warmup_fraction=0.1)[10:] == [1.0] * 90


def test_no_weight_decay_on_biases_norms_embeddings_and_marked_params():
    model = build_mamba_lm(d_model=16, n_layer=2, vocab_size=32, d_state=4)
    skip = no_decay_names(model)
    assert "backbone.embedding.weight" in skip and "backbone.norm_f.weight" in skip
    assert {f"backbone.layers.0.mixer.{n}" for n in ("A_log", "D", "dt_proj.bias", "conv1d.bias")} <= skip
    assert "backbone.layers.0.mixer.in_proj.weight" not in skip
    opt = build_adamw(model, lr=1e-3, weight_decay=0.1)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    n = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == n


def test_tokens_per_step_sets_accumulation(tmp_path):
    run_in_process(tmp_path, "trainer.tokens_per_step=192", "trainer.max_steps=2")  # 3 x 4 x 16
    summary = __import__("json").loads((tmp_path / "summary.json").read_text())
    assert summary["grad_accum_steps"] == 3 and summary["tokens"] == 2 * 192


def test_tokens_per_step_must_divide(tmp_path):
    with pytest.raises(ValueError, match=r"trainer.tokens_per_step=100 is not a multiple of .* = 64"):
        run_in_process(tmp_path, "trainer.tokens_per_step=100")


def test_retention_keeps_last_k_and_best(tmp_path):
    ck = Checkpointer(tmp_path, rank=0, world_size=1, keep_last=2, barrier=lambda: None)
    write = {"blob": lambda f: (f / "blob.bin").write_bytes(b"x")}
    for step in (1, 2, 3):
        folder = ck.save(step, write, {}, {"step": step})
        if step == 1:
            ck.mark_best(folder)
    ck.save(4, write, {}, {"step": 4})
    assert [f.name for f in ck.step_folders()] == ["step_00000004", "step_00000003", "step_00000001"]
    assert (tmp_path / "latest").read_text().strip() == "step_00000004"
    assert ck.verify(tmp_path / "step_00000004") is None


def test_samples_and_lm_metrics_on_text(tmp_path, monkeypatch):
    monkeypatch.setenv("MAMBALAB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "train.txt").write_text("the mamba reads a long text one token at a time.\n" * 80)
    run_dir = tmp_path / "run"
    run_in_process(run_dir, "data=text", "tokenizer=byte", f"data.train_files={tmp_path}/train.txt",
                   "data.validation_fraction=0.0", f"data.validation_files={tmp_path}/train.txt",
                   "data.num_proc=1", "data.progress=false", "trainer.sample_every=2",
                   "trainer.sample_tokens=8", "trainer.eval_every=2", "trainer.max_steps=2", base=TINY_LM)
    rows = [__import__("json").loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    sample = next(r for r in rows if r["split"] == "sample")
    assert sample["step"] == 2 and sample["text"].startswith("The")
    val = next(r for r in rows if r["split"] == "validation")
    assert {"loss", "ppl", "bpb", "word_ppl"} <= set(val)


def test_oom_retry_halves_the_micro_batch_and_keeps_the_loss():
    from accelerate import Accelerator

    from mambalab.training.step import Stepper

    acc = Accelerator(cpu=True)
    model = OomAbove(limit=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = {"input_ids": torch.arange(8.0).reshape(8, 1).long(), "targets": torch.zeros(8, 1).long()}
    stepper = Stepper(acc, model, opt, grad_clip=None, oom_retry=True)
    result = stepper.run([batch])
    assert stepper.micro_splits == 4 and result.finite
    assert result.loss == pytest.approx(3.5)  # the mean over all 8 sequences, as without a split
    assert model.w.item() == pytest.approx(1.0 - 0.1 * 3.5)  # and its gradient, as without a split
    with pytest.raises(torch.cuda.OutOfMemoryError):
        Stepper(acc, OomAbove(limit=2), opt, grad_clip=None, oom_retry=False).run([batch])


def test_oom_at_one_sequence_names_the_fixes():
    """When even a micro-batch of one sequence runs out of memory, the retry stops and the error
    says what to lower (sequence length, checkpointing, what the Triton mixer keeps)."""
    from accelerate import Accelerator

    from mambalab.training.step import Stepper

    model = OomAbove(limit=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = {"input_ids": torch.zeros(2, 1).long(), "targets": torch.zeros(2, 1).long()}
    stepper = Stepper(Accelerator(cpu=True), model, opt, grad_clip=None, oom_retry=True)
    with pytest.raises(torch.cuda.OutOfMemoryError,
                       match=r"data.seq_len.*gradient_checkpointing.*MAMBALAB_MIXER_CONFIG"):
        stepper.run([batch])
    # it stopped at one sequence a micro-batch (it used to go on doubling the split: the error
    # it raised there was itself an OutOfMemoryError, caught by the retry)
    assert stepper.micro_splits == 2
