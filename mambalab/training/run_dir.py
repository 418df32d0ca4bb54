"""A run's directory: the lock that keeps a second process out, `summary.json`, `config.yaml`."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

SUMMARY = "summary.json"
LOCK = ".lock"


class RunLockedError(RuntimeError):
    """Another live process holds the run directory."""


def write_text_atomic(path: Path, text: str) -> None:
    """Write text so that a reader never sees half a file (tmp + fsync + rename); a write that
    fails (a full disk) removes its temporary file and raises."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """write_text_atomic of ``obj`` as indented JSON."""
    write_text_atomic(path, json.dumps(obj, indent=2, default=str))


class RunDir:
    """The folder of one run. Rank 0 holds its lock from start to exit."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).resolve()
        self._lock_fd: int | None = None

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    # --- lock ---------------------------------------------------------------------------------
    def acquire_lock(self) -> None:
        """Take an exclusive fcntl lock on `<run>/.lock`; the kernel drops it if we die."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "unknown process"
            os.close(fd)
            raise RunLockedError(
                f"run directory {self.path} is in use by {holder}; wait for it to finish, stop it, "
                "or run with different overrides (a different run directory)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self._lock_fd = fd

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- summary ------------------------------------------------------------------------------
    def read_summary(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.path / SUMMARY).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path / SUMMARY, summary)

    def update_summary(self, **fields: Any) -> dict[str, Any]:
        summary = self.read_summary() or {}
        summary.update(fields)
        self.write_summary(summary)
        return summary

    def is_completed(self) -> bool:
        return (self.read_summary() or {}).get("status") == "completed"

    # --- fresh start --------------------------------------------------------------------------
    def clear_run_state(self) -> list[str]:
        """trainer.resume=false: remove what a previous attempt left (checkpoints, metrics,
        summary, logger folders), keeping Hydra's own files. Returns what was removed."""
        removed = []
        for name in ("checkpoints", "metrics.jsonl", SUMMARY, "tensorboard", "wandb", "samples.jsonl"):
            p = self.path / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
            else:
                continue
            removed.append(name)
        return removed
