"""A second model scored on the very same texts, with its own tokenizer.

Token perplexities of different tokenizers do not compare; per-document word perplexity and bits
per byte do (lm-evaluation-harness's reason for them), because the texts, their words and their
bytes are identical for both models.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
from omegaconf import DictConfig

from mambalab.eval.checkpoint import resolve_checkpoint
from mambalab.eval.documents import EvalDocument, retokenize
from mambalab.eval.loading import load_model, load_tokenizer
from mambalab.eval.runner import score_documents

log = logging.getLogger(__name__)


def evaluate_baseline(source: str, which: str, tokenizer_override: DictConfig | None,
                      fallback_tokenizer: Any, docs: Sequence[EvalDocument], modes: Sequence[str],
                      kernels: str, device: torch.device, seq_len: int, stride: int | None,
                      batch_size: int, precision: str) -> dict[str, Any]:
    """Load ``source``, re-tokenize ``docs``' texts with its tokenizer, score each per-document mode.

    Its tokenizer: ``baseline_tokenizer=`` if given, else its run's or its HF folder's; a mamba_ssm
    folder carries none, so it is assumed to share the evaluated model's tokenizer (reported).
    """
    resolved = resolve_checkpoint(source, which)
    try:
        tokenizer = load_tokenizer(tokenizer_override, resolved)
        tokenizer_note = getattr(tokenizer, "name", type(tokenizer).__name__)
    except ValueError:
        tokenizer, tokenizer_note = fallback_tokenizer, "same as the evaluated model (assumed)"
    if tokenizer is None:
        raise ValueError(f"baseline {source!r} is a synthetic-task model: it has no tokenizer")
    model = load_model(resolved, kernels=kernels, which=which, device=device)
    own_docs = retokenize(docs, tokenizer.encode)
    results = {}
    for mode in modes:
        if mode == "chunked":
            log.info("baseline: chunked mode is over each model's own token stream; "
                     "compared per document only (strided, streaming)")
            continue
        results[mode] = score_documents(model, own_docs, int(tokenizer.eos_id), mode, seq_len,
                                        stride, batch_size, device, precision)
    del model
    return {"ckpt": source, "name": resolved.name, "kind": resolved.kind,
            "tokenizer": tokenizer_note, "results": results}
