"""Sampling from a Mamba LM by its recurrence: one prefill forward, then one step per token."""
from __future__ import annotations

import torch


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """logits (B, V) with everything outside the top-k / nucleus set to -inf."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]           # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # Drop a token when the tokens before it already reach top_p (the first always stays).
        drop_sorted = (cum - torch.softmax(sorted_logits, dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


@torch.no_grad()
def generate(model, prompt_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
             eos_id: int | None = None) -> torch.Tensor:
    """prompt_ids (B, L_prompt) -> (B, L_prompt + max_new_tokens); temperature 0 is greedy.

    The prompt runs once through ``model.hidden_states`` carrying the recurrent state, then each
    new token costs one ``model.step``: memory stays O(1) in the generated length. Rows that
    emitted ``eos_id`` keep emitting it; generation stops early when every row has.
    """
    if prompt_ids.dim() != 2 or prompt_ids.shape[1] < 1:
        raise ValueError(f"prompt_ids must be (B, L) with L >= 1, got {tuple(prompt_ids.shape)}")
    if hasattr(model, "hf_model") and not hasattr(model, "allocate_state"):
        return _generate_hf(model.hf_model, prompt_ids, max_new_tokens, temperature, top_k, top_p,
                            seed, eos_id)
    if not hasattr(model, "allocate_state"):
        raise TypeError(f"{type(model).__name__} has no recurrent state; generate needs a MambaLM")
    was_training = model.training
    model.eval()
    device = prompt_ids.device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    state = model.allocate_state(prompt_ids.shape[0], device=device)
    hidden = model.hidden_states(prompt_ids, state=state)[:, -1]           # (B, d)
    logits = model.lm_head(hidden).float()                                # (B, V)
    vocab = model.config.vocab_size  # never sample the padding rows of the embedding
    out = [prompt_ids]
    done = torch.zeros(prompt_ids.shape[0], dtype=torch.bool, device=device)
    for i in range(max_new_tokens):
        logits = logits[:, :vocab]
        if temperature <= 0:
            token = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        if eos_id is not None:
            token = torch.where(done, torch.full_like(token, eos_id), token)
            done |= token == eos_id
        out.append(token[:, None])
        if eos_id is not None and bool(done.all()):
            break
        if i + 1 < max_new_tokens:
            logits = model.step(token, state).float()
    model.train(was_training)
    return torch.cat(out, dim=1)


def _generate_hf(hf_model, prompt_ids, max_new_tokens, temperature, top_k, top_p, seed, eos_id):
    """HFMambaLM: transformers' own generate (it also decodes from the recurrent cache)."""
    sample = temperature > 0
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=sample, use_cache=True,
                  pad_token_id=eos_id if eos_id is not None else 0,
                  eos_token_id=eos_id, attention_mask=torch.ones_like(prompt_ids))
    if sample:
        kwargs.update(temperature=temperature, top_k=top_k or 0, top_p=top_p or 1.0)
    devices = [prompt_ids.device] if prompt_ids.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)
        return hf_model.generate(prompt_ids, **kwargs)
