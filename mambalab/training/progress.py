"""A rich progress bar on rank 0: step, loss, tokens/s and ETA."""
from __future__ import annotations

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


class ProgressBar:
    def __init__(self, total_steps: int, start_step: int, enabled: bool) -> None:
        self._progress = None
        if not enabled:
            return
        self._progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tok_per_s]} tok/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            transient=False,
        )
        self._task = self._progress.add_task("train", total=total_steps, completed=start_step,
                                             loss="-", tok_per_s="-")
        self._progress.start()

    def update(self, step: int, loss: float | None = None, tok_per_s: float | None = None) -> None:
        if self._progress is None:
            return
        fields = {}
        if loss is not None:
            fields["loss"] = f"{loss:.4f}"
        if tok_per_s is not None:
            fields["tok_per_s"] = f"{tok_per_s:,.0f}"
        self._progress.update(self._task, completed=step, **fields)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
