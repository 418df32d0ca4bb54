"""Initialisation as mamba_ssm's MambaLMHeadModel (mamba_ssm.models.mixer_seq_simple._init_weights)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from mambalab.models.mixer import MambaMixer, reset_mixer_parameters


def init_mamba_lm_(model: nn.Module, n_layer: int, initializer_range: float = 0.02,
                   n_residuals_per_layer: int = 1) -> None:
    """Embedding N(0, 0.02); Linear biases zero (except dt_proj's); mixers as mamba_ssm's Mamba;
    out_proj kaiming-uniform(a=sqrt(5)) then / sqrt(n_residuals_per_layer * n_layer), GPT-2's
    scaling of residual branches, so the residual stream does not grow with depth."""
    for module in model.modules():
        if isinstance(module, MambaMixer):
            reset_mixer_parameters(module)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                if module.bias is not None and not getattr(module.bias, "_no_reinit", False):
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=initializer_range)
        for name, param in model.named_parameters():
            if name.endswith("out_proj.weight"):
                nn.init.kaiming_uniform_(param, a=math.sqrt(5))
                param /= math.sqrt(n_residuals_per_layer * n_layer)
