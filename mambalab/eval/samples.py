"""Samples: prompts (the starts of a split's documents, or given texts) continued by the model."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from mambalab.eval.documents import documents_from_data


def document_prompts(data: Any, split: str, count: int, prompt_tokens: int) -> list[list[int]]:
    """The first ``prompt_tokens`` ids of the split's first ``count`` documents."""
    prompts = []
    for doc in documents_from_data(data, split, max_documents=count):
        prompts.append(doc.ids[:prompt_tokens].tolist())
    if len(prompts) < count:
        raise ValueError(f"samples={count}, but split {split!r} has only {len(prompts)} documents")
    return prompts


def generate_samples(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[list[int]],
                     max_new_tokens: int, temperature: float, top_k: int | None,
                     top_p: float | None, seed: int, device: torch.device) -> list[dict[str, Any]]:
    """Decode each prompt with the recurrent state (``mambalab.models.generate``).

    Sample ``i`` uses seed ``seed + i``, so a sample is reproducible on its own.
    """
    from mambalab.models import generate

    out = []
    for i, prompt in enumerate(prompts):
        if not prompt:
            raise ValueError(f"prompt {i} is empty after tokenization: give it some text")
        prompt_ids = torch.tensor([prompt], dtype=torch.long, device=device)  # (1, L)
        eos_id = getattr(tokenizer, "eos_id", None)
        ids = generate(model, prompt_ids, max_new_tokens=max_new_tokens, temperature=temperature,
                       top_k=top_k, top_p=top_p, seed=seed + i, eos_id=eos_id)  # (1, L + new)
        new = ids[0, len(prompt):].tolist()
        if eos_id in new:  # the document ended: what follows is padding
            new = new[: new.index(eos_id)]
        out.append({"prompt": tokenizer.decode(prompt), "completion": tokenizer.decode(new),
                    "prompt_tokens": len(prompt), "new_tokens": len(new), "seed": seed + i,
                    "temperature": temperature, "top_k": top_k, "top_p": top_p})
    return out


def write_samples(samples: Sequence[dict[str, Any]], path: Path) -> None:
    with open(path, "w") as f:
        for sample in samples:
            f.write(json.dumps(sample, ensure_ascii=False) + "\n")
