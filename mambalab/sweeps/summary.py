"""Summarise a sweep folder: table on the console, `summary.csv`, `summary.png`."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from mambalab.sweeps.plot import write_plot
from mambalab.sweeps.report import build_table, print_failures, write_csv
from mambalab.sweeps.results import JobResult, load_sweep, swept_keys


@dataclass
class SweepSummary:
    sweep_dir: Path
    jobs: list[JobResult]
    swept: list[str]

    @property
    def unfinished(self) -> list[JobResult]:
        """Jobs that did not complete: failed, killed, or (on demand, mid-sweep) still running."""
        return [job for job in self.jobs if not job.ok]


def summarize_sweep(sweep_dir: str | Path, console: Console | None = None,
                    write_files: bool = True) -> SweepSummary:
    """Print the sweep's table and failures; write `summary.csv` and `summary.png` beside the jobs."""
    root = Path(sweep_dir)
    # Piped or logged output would otherwise be cut to 80 columns and fold every cell.
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    jobs = load_sweep(root)
    swept = swept_keys(jobs)
    if not jobs:
        console.print(f"[yellow]{root}: no job folders yet (none holds summary.json, metrics.jsonl "
                      "or .hydra/overrides.yaml).[/]")
        return SweepSummary(sweep_dir=root, jobs=jobs, swept=swept)
    title = f"sweep {root.name}: {sum(j.ok for j in jobs)}/{len(jobs)} completed"
    console.print(build_table(jobs, swept, title))
    if write_files:
        write_csv(jobs, swept, root / "summary.csv")
        write_plot(jobs, swept, root / "summary.png", title)
        console.print(f"Wrote {root / 'summary.csv'} and {root / 'summary.png'}", highlight=False)
    print_failures(jobs, console)
    return SweepSummary(sweep_dir=root, jobs=jobs, swept=swept)
