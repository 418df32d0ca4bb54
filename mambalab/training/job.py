"""One Hydra job around the training function: validation, the run directory (skip if completed,
lock, fresh start), worker launch for trainer.num_processes, and what a failure leaves behind.

In a multirun (a sweep) a job's exception must not stop the sweep: it is recorded in the job's
summary.json ({"status": "failed", "error": ...}) and the job returns; the sweep's callback reports
failed jobs and sets the exit code. In a single run the exception propagates (non-zero exit).
"""
from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mambalab.config import TrainerConfig, validate_targets
from mambalab.training.console import print_config_tree
from mambalab.training.distributed import (PARENT_HOLDS_LOCK, end_process_group, env_rank, launch_workers,
                                           launched_world_size)
from mambalab.training.run_dir import RunDir, RunLockedError
from mambalab.training.trainer import TrainingInterrupted

log = logging.getLogger(__name__)

# Arguments the entry point passes at instantiation, not the YAML (see validate_targets).
RUNTIME_ARGS = {"data": ["tokenizer"], "model": ["vocab_size"]}

# trainer.interrupt_at_step exits with EX_TEMPFAIL ("try again": re-run to resume); signals 128+n.
EXIT_INTERRUPTED = 75


def _interrupted_exit_code(reason: str | None) -> int:
    signum = {"SIGTERM": 15, "SIGINT": 2}.get(reason or "")
    return 128 + signum if signum else EXIT_INTERRUPTED


def _more_time(summary: dict[str, Any], trainer_cfg: TrainerConfig) -> bool:
    """A run that its time budget ended, short of its step limit, continues when given more time
    (a larger trainer.max_time_s than the one that ended it and than the time it trained, or
    none). The budget that ended it counts, not only the time: with several processes the
    summary holds rank 0's clock, and the rank whose clock spent the budget may have been
    another, so rank 0's time can be a little under the budget that stopped the run."""
    if summary.get("stopped_by") != "max_time_s" or summary.get("step", 0) >= (summary.get("total_steps") or 0):
        return False
    spent = max(summary.get("train_time_s") or 0.0, summary.get("max_time_s") or 0.0)
    return trainer_cfg.max_time_s is None or trainer_cfg.max_time_s > spent


def _is_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # not under Hydra (tests calling run_job directly)
        return False


def run_job(cfg: DictConfig, train_fn: Callable[[DictConfig, TrainerConfig, RunDir], dict[str, Any]],
            run_dir: str | None = None) -> dict[str, Any] | None:
    """Run `train_fn(cfg, trainer_config, run_dir)` as one job; returns its summary."""
    rank = env_rank()
    if rank == 0:
        print_config_tree(cfg)
    else:  # only rank 0 logs progress; the others speak up for warnings and errors
        logging.getLogger().setLevel(logging.WARNING)
    run = RunDir(run_dir or HydraConfig.get().runtime.output_dir)
    multirun = _is_multirun()
    try:
        validate_targets(cfg, provided=RUNTIME_ARGS)
        trainer_cfg: TrainerConfig = instantiate(cfg.trainer, _convert_="all")
    except Exception as exc:
        if not multirun:
            raise  # before any work: nothing is written
        log.error("job %s has an invalid config; the sweep goes on:\n%s", run.path, exc)
        if rank == 0:
            run.update_summary(status="failed", error=f"{type(exc).__name__}: {exc}")
        return run.read_summary()
    locked_here = False
    try:
        if trainer_cfg.resume != "false" and run.is_completed():
            if _more_time(run.read_summary() or {}, trainer_cfg):
                log.info("%s ended at its trainer.max_time_s; resuming it with the budget now "
                         "given (%s s)", run.path, trainer_cfg.max_time_s)
            else:
                print(f"{run.path}: already completed (summary.json); skipping. "
                      "Use trainer.resume=false to train it again.", flush=True)
                return run.read_summary()
        if rank == 0 and PARENT_HOLDS_LOCK not in os.environ:
            run.acquire_lock()
            locked_here = True
        if rank == 0:
            if trainer_cfg.resume == "false" and PARENT_HOLDS_LOCK not in os.environ:
                removed = run.clear_run_state()
                if removed:
                    log.info("trainer.resume=false: removed %s from %s", ", ".join(removed), run.path)
            (run.path / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        world = launched_world_size()
        if trainer_cfg.num_processes > 1 and world == 1:
            code = launch_workers(trainer_cfg.num_processes, run.path,
                                  list(HydraConfig.get().overrides.task))
            summary = run.read_summary() or {}
            if code != 0 and summary.get("status") == "interrupted":  # checkpointed: re-run resumes
                reason = summary.get("interrupted_by")
                if multirun and reason == "trainer.interrupt_at_step":
                    return summary
                sys.exit(_interrupted_exit_code(reason))
            if code != 0:
                raise RuntimeError(f"{trainer_cfg.num_processes} workers exited with code {code}; "
                                   f"their logs are above and in {run.path}")
            return summary
        if trainer_cfg.num_processes > 1 and world != trainer_cfg.num_processes:
            raise ValueError(f"trainer.num_processes={trainer_cfg.num_processes} but the launcher "
                             f"started {world} processes; make them agree (or leave the default 1 "
                             "with accelerate launch)")
        return train_fn(cfg, trainer_cfg, run)
    except TrainingInterrupted as exc:
        log.warning("%s", exc)
        if multirun and exc.reason == "trainer.interrupt_at_step":
            return run.read_summary()
        sys.exit(_interrupted_exit_code(exc.reason))
    except Exception as exc:
        if rank == 0 and not isinstance(exc, RunLockedError):  # a locked dir is another's
            summary = run.read_summary() or {}
            if summary.get("status") != "failed":  # the trainer records its own failures
                run.update_summary(status="failed", error=f"{type(exc).__name__}: {exc}")
        if not multirun:
            raise
        log.error("job %s failed; the sweep goes on:\n%s", run.path, traceback.format_exc())
        return run.read_summary()
    finally:
        if locked_here:
            run.release_lock()
        if launched_world_size() > 1:  # a worker runs one job: its process group ends with it
            end_process_group()
