"""The evaluate app: load ``ckpt=``, score it as configured, print tables, write metrics.json.

``mambalab/evaluate.py`` only composes the config and calls ``run_evaluation``.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from mambalab.eval.baseline import evaluate_baseline
from mambalab.eval.checkpoint import ResolvedCheckpoint, resolve_checkpoint
from mambalab.eval.documents import EvalDocument, documents_from_data
from mambalab.eval.loading import build_data, check_vocab, load_model, load_tokenizer
from mambalab.eval.report import lm_table, print_tables, samples_table, task_table, write_metrics
from mambalab.eval.runner import autocast, check_precision, score_documents, timed
from mambalab.eval.samples import document_prompts, generate_samples, write_samples
from mambalab.eval.split import MODES, evaluate_split
from mambalab.eval.tasks import evaluate_task_lengths

log = logging.getLogger(__name__)


def run_evaluation(cfg: DictConfig) -> dict[str, Any]:
    """Everything ``python -m mambalab.evaluate`` does; returns the report written to metrics.json."""
    check_precision(cfg.precision)
    modes = parse_modes(cfg.mode)
    resolved = resolve_checkpoint(cfg.ckpt, cfg.which)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = load_tokenizer(cfg.tokenizer, resolved)
    data = build_data(cfg.data, resolved, tokenizer)
    model = load_model(resolved, kernels=cfg.kernels, which=cfg.which, device=device)
    check_vocab(model, data, resolved)
    out_dir = output_dir(cfg.out, resolved)
    report = _header(cfg, resolved, model, device, modes)
    tables = []
    if getattr(data, "metric", "perplexity") == "accuracy":
        report["task"], table = _evaluate_task(cfg, model, data, device)
        tables.append(table)
    else:
        report["results"], report["baseline"], table = _evaluate_lm(cfg, model, data, tokenizer,
                                                                     resolved, modes, device)
        tables.append(table)
    if cfg.samples or cfg.prompts:
        out_dir.mkdir(parents=True, exist_ok=True)
        samples = _samples(cfg, model, data, tokenizer, device)
        write_samples(samples, out_dir / "samples.jsonl")
        report["samples"] = str(out_dir / "samples.jsonl")
        tables.append(samples_table(samples))
    path = write_metrics(report, out_dir)
    print_tables(*tables)
    log.info("Wrote %s", path)
    return report


def parse_modes(mode: Any) -> list[str]:
    modes = list(mode) if isinstance(mode, (list, tuple, ListConfig)) else [str(mode)]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"mode={bad or mode} : each mode must be one of {MODES} "
                         f"(a list works too: mode=[chunked,streaming])")
    return modes


def output_dir(out: str | None, resolved: ResolvedCheckpoint) -> Path:
    """``out=``, else the run's own directory, else outputs/evaluate/<model name>."""
    if out:
        return Path(out).expanduser()
    if resolved.run_dir is not None:
        return resolved.run_dir
    return Path("outputs") / "evaluate" / re.sub(r"[^\w.-]+", "_", resolved.name)


def _header(cfg: DictConfig, resolved: ResolvedCheckpoint, model: torch.nn.Module,
            device: torch.device, modes: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "ckpt": resolved.source, "kind": resolved.kind, "which": cfg.which, "split": cfg.split,
        "modes": modes, "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else "cpu", "precision": cfg.precision if device.type == "cuda" else "fp32",
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    kernel_report = getattr(model, "kernel_report", None)
    if callable(kernel_report):
        report["kernels"] = kernel_report()
    return report


def _evaluate_lm(cfg: DictConfig, model: torch.nn.Module, data: Any, tokenizer: Any,
                 resolved: ResolvedCheckpoint, modes: list[str],
                 device: torch.device) -> tuple[dict, dict | None, Any]:
    seq_len = int(cfg.seq_len or data.seq_len)
    batch_size = int(cfg.batch_size or getattr(data, "eval_batch_size", None) or data.batch_size)
    docs: list[EvalDocument] | None = None
    results, rows = {}, []
    if device.type == "cuda" and cfg.warmup:
        docs = _documents(data, cfg.split, cfg.max_documents)
        _warm_up(cfg, model, data, docs, int(tokenizer.eos_id), modes, device, seq_len, batch_size)
    for mode in modes:
        if mode == "chunked":
            results[mode] = timed(device, cfg.precision, lambda: evaluate_split(
                model, data, cfg.split, mode="chunked", max_batches=cfg.max_batches,
                device=device, seq_len=seq_len))
            _note_split_fraction(results[mode], data, cfg.split, cfg.max_batches)
        else:
            docs = docs if docs is not None else _documents(data, cfg.split, cfg.max_documents)
            results[mode] = score_documents(model, docs, int(tokenizer.eos_id), mode, seq_len,
                                            cfg.stride, batch_size, device, cfg.precision)
        rows.append((resolved.name, mode, results[mode]))
    baseline = None
    if cfg.baseline:
        docs = docs if docs is not None else _documents(data, cfg.split, cfg.max_documents)
        per_document = [m for m in modes if m != "chunked"] or ["streaming"]
        baseline = evaluate_baseline(cfg.baseline, cfg.baseline_which, cfg.baseline_tokenizer,
                                     tokenizer, docs, per_document, cfg.kernels, device, seq_len,
                                     cfg.stride, batch_size, cfg.precision)
        rows += [(f"{baseline['name']} (baseline)", mode, metrics)
                 for mode, metrics in baseline["results"].items()]
    title = f"{resolved.name}: {cfg.split} (seq_len {seq_len})"
    return results, baseline, lm_table(rows, title)


def _note_split_fraction(metrics: dict[str, Any], data: Any, split: str,
                         max_batches: int | None) -> None:
    """Record which fraction of the split's stream chunked mode scored, and say when it is not all:
    a run's data config may cap evaluation (data.max_eval_batches) for training's sake."""
    stats = data.split_stats(split)
    if not stats.get("stream_tokens"):
        return
    fraction = metrics["tokens"] / (stats["stream_tokens"] - 1)
    metrics["split_fraction"] = fraction
    if fraction < 0.999:
        log.warning("chunked mode scored %.1f%% of %s (max_batches=%s, data.max_eval_batches=%s); "
                    "its word ppl and bits/byte are estimates: pass data.max_eval_batches=null "
                    "for the whole split", 100 * fraction, split, max_batches,
                    getattr(data, "max_eval_batches", None))


def _warm_up(cfg: DictConfig, model: torch.nn.Module, data: Any, docs: list[EvalDocument],
             prefix_id: int, modes: list[str], device: torch.device, seq_len: int,
             batch_size: int) -> None:
    """Run each mode once on a few documents, untimed, so that CUDA start-up and Triton's
    compilation and autotuning do not count in the timed pass (its shapes are the same)."""
    for mode in modes:
        if mode == "chunked":
            timed(device, cfg.precision, lambda: evaluate_split(
                model, data, cfg.split, mode="chunked", max_batches=1, device=device,
                seq_len=seq_len))
        else:
            longest = sorted(docs, key=lambda d: -len(d.ids))[:batch_size]
            score_documents(model, longest, prefix_id, mode, seq_len, cfg.stride, batch_size,
                            device, cfg.precision)


def _documents(data: Any, split: str, max_documents: int | None) -> list[EvalDocument]:
    docs = list(documents_from_data(data, split, max_documents))
    if not docs:
        raise ValueError(f"split {split!r} has no documents to evaluate")
    return docs


def _evaluate_task(cfg: DictConfig, model: torch.nn.Module, data: Any,
                   device: torch.device) -> tuple[dict, Any]:
    lengths = list(cfg.eval_lengths or getattr(data, "eval_lengths", None) or [])
    with autocast(device, cfg.precision):
        results = evaluate_task_lengths(model, data, cfg.split, lengths,
                                        chunk_len=int(cfg.chunk_len or 16384),
                                        max_batches=cfg.max_batches, device=device,
                                        batch_size=cfg.batch_size)
    title = f"{getattr(data, 'task', 'task')}: accuracy (trained at {data.seq_len})"
    return {str(length): metrics for length, metrics in results.items()}, task_table(results, title)


def _samples(cfg: DictConfig, model: torch.nn.Module, data: Any, tokenizer: Any,
             device: torch.device) -> list[dict[str, Any]]:
    if tokenizer is None:
        raise ValueError("samples= and prompts= need a text model; this is a synthetic task")
    if cfg.prompts:
        prompts = [tokenizer.encode(text) for text in cfg.prompts]
    else:
        prompts = document_prompts(data, cfg.split, int(cfg.samples), int(cfg.prompt_tokens))
    with autocast(device, cfg.precision):
        return generate_samples(model, tokenizer, prompts, max_new_tokens=int(cfg.max_new_tokens),
                                temperature=float(cfg.temperature), top_k=cfg.top_k,
                                top_p=cfg.top_p, seed=int(cfg.seed), device=device)
