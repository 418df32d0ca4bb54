"""`python -m mambalab.eval.compare RUN_DIR RUN_DIR ... --out compare.png`: validation curves of
several training runs side by side, against tokens trained on and against training seconds.

Reads each run directory's `metrics.jsonl` and `summary.json` (docs/architecture.md) and writes
one PNG (validation loss and token perplexity, each against tokens and against time) and a
markdown table (`<out>.md`, also printed). Made to compare runs given the same
`trainer.max_time_s`, e.g. mambalab's Mamba-130M against the seed's HF model and batch.

Time is training time: the seconds spent in optimizer steps (`train_time_s` of each evaluation
event), without evaluation and checkpoints, so that the x axis does not depend on how often or how
fast a run evaluated. Runs written before `train_time_s` existed get it estimated from their train
events (tokens / tokens per second of each logging window), marked `~` in the table.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

VAL_SPLITS = ("val", "valid", "validation")


@dataclass
class RunCurve:
    """One run's validation events, with tokens trained and training seconds at each."""

    path: Path
    label: str
    steps: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    seconds_estimated: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def _records(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if isinstance(record, dict):
            out.append(record)
    return out


def _default_label(run: Path, config: dict[str, Any]) -> str:
    model = str((config.get("model") or {}).get("_target_", "")).rsplit(".", 1)[-1]
    data = config.get("data") or {}
    if model and data.get("batch_size"):
        accum = (config.get("trainer") or {}).get("grad_accum_steps", 1)
        return f"{model} {data['batch_size']}x{data.get('seq_len')}x{accum}"
    return run.name


def load_run(run: str | Path, label: str | None = None) -> RunCurve:
    """A run's validation curve; raises ValueError naming the run and the fix when it has none."""
    path = Path(run)
    metrics_file = path / "metrics.jsonl"
    if not metrics_file.is_file():
        raise ValueError(f"{path}: no metrics.jsonl; pass a training run directory "
                         "(outputs/<name>/<run> or multirun/<sweep>/<job>)")
    summary = json.loads((path / "summary.json").read_text()) if (path / "summary.json").is_file() else {}
    config = yaml.safe_load((path / "config.yaml").read_text()) if (path / "config.yaml").is_file() else {}
    records = _records(metrics_file)
    train = [r for r in records if r.get("split") == "train"]
    val = [r for r in records if r.get("split") in VAL_SPLITS and isinstance(r.get("loss"), (int, float))]
    if not val:
        raise ValueError(f"{path}: metrics.jsonl has no validation events; train with "
                         "trainer.eval_every=N (and trainer.eval_at_end=true)")
    curve = RunCurve(path=path, label=label or _default_label(path, config), summary=summary,
                     config=config or {})
    per_step = summary.get("tokens_per_step")
    train_tokens = {r["step"]: r["tokens"] for r in train if isinstance(r.get("tokens"), int)}
    # Old runs: seconds from each logging window (its tokens at its tokens/s), summed.
    elapsed, last_tokens, est = 0.0, 0, {}
    for r in train:
        if isinstance(r.get("tokens"), int) and r.get("tok_per_s"):
            elapsed += (r["tokens"] - last_tokens) / r["tok_per_s"]
            last_tokens = r["tokens"]
        est[r["step"]] = elapsed
    for r in val:
        step = int(r["step"])
        if "eval_tokens" in r:  # `tokens` is tokens trained (since eval events carry both)
            tokens = int(r["tokens"])
        elif step in train_tokens:
            tokens = train_tokens[step]
        elif per_step:
            tokens = step * int(per_step)
        else:
            raise ValueError(f"{path}: cannot tell the tokens trained at step {step} (no train event "
                             "at that step, no tokens_per_step in summary.json)")
        if isinstance(r.get("train_time_s"), (int, float)):
            seconds = float(r["train_time_s"])
        else:
            curve.seconds_estimated = True
            seconds = max((t for s, t in est.items() if s <= step), default=0.0)
        curve.steps.append(step)
        curve.tokens.append(tokens)
        curve.seconds.append(seconds)
        curve.evals.append(r)
    return curve


def _interp(xs: list[float], ys: list[float], x: float) -> float | None:
    """Linear interpolation of the curve at x (None outside it)."""
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[-1] if xs and math.isclose(x, xs[-1]) else None


def _fmt(value: Any, spec: str) -> str:
    return "-" if not isinstance(value, (int, float)) else format(value, spec)


def markdown(curves: list[RunCurve]) -> str:
    """A summary row per run, the loss at the training time all runs reached, then each curve."""
    common = min(c.seconds[-1] for c in curves)
    lines = [
        f"| run | parameters | tokens/step | steps | tokens | train s | tok/s | val loss | token ppl "
        f"| word ppl | bits/byte | val loss at {common:.0f} s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in curves:
        last, s = c.evals[-1], c.summary
        mark = "~" if c.seconds_estimated else ""
        tok_s = c.tokens[-1] / c.seconds[-1] if c.seconds[-1] > 0 else None
        lines.append(
            f"| {c.label} | {_fmt(s.get('parameters'), ',')} | {_fmt(s.get('tokens_per_step'), ',')} "
            f"| {c.steps[-1]} | {c.tokens[-1]:,} | {mark}{c.seconds[-1]:.1f} | {mark}{_fmt(tok_s, ',.0f')} "
            f"| {last['loss']:.3f} | {_fmt(last.get('ppl'), ',.1f')} | {_fmt(last.get('word_ppl'), ',.1f')} "
            f"| {_fmt(last.get('bpb'), '.3f')} | {_fmt(_interp(c.seconds, [e['loss'] for e in c.evals], common), '.3f')} |")
    for c in curves:
        lines += ["", f"**{c.label}** (`{c.path}`)", "",
                  "| step | tokens | train s | loss | token ppl | word ppl | bits/byte |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for step, tokens, sec, e in zip(c.steps, c.tokens, c.seconds, c.evals):
            lines.append(f"| {step} | {tokens:,} | {sec:.1f} | {e['loss']:.3f} | {_fmt(e.get('ppl'), ',.1f')} "
                         f"| {_fmt(e.get('word_ppl'), ',.1f')} | {_fmt(e.get('bpb'), '.3f')} |")
    if any(c.seconds_estimated for c in curves):
        lines += ["", "~: training seconds estimated from the train events' tokens/s (older run)."]
    return "\n".join(lines) + "\n"


def plot(curves: list[RunCurve], out: Path, title: str) -> None:
    """2 x 2 panels: loss and token perplexity (rows) against tokens and training seconds (columns)."""
    import matplotlib
    matplotlib.use("Agg", force=True)  # headless GPU machines
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    for c in curves:
        loss = [e["loss"] for e in c.evals]
        ppl = [e.get("ppl", math.exp(min(e["loss"], 50.0))) for e in c.evals]
        for row, ys in enumerate((loss, ppl)):
            for col, xs in enumerate((c.tokens, c.seconds)):
                axes[row][col].plot(xs, ys, marker="o", markersize=3, label=c.label)
    for row, name in enumerate(("validation loss", "validation token perplexity")):
        for col, xlabel in enumerate(("tokens trained", "training seconds (optimizer steps only)")):
            ax = axes[row][col]
            ax.set_xlabel(xlabel)
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
            if row == 1:
                ax.set_yscale("log")
            ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mambalab.eval.compare",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="training run directories (two or more)")
    parser.add_argument("--labels", help="comma-separated names for the runs, in order")
    parser.add_argument("--out", default="compare.png", help="the PNG; the table goes to <out>.md")
    parser.add_argument("--title", default="validation curves")
    args = parser.parse_args(argv)
    labels = args.labels.split(",") if args.labels else [None] * len(args.runs)
    if len(labels) != len(args.runs):
        print(f"error: --labels has {len(labels)} names for {len(args.runs)} runs", file=sys.stderr)
        return 2
    try:
        curves = [load_run(run, label) for run, label in zip(args.runs, labels)]
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    plot(curves, out, args.title)
    table = markdown(curves)
    out.with_suffix(".md").write_text(table)
    print(table + f"\nwrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
