"""AdamW with parameter groups: no weight decay on biases, norms, embeddings, and what the model marks.

`conf/optimizer/adamw.yaml` is a `_partial_` node; the trainer calls it with the model.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def no_decay_names(model: nn.Module) -> set[str]:
    """Names of parameters that must not be decayed: 1-D tensors (biases, norm weights),
    embedding tables (the tied LM head included), and those carrying `_no_weight_decay = True`
    (Mamba's A_log and D)."""
    names: set[str] = set()
    embedding_params = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for name, p in model.named_parameters():
        if p.ndim < 2 or id(p) in embedding_params or getattr(p, "_no_weight_decay", False):
            names.add(name)
    return names


def build_adamw(model: nn.Module, lr: float, betas: list[float] | tuple[float, float] = (0.9, 0.95),
                eps: float = 1e-8, weight_decay: float = 0.1,
                fused: str | bool = "auto") -> torch.optim.AdamW:
    """fused: "auto" uses the fused CUDA kernel when every parameter is on a GPU."""
    skip = no_decay_names(model)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name in skip else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    on_cuda = all(p.is_cuda for p in decay + no_decay)
    use_fused = on_cuda if str(fused).lower() == "auto" else str(fused).lower() == "true"
    log.info("AdamW: %d tensors decayed (%d params), %d not (%d params); fused=%s",
             len(decay), sum(p.numel() for p in decay), len(no_decay),
             sum(p.numel() for p in no_decay), use_fused)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, fused=use_fused or None)
