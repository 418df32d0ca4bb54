"""mambalab's own checkpoint format, and loading any supported checkpoint into a model.

A model directory holds ``model.safetensors`` and ``model_config.json``
(``{"target": "mambalab.models.build_mamba_lm", "kwargs": {...}}``). A run directory holds
``checkpoints/latest`` and ``checkpoints/best``: text files naming a step folder.
"""
from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "model_config.json"


def model_kwargs(model: nn.Module) -> tuple[str, dict]:
    """The (target, kwargs) that rebuild ``model``: every model class keeps its own."""
    if hasattr(model, "build_kwargs"):
        return model.build_target, dict(model.build_kwargs())
    kwargs = model.config.to_dict()
    return "mambalab.models.build_mamba_lm", kwargs


def _unique_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with each shared tensor once (safetensors refuses aliases): the tied
    lm_head.weight is dropped, as the embedding holds it."""
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        key = tensor.data_ptr() if tensor.numel() else id(tensor)
        if key in seen:
            continue
        seen.add(key)
        out[name] = tensor.detach().contiguous().cpu()
    return out


def save_model(model: nn.Module, directory: str | Path) -> Path:
    """Write ``model.safetensors`` and ``model_config.json`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target, kwargs = model_kwargs(model)
    kwargs.pop("init_from", None)  # the weights are here now
    save_file(_unique_state_dict(model), str(directory / MODEL_FILE), metadata={"format": "pt"})
    (directory / CONFIG_FILE).write_text(json.dumps({"target": target, "kwargs": kwargs},
                                                    indent=2) + "\n")
    return directory


def resolve_checkpoint_dir(path: Path, which: str = "latest") -> Path:
    """A model directory from a model, step, checkpoints or run directory."""
    if (path / CONFIG_FILE).is_file():
        return path
    for base in (path / "checkpoints", path):
        pointer = base / which
        if pointer.is_file():
            name = pointer.read_text().strip()
            step_dir = Path(name) if Path(name).is_absolute() else base / name
            if not (step_dir / CONFIG_FILE).is_file():
                raise FileNotFoundError(f"{pointer} names {step_dir}, which has no {CONFIG_FILE}")
            return step_dir
    raise FileNotFoundError(
        f"{path} is not a mambalab model directory ({CONFIG_FILE} + {MODEL_FILE}) nor a run "
        f"directory with checkpoints/{which}")


def build_from_config_file(directory: Path, kernels: str | None = None) -> nn.Module:
    spec = json.loads((directory / CONFIG_FILE).read_text())
    target = spec.get("target", "")
    if not target.startswith("mambalab.models."):
        raise ValueError(f"{directory / CONFIG_FILE}: target {target!r} is not a mambalab model")
    module_name, fn_name = target.rsplit(".", 1)
    build = getattr(importlib.import_module(module_name), fn_name)
    kwargs = dict(spec["kwargs"])
    kwargs.pop("init_from", None)
    if kernels is not None and "kernels" in inspect.signature(build).parameters:
        kwargs["kernels"] = kernels
    return build(**kwargs)


def load_mambalab_dir(path: Path, kernels: str | None = "auto", which: str = "latest") -> nn.Module:
    directory = resolve_checkpoint_dir(path, which)
    model = build_from_config_file(directory, kernels)
    load_state_dict_checked(model, load_file(str(directory / MODEL_FILE)), source=str(directory))
    return model


def load_state_dict_checked(model: nn.Module, state_dict: dict[str, torch.Tensor],
                            source: str) -> None:
    """Copy ``state_dict`` into ``model``; an unknown, missing or mis-shaped tensor is an error
    that names it. A tied lm_head may be absent (or present and equal to the embedding)."""
    own = model.state_dict()
    tied = {name for name, p in own.items()
            if any(p.data_ptr() == q.data_ptr() and name > other
                   for other, q in own.items() if other != name and p.numel())}
    unknown = sorted(set(state_dict) - set(own))
    missing = sorted(set(own) - set(state_dict) - tied)
    problems = [f"unknown tensor {name} {tuple(state_dict[name].shape)}" for name in unknown]
    problems += [f"missing tensor {name} {tuple(own[name].shape)}" for name in missing]
    for name, tensor in state_dict.items():
        if name in own and tuple(tensor.shape) != tuple(own[name].shape):
            problems.append(f"shape mismatch for {name}: checkpoint {tuple(tensor.shape)}, "
                            f"model {tuple(own[name].shape)}")
    if problems:
        raise ValueError(f"cannot load {source} into {type(model).__name__}:\n  "
                         + "\n  ".join(problems)
                         + "\n(check model.vocab_size / d_model / n_layer against the checkpoint)")
    for name in tied & set(state_dict):
        partner = next(o for o, q in own.items() if o != name and q.data_ptr() == own[name].data_ptr())
        if partner in state_dict and not torch.equal(state_dict[name], state_dict[partner]):
            raise ValueError(f"cannot load {source}: {name} differs from {partner}, but the model "
                             "ties them; build it with tie_embeddings=false")
    with torch.no_grad():
        for name, tensor in state_dict.items():
            if name not in tied:
                own[name].copy_(tensor)
