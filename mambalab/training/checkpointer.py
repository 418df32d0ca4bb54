"""Atomic, self-checking checkpoints: `checkpoints/step_XXXXXXXX/` + the `latest` and `best` pointers.

A step folder is complete only once `COMPLETE` exists; rank 0 writes it last, listing every file with
its size, after all ranks have written theirs. Only then is `latest` (a text file naming the folder)
replaced atomically. On resume the pointed-to folder is verified and loaded; if it is partial or
corrupt, that is reported and the next older complete folder is used.
"""
from __future__ import annotations

import json
import logging
import re
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mambalab.training.run_dir import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was required, or a folder that fails its checks."""


def _test_pause(step: int) -> None:
    """Test aid: MAMBALAB_TEST_PAUSE_SAVE="<step>:<seconds>" sleeps after the files of that step's
    checkpoint are written and before COMPLETE, so a test can kill a save half-way."""
    spec = os.environ.get("MAMBALAB_TEST_PAUSE_SAVE")
    if spec:
        at, seconds = spec.split(":")
        if int(at) == step:
            time.sleep(float(seconds))


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


class Checkpointer:
    """Saves and finds checkpoints of one run; `barrier` syncs ranks (no-op on one process)."""

    def __init__(self, root: Path, rank: int, world_size: int, keep_last: int,
                 barrier: Callable[[], None]) -> None:
        self.root = Path(root)
        self.rank = rank
        self.world_size = world_size
        self.keep_last = max(1, keep_last)
        self.barrier = barrier

    # --- save ---------------------------------------------------------------------------------
    def save(self, step: int, shared: dict[str, Callable[[Path], None]],
             per_rank: dict[str, Any], trainer_state: dict[str, Any]) -> Path:
        """shared: file stem -> writer(dir) run on rank 0 (model, optimizer, ...);
        per_rank: stem -> object saved as `<stem>_rank{r}.pt` by every rank (rng, loader)."""
        folder = self.root / step_dir_name(step)
        if self.rank == 0:
            if folder.exists():  # a partial folder from a crash, or a re-save: start it clean
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
        self.barrier()
        for stem, obj in per_rank.items():
            torch.save(obj, folder / f"{stem}_rank{self.rank}.pt")
        if self.rank == 0:
            for writer in shared.values():
                writer(folder)
            write_json_atomic(folder / "trainer_state.json",
                              {**trainer_state, "world_size": self.world_size})
        self.barrier()
        _test_pause(step)
        if self.rank == 0:
            files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
            write_json_atomic(folder / COMPLETE, {"step": step, "files": files})
            write_text_atomic(self.root / "latest", folder.name + "\n")
            self._retain()
        self.barrier()
        return folder

    def mark_best(self, folder: Path) -> None:
        if self.rank == 0:
            write_text_atomic(self.root / "best", folder.name + "\n")

    def _pointer(self, name: str) -> str | None:
        try:
            return (self.root / name).read_text().strip() or None
        except FileNotFoundError:
            return None

    def _retain(self) -> None:
        """Keep the newest `keep_last` complete folders and the best; drop the rest, partial ones
        older than the newest complete folder included."""
        folders = self.step_folders()
        complete = [f for f in folders if (f / COMPLETE).exists()]
        keep = {f.name for f in complete[: self.keep_last]}
        best = self._pointer("best")
        if best:
            keep.add(best)
        newest = complete[0].name if complete else None
        for f in folders:
            if f.name in keep or newest is None or f.name > newest:
                continue
            shutil.rmtree(f, ignore_errors=True)

    # --- find and verify ----------------------------------------------------------------------
    def step_folders(self) -> list[Path]:
        """All step folders, newest first."""
        if not self.root.is_dir():
            return []
        return sorted((p for p in self.root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)),
                      key=lambda p: p.name, reverse=True)

    def verify(self, folder: Path) -> str | None:
        """None if `folder` is a complete checkpoint usable by this world size, else why not."""
        marker = folder / COMPLETE
        if not marker.exists():
            return "partial (no COMPLETE marker: the save was interrupted)"
        try:
            listed = json.loads(marker.read_text())["files"]
        except (json.JSONDecodeError, KeyError) as exc:
            return f"unreadable COMPLETE marker ({exc})"
        for name, size in listed.items():
            p = folder / name
            if not p.exists():
                return f"{name} is missing"
            if p.stat().st_size != size:
                return f"{name} has {p.stat().st_size} bytes, {size} were written"
        state = json.loads((folder / "trainer_state.json").read_text())
        if state.get("world_size") != self.world_size:
            return (f"saved by {state.get('world_size')} processes, this run has {self.world_size} "
                    "(resume with the same trainer.num_processes)")
        return None

    def load_latest(self, loader: Callable[[Path], Any]) -> tuple[Path, Any] | None:
        """Try the step folders newest first: verify each, then `loader(folder)` (which must raise
        on a corrupt file before changing any state). A newer folder that fails (a save killed
        half-way, a truncated file) is reported and skipped. Returns (folder, loader's result)."""
        latest = self._pointer("latest")
        for folder in self.step_folders():
            problem = self.verify(folder)
            if problem is None:
                try:
                    result = loader(folder)
                except Exception as exc:  # a file that passes the size check but does not load
                    problem = f"failed to load: {type(exc).__name__}: {exc}"
                else:
                    if latest and latest != folder.name:
                        log.warning("checkpoints/latest names %s; resuming from %s instead",
                                    latest, folder.name)
                    return folder, result
            log.warning("checkpoint %s is not usable: %s; trying the previous one", folder, problem)
        return None
