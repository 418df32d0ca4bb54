"""The console table and metrics.json."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

_LM_COLUMNS = [("loss", "loss", "{:.4f}"), ("ppl", "token ppl", "{:.3f}"),
               ("word_ppl", "word ppl", "{:.3f}"), ("bpb", "bits/byte", "{:.4f}"),
               ("tokens", "tokens", "{:,}"), ("documents", "docs", "{:,}"),
               ("seconds", "s", "{:.2f}"), ("tokens_per_s", "tok/s", "{:,.0f}")]


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return fmt.format(value)


def lm_table(rows: list[tuple[str, str, dict[str, Any]]], title: str) -> Table:
    """One row per (model, mode); word ppl and bits/byte compare across tokenizers."""
    table = Table(title=title, caption="word ppl and bits/byte compare models with different "
                                       "tokenizers; token ppl does not")
    table.add_column("model")
    table.add_column("mode")
    for _, header, _ in _LM_COLUMNS:
        table.add_column(header, justify="right")
    for model, mode, metrics in rows:
        table.add_row(model, mode, *[_cell(metrics.get(key), fmt) for key, _, fmt in _LM_COLUMNS])
    return table


def task_table(results: dict[int, dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for header in ("length", "accuracy", "loss", "answers"):
        table.add_column(header, justify="right")
    for length, metrics in sorted(results.items()):
        table.add_row(f"{length:,}", f"{metrics['accuracy']:.4f}", f"{metrics['loss']:.4f}",
                      f"{metrics['total']:,}")
    return table


def samples_table(samples: list[dict[str, Any]]) -> Table:
    table = Table(title="samples", show_lines=True)
    table.add_column("prompt", overflow="fold", ratio=1)
    table.add_column("completion", overflow="fold", ratio=2)
    for sample in samples:
        table.add_row(sample["prompt"], sample["completion"])
    return table


def print_tables(*tables: Table) -> None:
    # Logs and pipes get the full table rather than 80 columns of truncated cells.
    console = Console() if Console().is_terminal else Console(width=160)
    for table in tables:
        console.print(table)


def write_metrics(report: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "metrics.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    tmp.replace(path)  # a reader never sees half a file
    return path
