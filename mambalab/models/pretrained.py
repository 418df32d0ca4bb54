"""Load Mamba-1 weights from HF, mamba_ssm or mambalab checkpoints (folders or hub ids)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
import torch.nn as nn

from mambalab.models.build import build_mamba_lm
from mambalab.models.checkpoint import (CONFIG_FILE, load_mambalab_dir, load_state_dict_checked,
                                        resolve_checkpoint_dir)
from mambalab.hub import local_files_only
from mambalab.models.config import NORM_EPS

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_offline() -> bool:
    """Offline by choice (HF_HUB_OFFLINE), or the hub cannot be reached: the local cache only."""
    from huggingface_hub import constants

    return local_files_only() or bool(getattr(constants, "HF_HUB_OFFLINE", False))


def download_hub(repo_id: str) -> Path:
    """A local snapshot of ``repo_id``; offline, only the local cache, failing at once."""
    from huggingface_hub import snapshot_download

    offline = hub_offline()
    try:
        return Path(snapshot_download(repo_id, local_files_only=offline,
                                      allow_patterns=["*.json", "*.safetensors", "*.bin", "*.txt"]))
    except Exception as exc:
        why = ("the hub is offline (HF_HUB_OFFLINE=1) or unreachable, and it is not in the local cache"
               if offline else f"the download failed ({type(exc).__name__}: {exc})")
        raise FileNotFoundError(
            f"cannot load {repo_id!r}: it is not a local path, and as a hub id {why}. Fix: give "
            "a local folder, or download it where there is network (huggingface-cli download "
            f"{repo_id}) and point HF_HOME at that cache") from exc


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a folder: model.safetensors (or shards), else pytorch_model.bin (or shards)."""
    from safetensors.torch import load_file

    for index_name, loader in (("model.safetensors.index.json", load_file),
                               ("pytorch_model.bin.index.json", _torch_load)):
        index = directory / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            out: dict[str, torch.Tensor] = {}
            for shard in shards:
                out.update(loader(str(directory / shard)))
            return out
    if (directory / "model.safetensors").is_file():
        return load_file(str(directory / "model.safetensors"))
    if (directory / "pytorch_model.bin").is_file():
        return _torch_load(str(directory / "pytorch_model.bin"))
    raise FileNotFoundError(f"{directory} holds no model.safetensors nor pytorch_model.bin")


def _torch_load(path: str) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def _require(ok: bool, source: Path, message: str) -> None:
    if not ok:
        raise ValueError(f"{source / 'config.json'}: {message}")


def hf_kwargs(cfg: dict, source: Path) -> dict:
    """build_mamba_lm kwargs from an HF MambaConfig dict."""
    _require(not cfg.get("use_bias", False), source, "use_bias=true is not supported")
    _require(cfg.get("use_conv_bias", True), source, "use_conv_bias=false is not supported")
    _require(cfg.get("hidden_act", "silu") == "silu", source, "only hidden_act=silu is supported")
    eps = cfg.get("layer_norm_epsilon", NORM_EPS)
    _require(abs(eps - NORM_EPS) < 1e-12, source, f"layer_norm_epsilon={eps}; mambalab uses {NORM_EPS}")
    vocab = cfg["vocab_size"]
    return dict(d_model=cfg["hidden_size"], n_layer=cfg["num_hidden_layers"], vocab_size=vocab,
                d_state=cfg.get("state_size", 16), d_conv=cfg.get("conv_kernel", 4),
                expand=cfg.get("expand", 2), dt_rank=cfg.get("time_step_rank", "auto"),
                residual_in_fp32=cfg.get("residual_in_fp32", True),
                pad_vocab_size_multiple=8 if vocab % 8 == 0 else 1,
                tie_embeddings=cfg.get("tie_word_embeddings", True))


def hf_to_mambalab_names(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name.replace("backbone.embeddings.", "backbone.embedding.", 1): t
            for name, t in state_dict.items()}


def mamba_ssm_kwargs(cfg: dict, source: Path) -> dict:
    """build_mamba_lm kwargs from a mamba_ssm MambaConfig dict (config.json)."""
    ssm = dict(cfg.get("ssm_cfg") or {})
    _require(ssm.pop("layer", "Mamba1") == "Mamba1", source, "only Mamba-1 layers are supported")
    _require(not cfg.get("attn_layer_idx"), source, "attention layers are not supported")
    _require(not cfg.get("d_intermediate", 0), source, "d_intermediate (MLP) is not supported")
    _require(ssm.pop("bias", False) is False, source, "ssm_cfg.bias=true is not supported")
    _require(ssm.pop("conv_bias", True) is True, source, "ssm_cfg.conv_bias=false is not supported")
    return dict(d_model=cfg["d_model"], n_layer=cfg["n_layer"], vocab_size=cfg["vocab_size"],
                d_state=ssm.get("d_state", 16), d_conv=ssm.get("d_conv", 4),
                expand=ssm.get("expand", 2), dt_rank=ssm.get("dt_rank", "auto"),
                rms_norm=cfg.get("rms_norm", True),
                residual_in_fp32=cfg.get("residual_in_fp32", True),
                pad_vocab_size_multiple=cfg.get("pad_vocab_size_multiple", 8),
                tie_embeddings=cfg.get("tie_embeddings", True))


def read_foreign(directory: Path) -> tuple[dict, dict[str, torch.Tensor], str]:
    """(build kwargs, state dict in mambalab names, format name) of an HF or mamba_ssm folder."""
    cfg = json.loads((directory / "config.json").read_text())
    if cfg.get("model_type") == "mamba" or "hidden_size" in cfg:
        return hf_kwargs(cfg, directory), hf_to_mambalab_names(read_weights(directory)), "hf"
    if "d_model" in cfg and "n_layer" in cfg:
        return mamba_ssm_kwargs(cfg, directory), read_weights(directory), "mamba_ssm"
    raise ValueError(f"{directory / 'config.json'} is neither an HF MambaConfig (model_type "
                     "'mamba') nor a mamba_ssm config (d_model, n_layer)")


def locate(path_or_hub_id: str | os.PathLike) -> Path:
    path = Path(path_or_hub_id).expanduser()
    if path.exists():
        return path
    if _HUB_ID.match(str(path_or_hub_id)):
        return download_hub(str(path_or_hub_id))
    raise FileNotFoundError(f"{path_or_hub_id} does not exist (nor is it a hub id 'org/name')")


def load_pretrained(path_or_hub_id: str | os.PathLike, kernels: str = "auto",
                    which: str = "latest") -> nn.Module:
    """A model from an HF MambaForCausalLM folder or hub id, a mamba_ssm folder, a mambalab
    model/step directory, or a run directory (``checkpoints/<which>``, which = latest | best)."""
    path = locate(path_or_hub_id)
    if (path / "config.json").is_file() and not (path / CONFIG_FILE).is_file():
        kwargs, state_dict, fmt = read_foreign(path)
        model = build_mamba_lm(**kwargs, kernels=kernels)
        load_state_dict_checked(model, state_dict, source=f"{path} ({fmt} format)")
        return model
    return load_mambalab_dir(path, kernels=kernels, which=which)


def load_weights_into(model: nn.Module, path_or_hub_id: str | os.PathLike,
                      which: str = "latest") -> None:
    """Copy a checkpoint's weights into an already built model (fine-tuning's ``init_from``)."""
    from safetensors.torch import load_file

    path = locate(path_or_hub_id)
    if (path / "config.json").is_file() and not (path / CONFIG_FILE).is_file():
        _, state_dict, fmt = read_foreign(path)
        source = f"{path} ({fmt} format)"
    else:
        directory = resolve_checkpoint_dir(path, which)
        state_dict, source = load_file(str(directory / "model.safetensors")), str(directory)
    load_state_dict_checked(model, state_dict, source=source)
