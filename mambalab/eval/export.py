"""``python -m mambalab.export``: a checkpoint as an HF ``MambaForCausalLM`` folder with its tokenizer.

The conversion itself is ``mambalab.models.export_hf``; this module finds the checkpoint and its
tokenizer the way evaluation does, writes the folder, and checks that transformers loads it back
with the same logits.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from mambalab.eval.checkpoint import resolve_checkpoint
from mambalab.eval.loading import load_model, load_tokenizer

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def run_export(cfg: DictConfig) -> dict[str, Any]:
    """Export ``cfg.ckpt`` to ``cfg.out``; returns what was written and the logit check."""
    from mambalab.models import export_hf

    if cfg.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {cfg.dtype!r}")
    resolved = resolve_checkpoint(cfg.ckpt, cfg.which)
    tokenizer = load_tokenizer(cfg.tokenizer, resolved)
    if tokenizer is None:
        raise ValueError(f"{cfg.ckpt!r} is a synthetic-task model (no tokenizer); an HF folder "
                         f"without a tokenizer is not what lm_eval or transformers users expect")
    model = load_model(resolved, kernels="reference", which=cfg.which, device=torch.device("cpu"))
    model = model.to(DTYPES[cfg.dtype])
    out = Path(cfg.out).expanduser()
    export_hf(model, out, tokenizer=tokenizer)
    report: dict[str, Any] = {"ckpt": cfg.ckpt, "out": str(out), "dtype": cfg.dtype,
                              "tokenizer": getattr(tokenizer, "name", type(tokenizer).__name__),
                              "hf_tokenizer": (out / "tokenizer.json").is_file()}
    if not report["hf_tokenizer"]:
        log.warning("the tokenizer (%s) has no transformers format: the folder loads in "
                    "transformers, but lm_eval --model hf needs a tokenizer beside it "
                    "(pass tokenizer=gpt_neox ... if the model was trained with it)",
                    report["tokenizer"])
    if cfg.verify:
        report["max_abs_logit_diff"] = check_logits(model, out, vocab_size=int(tokenizer.vocab_size))
    log.info("Exported %s to %s (%s)", cfg.ckpt, out, report)
    return report


def check_logits(model: torch.nn.Module, folder: Path, vocab_size: int, length: int = 32) -> float:
    """Largest |logit difference| between ``model`` and the exported folder loaded by transformers
    on a fixed random sequence; raises if they disagree beyond rounding."""
    from transformers import MambaForCausalLM

    hf_model = MambaForCausalLM.from_pretrained(str(folder)).to(torch.float32).eval()
    ids = torch.randint(0, vocab_size, (1, length), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.float()(ids).logits.float()                       # (1, L, V)
        theirs = hf_model(ids).logits.float()                          # (1, L, V)
    diff = float((ours - theirs).abs().max())
    scale = float(ours.abs().max()) or 1.0
    if diff > 1e-3 * max(1.0, scale):
        raise RuntimeError(f"the exported folder {folder} does not reproduce the model: logits "
                           f"differ by up to {diff:.3g} (scale {scale:.3g})")
    return diff
