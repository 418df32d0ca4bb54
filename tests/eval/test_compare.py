"""`python -m mambalab.eval.compare`: two real tiny runs' validation curves, against tokens and
training seconds, in one PNG and a markdown table."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mambalab.eval.compare import load_run, main

CONF = str(Path(__file__).resolve().parents[2] / "conf")
TINY = ["~experiment", "model=mamba_tiny", "model.d_model=16", "model.n_layer=1", "model.d_state=4",
        "data=synthetic", "data.vocab_size=64", "tokenizer=byte", "data.seq_len=16",
        "data.eval_examples=8", "data.prefetch=1", "logger=[jsonl]", "trainer.max_steps=4",
        "trainer.log_every=1", "trainer.eval_every=2", "trainer.eval_max_batches=null",
        "trainer.checkpoint_every=null", "trainer.progress_bar=false", "trainer.cpu_threads=1",
        "trainer.mixed_precision=no", "scheduler.warmup_steps=1"]


def _train(run_dir: Path, *overrides: str) -> Path:
    import mambalab.config  # noqa: F401  (registers the schemas)
    from mambalab.train import train
    from mambalab.training.job import run_job

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*TINY, *overrides])
    run_job(cfg, train, run_dir=str(run_dir))
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    # Like the seed against ours: a small batch with accumulation, and a larger one.
    return (_train(root / "small", "data.batch_size=2", "trainer.grad_accum_steps=2"),
            _train(root / "large", "data.batch_size=8"))


def test_curves_carry_tokens_trained_and_training_seconds(runs):
    small, large = load_run(runs[0]), load_run(runs[1])
    assert small.steps == large.steps == [2, 4]
    assert small.tokens == [2 * 64, 4 * 64] and large.tokens == [2 * 128, 4 * 128]
    assert 0 < small.seconds[0] < small.seconds[1] and not small.seconds_estimated
    assert small.label == "build_mamba_lm 2x16x2"


def test_png_and_table(runs, tmp_path, capsys):
    out = tmp_path / "cmp" / "compare.png"
    assert main([str(r) for r in runs] + ["--labels", "seed-like,ours", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    table = (tmp_path / "cmp" / "compare.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| seed-like") or line.startswith("| ours")]
    assert len(rows) == 2 and "| 64 |" in rows[0] and "| 512 |" in rows[1]  # tokens/step, tokens
    assert table in capsys.readouterr().out


def test_older_runs_get_estimated_seconds(runs, tmp_path):
    # Runs from before train_time_s: eval events whose `tokens` was the evaluation's count.
    old = tmp_path / "old"
    old.mkdir()
    (old / "summary.json").write_text((runs[1] / "summary.json").read_text())
    lines = []
    for line in (runs[1] / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        r.pop("train_time_s", None)
        if "eval_tokens" in r:
            r["tokens"] = r.pop("eval_tokens")
        lines.append(json.dumps(r))
    (old / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    curve = load_run(old)
    assert curve.seconds_estimated and curve.tokens == [256, 512] and curve.seconds[1] > curve.seconds[0] > 0


def test_errors_name_the_problem(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 1.0}\n')
    with pytest.raises(ValueError, match="no validation events; train with trainer.eval_every"):
        load_run(tmp_path)
