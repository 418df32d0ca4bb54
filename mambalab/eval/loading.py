"""Build what an evaluation needs from ``ckpt=``: the model, its tokenizer and the data to score.

Data and tokenizer default to the training run's own (its resolved ``config.yaml``); ``data=`` and
``tokenizer=`` override them. Model folders without a run (HF, mamba_ssm, hub ids) carry their
tokenizer (HF) or need ``tokenizer=``; they always need ``data=``.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from mambalab.eval.checkpoint import ResolvedCheckpoint

log = logging.getLogger(__name__)

# The embedding is padded up to a multiple of 8 (mamba_ssm) or more: a model may have a few more
# rows than its tokenizer has ids, but many more means it was trained with another tokenizer.
_MAX_VOCAB_PADDING = 1024


def load_model(resolved: ResolvedCheckpoint, kernels: str, which: str,
               device: torch.device) -> torch.nn.Module:
    """The weights through ``mambalab.models.load_pretrained``, on ``device``, in eval mode."""
    from mambalab.models import load_pretrained

    log.info("Loading %s (%s) with kernels=%s", resolved.source, resolved.kind, kernels)
    if resolved.kind == "run":
        model = load_pretrained(resolved.path, kernels=kernels, which=which)
    else:
        model = load_pretrained(resolved.path, kernels=kernels)
    return model.to(device).eval()


def load_tokenizer(override: DictConfig | None, resolved: ResolvedCheckpoint) -> Any:
    """``tokenizer=`` if given, else the run's, else the model folder's own (HF), else an error."""
    if override is not None:
        return instantiate(override)
    if resolved.run_config is not None:
        node = resolved.run_config.get("tokenizer")
        return instantiate(node) if node is not None else None  # synthetic tasks have none
    if resolved.kind in ("hf", "hub"):
        from mambalab.data.tokenizers import HFTokenizer

        if resolved.kind == "hub":
            return HFTokenizer(name=resolved.path)
        return HFTokenizer(path=resolved.path)
    raise ValueError(f"{resolved.source!r} ({resolved.kind}) carries no tokenizer and no run "
                     f"config.yaml: pass one, e.g. tokenizer=gpt_neox "
                     f"tokenizer.path=/path/to/gpt-neox-20b/tokenizer.json")


def build_data(override: DictConfig | None, resolved: ResolvedCheckpoint, tokenizer: Any) -> Any:
    """``data=`` if given, else the run's data config; prepared (token cache built or reused)."""
    node = override
    if node is None and resolved.run_config is not None:
        node = resolved.run_config.get("data")
    if node is None:
        raise ValueError(f"{resolved.source!r} has no run config.yaml to take the data from: pass "
                         f"data=... (e.g. data=wikitext103, or data=text "
                         f"data.validation_files=/path/to/wiki.valid.raw)")
    data = instantiate(node, tokenizer=tokenizer)
    data.prepare()
    return data


def check_vocab(model: torch.nn.Module, data: Any, resolved: ResolvedCheckpoint) -> None:
    """A model must cover the data's ids, and not be sized for a much larger vocabulary."""
    rows = _embedding_rows(model)
    need = int(data.vocab_size)
    if rows is None:
        return
    if rows < need or rows >= need + _MAX_VOCAB_PADDING:
        tokenizer = getattr(data, "tokenizer", None)
        raise ValueError(
            f"checkpoint {resolved.source!r} does not match the data: its embedding has {rows} rows "
            f"but the data's tokenizer ({getattr(tokenizer, 'name', 'task')}) has {need} ids. "
            f"Evaluate with the tokenizer it was trained with (tokenizer=... / data=...), or check "
            f"that ckpt= names the model you meant")


def _embedding_rows(model: torch.nn.Module) -> int | None:
    get = getattr(model, "get_input_embeddings", None)
    if get is None and hasattr(model, "hf_model"):
        get = model.hf_model.get_input_embeddings
    if get is None:
        backbone = getattr(model, "backbone", None)
        embedding = getattr(backbone, "embedding", None) if backbone is not None else None
    else:
        embedding = get()
    return int(embedding.weight.shape[0]) if embedding is not None else None
