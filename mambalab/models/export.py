"""Export to transformers' MambaForCausalLM format (config.json + weights)."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from mambalab.models.config import NORM_EPS


def hf_config_kwargs(config) -> dict:
    """transformers.MambaConfig kwargs equal to a mambalab MambaConfig. The vocabulary is the
    padded one: HF has no padding, the embedding is simply that large."""
    return dict(hidden_size=config.d_model, state_size=config.d_state,
                num_hidden_layers=config.n_layer, vocab_size=config.padded_vocab_size,
                expand=config.expand, conv_kernel=config.d_conv,
                intermediate_size=config.d_inner, time_step_rank=config.dt_rank_value,
                use_bias=False, use_conv_bias=True, hidden_act="silu",
                residual_in_fp32=config.residual_in_fp32, layer_norm_epsilon=NORM_EPS,
                tie_word_embeddings=config.tie_embeddings)


def mambalab_to_hf_names(state_dict: dict) -> dict:
    return {name.replace("backbone.embedding.", "backbone.embeddings.", 1): t
            for name, t in state_dict.items()}


def export_hf(model: nn.Module, out_dir: str | Path, tokenizer=None) -> Path:
    """Write a folder that ``MambaForCausalLM.from_pretrained(out_dir)`` loads with equal logits;
    with ``tokenizer``, also its files (``tokenizer.save_pretrained(out_dir)``)."""
    import torch
    from transformers import MambaConfig as HFMambaConfig
    from transformers import MambaForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "hf_model"):           # already an HF model (mambalab.models.hf.HFMambaLM)
        hf_model = model.hf_model
    else:
        kwargs = hf_config_kwargs(model.config)
        eos = getattr(tokenizer, "eos_id", None)
        if eos is not None:
            kwargs.update(eos_token_id=eos, bos_token_id=eos, pad_token_id=eos)
        with torch.device("meta"):           # no point initialising weights we overwrite
            hf_model = MambaForCausalLM(HFMambaConfig(**kwargs))
        state = mambalab_to_hf_names({k: v.detach().cpu() for k, v in model.state_dict().items()})
        hf_model.load_state_dict(state, strict=True, assign=True)
        if model.config.tie_embeddings:
            hf_model.tie_weights()
    hf_model.save_pretrained(out_dir)
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    return out_dir
