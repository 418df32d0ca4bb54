"""Which GPUs a sweep's jobs run on: the visible devices cut into groups (one group per job), and
a claim on a group held by the worker process while its job runs.

Why claims and not the job's index: joblib's loky workers are reused (one worker runs job 0 and
later job 3, in any order), and CUDA reads `CUDA_VISIBLE_DEVICES` once, when the process first
initialises it, so a worker can never move to another GPU. A worker therefore claims a free group
for its first job (an exclusive `flock` on `<sweep dir>/.gpu_slots/slot_<i>.lock`, which the OS
drops if the worker dies), stays bound to that group, and re-claims the same group for its later
jobs. At most one job runs on a group at a time; extra workers wait for a group to come free.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

_bound_group: int | None = None   # the group this process's CUDA belongs to, after its first job
_held_fd: int | None = None       # the lock of the group while a job runs


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as `CUDA_VISIBLE_DEVICES` entries (ids or UUIDs)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    import torch
    # device_count() asks NVML first, which does not initialise CUDA in this (parent) process.
    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_groups(gpus: list[str], gpus_per_job: int) -> list[list[str]]:
    """Consecutive groups of `gpus_per_job` devices; a remainder too small for a job is unused."""
    if gpus_per_job < 1:
        raise ValueError(f"gpus_per_job={gpus_per_job}: must be >= 1")
    if gpus and gpus_per_job > len(gpus):
        raise ValueError(f"each job needs {gpus_per_job} GPUs (trainer.num_processes) but only "
                         f"{len(gpus)} are visible ({','.join(gpus)}): lower "
                         "trainer.num_processes, or run on a machine with more GPUs")
    return [gpus[i:i + gpus_per_job] for i in range(0, len(gpus) - gpus_per_job + 1, gpus_per_job)]


def acquire_group(slot_dir: Path, n_groups: int, poll_s: float = 0.5) -> int:
    """Claim a GPU group for this process's next job, waiting while the ones it may take are held.

    A process that already ran a job may only take its own group back (its CUDA is bound to it).
    """
    global _bound_group, _held_fd
    if _held_fd is not None:   # claimed already for this job (see GpuAssignmentCallback)
        return _bound_group
    slot_dir.mkdir(parents=True, exist_ok=True)
    candidates = [_bound_group] if _bound_group is not None else list(range(n_groups))
    while True:
        for index in candidates:
            fd = os.open(slot_dir / f"slot_{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode())
            _held_fd, _bound_group = fd, index
            return index
        # Every group this process may use is busy with another job: wait for one to finish.
        time.sleep(poll_s)


def release_group() -> None:
    global _held_fd
    if _held_fd is not None:
        fcntl.flock(_held_fd, fcntl.LOCK_UN)
        os.close(_held_fd)
        _held_fd = None


def _cuda_driver_loaded() -> bool:
    """Whether the CUDA driver library is mapped into this process: any CUDA runtime call (even
    `torch.cuda.is_available()` without NVML) loads it and runs cuInit, which reads
    CUDA_VISIBLE_DEVICES once; torch.cuda.is_initialized() does not see that."""
    try:
        return "libcuda.so" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def assign_devices(devices: list[str]) -> None:
    """Point this process at `devices`, refusing if CUDA was already set up on other ones."""
    wanted = ",".join(devices)
    if os.environ.get("CUDA_VISIBLE_DEVICES") == wanted:
        return
    torch = sys.modules.get("torch")   # only if imported already: importing it here costs time
    if (torch is not None and torch.cuda.is_initialized()) or _cuda_driver_loaded():
        raise RuntimeError(
            f"CUDA was initialised in this worker (pid {os.getpid()}) before its GPUs were "
            f"assigned, so it cannot move to CUDA_VISIBLE_DEVICES={wanted}. Something touched CUDA "
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
