"""What goes into a checkpoint, and how it comes back: the trainer's side of the Checkpointer.

Files of `checkpoints/step_XXXXXXXX/` (docs/architecture.md): model.safetensors + model_config.json
(`save_model`), optimizer.pt, scheduler.pt, scaler.pt (fp16), rng_rank{r}.pt, loader_rank{r}.pt,
trainer_state.json, COMPLETE. With FSDP the optimizer state is sharded: optimizer_rank{r}.pt.
`read` loads everything into memory first and raises on any bad file, so that a corrupt checkpoint
is rejected before the model or optimizer is touched; `apply` then restores it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from mambalab.models.checkpoint import (CONFIG_FILE, MODEL_FILE, load_state_dict_checked, model_kwargs,
                                        save_model)
from mambalab.training.cuda_graph import portable_scheduler_state, portable_state_dict
from mambalab.training.rng import rng_state, set_rng_state
from mambalab.training.state import TrainState

if TYPE_CHECKING:
    from mambalab.training.trainer import Trainer


def _fsdp(trainer: Trainer) -> bool:
    return trainer.config.strategy == "fsdp" and trainer.world_size > 1


def save(trainer: Trainer, step: int) -> Path:
    """Every rank calls this (collective)."""
    acc = trainer.accelerator
    per_rank: dict[str, Any] = {"rng": rng_state(), "loader": trainer.loader.state_dict()}
    full_model_state = None
    if _fsdp(trainer):
        # Gathering the full weights is collective; only rank 0 receives them.
        full_model_state = acc.get_state_dict(trainer.model)
        per_rank["optimizer"] = trainer.optimizer.state_dict()

    def write_model(folder: Path) -> None:
        if full_model_state is None:
            save_model(trainer.unwrapped_model, folder)
            return
        # FSDP: the module holds shards; write the gathered weights in save_model's format.
        seen, unique = set(), {}
        for name, t in full_model_state.items():
            if t.data_ptr() not in seen:  # the tied lm_head once, as save_model does
                seen.add(t.data_ptr())
                unique[name] = t.contiguous().cpu()
        save_file(unique, str(folder / MODEL_FILE), metadata={"format": "pt"})
        target, kwargs = model_kwargs(trainer.unwrapped_model)
        kwargs.pop("init_from", None)
        (folder / CONFIG_FILE).write_text(json.dumps({"target": target, "kwargs": kwargs}, indent=2) + "\n")

    shared = {"model": write_model}
    if not _fsdp(trainer):
        # lr as a float and capturable off whether or not CUDA graphs changed them (cuda_graph.py)
        shared["optimizer"] = lambda f: torch.save(portable_state_dict(trainer.optimizer),
                                                   f / "optimizer.pt")
    shared["scheduler"] = lambda f: torch.save(portable_scheduler_state(trainer.scheduler),
                                               f / "scheduler.pt")
    if acc.scaler is not None:
        shared["scaler"] = lambda f: torch.save(acc.scaler.state_dict(), f / "scaler.pt")
    return trainer.checkpointer.save(step, shared, per_rank, trainer.state.to_dict())


def read(trainer: Trainer, folder: Path) -> dict[str, Any]:
    """Load every file this rank needs into memory; raises if one is unreadable."""
    r = trainer.rank
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{folder / CONFIG_FILE} is missing")
    opt_file = folder / (f"optimizer_rank{r}.pt" if _fsdp(trainer) else "optimizer.pt")
    loaded = {
        "model": load_file(str(folder / MODEL_FILE)),
        "optimizer": torch.load(opt_file, map_location="cpu", weights_only=False),
        "scheduler": torch.load(folder / "scheduler.pt", weights_only=False),
        "rng": torch.load(folder / f"rng_rank{r}.pt", weights_only=False),
        "loader": torch.load(folder / f"loader_rank{r}.pt", weights_only=False),
        "state": json.loads((folder / "trainer_state.json").read_text()),
    }
    if trainer.accelerator.scaler is not None and (folder / "scaler.pt").exists():
        loaded["scaler"] = torch.load(folder / "scaler.pt", weights_only=False)
    return loaded


def apply(trainer: Trainer, loaded: dict[str, Any]) -> None:
    if _fsdp(trainer):
        from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp import StateDictType

        with FSDP.state_dict_type(trainer.model, StateDictType.FULL_STATE_DICT,
                                  FullStateDictConfig(offload_to_cpu=True, rank0_only=False)):
            trainer.model.load_state_dict(loaded["model"], strict=False)
    else:
        load_state_dict_checked(trainer.unwrapped_model, loaded["model"], source="checkpoint")
    trainer.optimizer.load_state_dict(loaded["optimizer"])
    trainer.scheduler.load_state_dict(loaded["scheduler"])
    if "scaler" in loaded:
        trainer.accelerator.scaler.load_state_dict(loaded["scaler"])
    trainer.loader.load_state_dict(loaded["loader"])
    set_rng_state(loaded["rng"])
    trainer.state = TrainState.from_dict(loaded["state"])
