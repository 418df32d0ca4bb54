"""Which GPUs a sweep's jobs run on: the visible devices, cut into one group per concurrent job,
and a per-process claim on one group that lasts the life of the worker process.

Why per process and not per job index: joblib's loky workers are reused, so one worker runs job 0
and later job 3; CUDA reads `CUDA_VISIBLE_DEVICES` once, when the process first initialises it,
so a worker can never move to another GPU. Each worker therefore claims a free group the first
time it runs a job (an exclusive `flock` on `<sweep dir>/.gpu_slots/slot_<i>.lock`, released by
the OS when the worker exits) and keeps it, so at most one job runs on each group at a time.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

_claimed: tuple[int, int] | None = None   # (slot index, open lock fd) of this process


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as `CUDA_VISIBLE_DEVICES` entries (ids or UUIDs)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    import torch
    # device_count() asks NVML first, which does not initialise CUDA in this (parent) process.
    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_groups(gpus: list[str], gpus_per_job: int) -> list[list[str]]:
    """Consecutive groups of `gpus_per_job` devices; the remainder, if any, is left unused."""
    if gpus_per_job < 1:
        raise ValueError(f"hydra.launcher.gpus_per_job={gpus_per_job}: must be >= 1 "
                         "(set hydra.launcher.gpus=[] to run the jobs without GPU assignment)")
    if gpus and gpus_per_job > len(gpus):
        raise ValueError(f"hydra.launcher.gpus_per_job={gpus_per_job} but only {len(gpus)} GPUs "
                         f"are visible ({','.join(gpus)}): lower gpus_per_job or "
                         "trainer.num_processes")
    return [gpus[i:i + gpus_per_job] for i in range(0, len(gpus) - gpus_per_job + 1, gpus_per_job)]


def claim_slot(slot_dir: Path, n_slots: int, timeout_s: float = 600.0) -> int:
    """This process's slot index, claiming a free one on the first call (waits while all are held)."""
    global _claimed
    if _claimed is not None:
        return _claimed[0]
    slot_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        for index in range(n_slots):
            fd = os.open(slot_dir / f"slot_{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            _claimed = (index, fd)
            return index
        # Every slot held: a worker of a previous batch has not exited yet. Wait for it.
        if time.monotonic() > deadline:
            raise RuntimeError(f"no free GPU slot in {slot_dir} after {timeout_s:.0f} s: another "
                               "process of this sweep holds every GPU group; is the same sweep "
                               "running twice?")
        time.sleep(0.5)


def assign_devices(devices: list[str]) -> None:
    """Point this process at `devices`, refusing if CUDA was already set up on other ones."""
    wanted = ",".join(devices)
    torch = sys.modules.get("torch")   # only if already imported: importing it here costs time
    if torch is not None and torch.cuda.is_initialized() and \
            os.environ.get("CUDA_VISIBLE_DEVICES") != wanted:
        raise RuntimeError(
            f"CUDA was initialised in this worker (pid {os.getpid()}) before its GPUs were "
            f"assigned; it cannot move to CUDA_VISIBLE_DEVICES={wanted}. Something touched CUDA "
            "at import time (a module-level torch.cuda call): move it into the task.")
    os.environ["CUDA_VISIBLE_DEVICES"] = wanted


def record_assignment(sweep_dir: Path, job_num: int, job_dir: str, devices: list[str]) -> None:
    """Append one line to `<sweep dir>/gpu_assignment.jsonl` (the summary's `gpus` column)."""
    record = {"job_num": job_num, "job_dir": job_dir, "cuda_visible_devices": ",".join(devices),
              "pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}
    # One write of a short line with O_APPEND: concurrent workers do not interleave.
    fd = os.open(sweep_dir / "gpu_assignment.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)
