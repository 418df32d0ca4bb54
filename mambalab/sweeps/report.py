"""The sweep's summary: a rich table on the console, `summary.csv`, and the list of failed jobs."""
from __future__ import annotations

import csv
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mambalab.sweeps.results import JobResult

CSV_COLUMNS = ("job", "overrides", "status", "step", "tokens", "best_val_loss", "best_val_ppl",
               "final_val_loss", "final_val_ppl", "tok_per_s", "wall_time_s", "gpus", "error",
               "path")
_STATUS_STYLE = {"completed": "green", "failed": "bold red", "running": "yellow",
                 "interrupted": "magenta"}


def _fmt(value: float | int | None, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d}"


def _fmt_tokens(tokens: int | None) -> str:
    if tokens is None:
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if tokens >= size:
            return f"{tokens / size:.2f}{unit}"
    return str(tokens)


def _job_label(job: JobResult, swept: list[str]) -> str:
    """The job's swept values only (`optimizer.lr=3e-4 data.seq_len=1024`): the rest is shared."""
    values = job.override_values()
    shown = [f"{k}={values[k]}" for k in swept if k in values]
    return " ".join(shown) if shown else (" ".join(job.overrides) or job.path.name)


def _error_line(error: str | None) -> str:
    """The line of a traceback that names the exception (its last non-empty line)."""
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def build_table(jobs: list[JobResult], swept: list[str], title: str) -> Table:
    table = Table(title=title, show_lines=False)
    table.add_column("job" if swept else "overrides", overflow="fold")
    for name in ("status", "steps", "tokens", "best val loss", "best val ppl",
                 "final val loss", "final val ppl", "tok/s", "wall"):
        table.add_column(name, justify="left" if name == "status" else "right")
    show_gpus = any(j.gpus is not None for j in jobs)
    if show_gpus:
        table.add_column("gpus", justify="right")
    best = min((j.final_val_loss for j in jobs if j.ok and j.final_val_loss is not None),
               default=None)
    for job in jobs:
        style = _STATUS_STYLE.get(job.status, "red")
        row = [_job_label(job, swept), f"[{style}]{job.status}[/]", _fmt(job.step, "d"),
               _fmt_tokens(job.tokens), _fmt(job.best_val_loss, ".4f"),
               _fmt(job.best_val_ppl, ".2f"), _fmt(job.final_val_loss, ".4f"),
               _fmt(job.final_val_ppl, ".2f"), _fmt(job.tok_per_s, ",.0f"),
               _fmt_time(job.wall_time_s)]
        if show_gpus:
            row.append(job.gpus or "-")
        # The lowest final validation loss among completed jobs stands out.
        table.add_row(*row, style="bold" if best is not None and job.final_val_loss == best
                      and job.ok else None)
    return table


def write_csv(jobs: list[JobResult], swept: list[str], path: Path) -> None:
    """One row per job; swept keys get their own columns so the file pivots without parsing."""
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(CSV_COLUMNS[:2]) + swept + list(CSV_COLUMNS[2:]))
        for job in jobs:
            values = job.override_values()
            writer.writerow(
                [job.path.name, " ".join(job.overrides)] + [values.get(k, "") for k in swept]
                + [job.status, job.step, job.tokens, job.best_val_loss, job.best_val_ppl,
                   job.final_val_loss, job.final_val_ppl, job.tok_per_s, job.wall_time_s,
                   job.gpus, _error_line(job.error),
                   str(job.path)])
    tmp.replace(path)


_WHY = {"running": "still running (or killed on another host)",
        "interrupted": "killed while running: re-run the sweep to resume it",
        "no summary": "killed before it wrote summary.json"}


def print_failures(jobs: list[JobResult], console: Console) -> None:
    """The jobs that did not complete, each with its folder and the line naming its error."""
    unfinished = [j for j in jobs if not j.ok]
    if not unfinished:
        return
    console.print(f"[bold red]{len(unfinished)} of {len(jobs)} jobs did not complete:[/]")
    for job in unfinished:
        why = _error_line(job.error) or _WHY.get(job.status, "no error recorded")
        console.print(f"  [red]{job.status}[/] {' '.join(job.overrides) or job.path.name}\n"
                      f"      {job.path}\n      {why}", highlight=False)
    console.print("Re-run the same command to run them again: completed jobs are skipped.")
