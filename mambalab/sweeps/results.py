"""Read a sweep folder back: one `JobResult` per job directory, from the files each run leaves.

A job directory is any folder under the sweep that holds a run's files (`summary.json`,
`metrics.jsonl`, `config.yaml`) or Hydra's `.hydra/overrides.yaml`. Nothing is inferred from folder
names: the overrides come from `.hydra/overrides.yaml`, the status from `summary.json`, the curves
from `metrics.jsonl`.
"""
from __future__ import annotations

import json
import math
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Splits that count as validation in metrics.jsonl, and the names of the validation metrics in
# summary.json's `final`/`best` blocks (the train app writes `final.eval`).
VAL_SPLITS = ("val", "valid", "validation")
_VAL_BLOCKS = ("eval",) + VAL_SPLITS
COMPLETED = "completed"
FAILED = "failed"
RUNNING = "running"
# `running` in summary.json, but the process that held the run's lock is gone (killed).
INTERRUPTED = "interrupted"
# A folder Hydra created for the job but where the run never wrote its summary (killed at start).
NO_SUMMARY = "no summary"
_RUN_FILES = ("summary.json", "metrics.jsonl", "config.yaml")


@dataclass
class JobResult:
    """What a sweep's summary shows about one job."""

    path: Path
    overrides: list[str]
    status: str
    error: str | None = None
    step: int | None = None
    tokens: int | None = None
    tok_per_s: float | None = None
    wall_time_s: float | None = None
    final_val_loss: float | None = None
    final_val_ppl: float | None = None
    best_val_loss: float | None = None
    best_val_ppl: float | None = None
    # (tokens, loss) of every validation event, in the order they were logged.
    val_curve: list[tuple[int, float]] = field(default_factory=list)
    gpus: str | None = None

    @property
    def name(self) -> str:
        return ",".join(self.overrides) if self.overrides else self.path.name

    @property
    def ok(self) -> bool:
        return self.status == COMPLETED

    def override_values(self) -> dict[str, str]:
        """`{"optimizer.lr": "3e-4", ...}` from `key=value` overrides (`+key`/`++key` stripped)."""
        values = {}
        for item in self.overrides:
            key, sep, value = item.partition("=")
            if sep:
                values[key.lstrip("+~")] = value
        return values


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        # A summary being rewritten right now, or a torn file from a killed job: report the job
        # from its other files rather than failing the whole summary.
        return None
    return data if isinstance(data, dict) else None


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            # The last line of a killed job may be cut off; every whole line still counts.
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def val_metrics(block: Any) -> dict[str, Any]:
    """The validation metrics in a summary's `final`/`best` block, nested or flat.

    Accepts `{"eval": {"loss": ..}}` (the train app's `final`), `{"val/loss": ..}`,
    `{"val_loss": ..}`, and a block that is the metrics itself, possibly with a `metrics` dict
    (the train app's `best`: `{"step", "loss", "metrics": {"loss", "ppl", ...}}`).
    """
    if not isinstance(block, dict):
        return {}
    for split in _VAL_BLOCKS:
        if isinstance(block.get(split), dict):
            return block[split]
        for sep in ("/", "_"):
            prefixed = {k[len(split) + 1:]: v for k, v in block.items() if k.startswith(split + sep)}
            if prefixed:
                return prefixed
    if "loss" not in block:
        return {}
    return {**block, **block["metrics"]} if isinstance(block.get("metrics"), dict) else block


def _ppl(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss) or loss > 700:
        return None
    return math.exp(loss)


def _overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if path.is_file():
        loaded = yaml.safe_load(path.read_text()) or []
        return [str(item) for item in loaded]
    return []


def _gpu_assignments(sweep_dir: Path) -> dict[str, str]:
    """Job directory name -> CUDA_VISIBLE_DEVICES, from the GPU launcher's log (latest wins)."""
    path = sweep_dir / "gpu_assignment.jsonl"
    found: dict[str, str] = {}
    for record in _read_metrics(path):
        if "job_dir" in record and "cuda_visible_devices" in record:
            found[Path(str(record["job_dir"])).name] = str(record["cuda_visible_devices"])
    return found


def _holder_is_dead(job_dir: Path) -> bool:
    """Whether the run's `.lock` names a process on this host that no longer exists.

    The train app writes `pid N on host H ...` into `<run>/.lock` and holds an flock on it while
    it runs; the text stays after it dies. Reading it (rather than trying the lock) never gets in
    the way of a job that is starting. On another host we cannot tell: False.
    """
    try:
        text = (job_dir / ".lock").read_text()
    except OSError:
        return False
    match = re.search(r"pid (\d+) on host (\S+)", text)
    if not match or match.group(2) != socket.gethostname():
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _tokens_at(record: dict[str, Any], train: list[dict[str, Any]],
               summary: dict[str, Any] | None) -> int:
    """Tokens trained when an evaluation ran: its own `tokens`, else the train record of the same
    step, else step x summary's `tokens_per_step`."""
    if as_number(record.get("tokens")) is not None:
        return int(record["tokens"])
    step = record.get("step")
    for m in train:
        if m.get("step") == step and as_number(m.get("tokens")) is not None:
            return int(m["tokens"])
    per_step = as_number((summary or {}).get("tokens_per_step"))
    return int(step * per_step) if per_step and isinstance(step, int) else int(step or 0)


def load_job(job_dir: Path) -> JobResult:
    """One job's result from its run directory."""
    summary = _read_json(job_dir / "summary.json")
    metrics = _read_metrics(job_dir / "metrics.jsonl")
    val = [m for m in metrics if m.get("split") in VAL_SPLITS and as_number(m.get("loss")) is not None]
    train = [m for m in metrics if m.get("split") not in VAL_SPLITS]

    job = JobResult(path=job_dir, overrides=_overrides(job_dir),
                    status=str(summary.get("status", NO_SUMMARY)) if summary else NO_SUMMARY)
    if job.status == RUNNING and _holder_is_dead(job_dir):
        job.status = INTERRUPTED
    job.val_curve = [(_tokens_at(m, train, summary), float(m["loss"])) for m in val]
    if summary:
        job.error = summary.get("error") or None
        job.step = summary.get("step")
        job.tokens = summary.get("tokens")
        job.tok_per_s = as_number(summary.get("tok_per_s"))
        job.wall_time_s = as_number(summary.get("wall_time_s", summary.get("wall_time")))
        final, best = val_metrics(summary.get("final")), val_metrics(summary.get("best"))
        job.final_val_loss, job.final_val_ppl = as_number(final.get("loss")), as_number(final.get("ppl"))
        job.best_val_loss, job.best_val_ppl = as_number(best.get("loss")), as_number(best.get("ppl"))

    # What the summary does not say (a run that is still going, or was killed) comes from the
    # metrics log, which every evaluation and log event appends to.
    if job.step is None and metrics:
        job.step = max(int(m.get("step") or 0) for m in metrics)
    if job.tokens is None and metrics:
        job.tokens = max(int(m.get("tokens") or 0) for m in metrics)
    if job.tok_per_s is None:
        rates = [m["tok_per_s"] for m in train if as_number(m.get("tok_per_s")) is not None]
        job.tok_per_s = float(rates[-1]) if rates else None
    if job.final_val_loss is None and val:
        job.final_val_loss = float(val[-1]["loss"])
        job.final_val_ppl = as_number(val[-1].get("ppl")) or _ppl(job.final_val_loss)
    if job.best_val_loss is None and val:
        best_record = min(val, key=lambda m: float(m["loss"]))
        job.best_val_loss = float(best_record["loss"])
        job.best_val_ppl = as_number(best_record.get("ppl")) or _ppl(job.best_val_loss)
    if job.final_val_ppl is None:
        job.final_val_ppl = _ppl(job.final_val_loss)
    if job.best_val_ppl is None:
        job.best_val_ppl = _ppl(job.best_val_loss)
    return job


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """Every job directory under `sweep_dir`, sorted by path (Hydra's subdirs may be nested)."""
    found = set()
    for marker in ("summary.json", "metrics.jsonl", ".hydra/overrides.yaml"):
        for path in sweep_dir.rglob(marker):
            job_dir = path.parent.parent if marker.startswith(".hydra") else path.parent
            # Skip a run's own sub-folders (checkpoints, logger folders) and the sweep root,
            # whose `.hydra`-less multirun.yaml is not a job.
            if "checkpoints" in job_dir.relative_to(sweep_dir).parts or job_dir == sweep_dir:
                continue
            found.add(job_dir)
    # A job folder nested inside another job's folder is that job's own output, not a job.
    jobs = sorted(found)
    return [d for d in jobs if not any(o != d and o in d.parents for o in jobs)]


def load_sweep(sweep_dir: str | Path) -> list[JobResult]:
    """Every job of a sweep; raises with the fix when the folder is not a sweep."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"sweep folder {str(root)!r} does not exist: pass the folder of a multirun, "
            "e.g. `python -m mambalab.sweep multirun/<sweep name>`")
    jobs = [load_job(d) for d in find_job_dirs(root)]
    gpus = _gpu_assignments(root)
    for job in jobs:
        job.gpus = gpus.get(job.path.name)
    return jobs


def swept_keys(jobs: list[JobResult]) -> list[str]:
    """Override keys whose value differs between jobs, in first-seen order."""
    seen: dict[str, set[str]] = {}
    for job in jobs:
        for key, value in job.override_values().items():
            seen.setdefault(key, set()).add(value)
    keys = [k for k, values in seen.items() if len(values) > 1]
    # A key set in some jobs and not in others also varies (its absence is a value).
    for key in seen:
        if key not in keys and any(key not in j.override_values() for j in jobs):
            keys.append(key)
    return keys
