"""run_benchmark: the ``_target_`` of conf/bench.yaml. Trains each implementation present for a
few steps at each batch size, optionally times the ops and profiles the fastest configuration,
prints the tables and writes the JSON report: after every training row and every part too, marked
``"partial"`` with the part that was running, so that a run cut off (a time limit, a crash, a
lost machine) keeps what it had measured."""
from __future__ import annotations

import copy
import importlib
import importlib.metadata
import logging
from typing import Callable

import torch

from mambalab.benchmarks.implementations import (ModelSize, graph_variants,
                                                 training_implementations)
from mambalab.benchmarks.report import print_report, write_json
from mambalab.benchmarks.train_bench import bench_training

log = logging.getLogger(__name__)

MIXED_PRECISION = ("bf16", "no")


def _version(module: str) -> str | None:
    """The installed version, or None when the module does not import."""
    try:
        mod = importlib.import_module(module)
    except Exception:
        return None
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return getattr(mod, "__version__", "installed")


def environment(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"device": str(device), "device_name": name, "torch": torch.__version__,
            "cuda": torch.version.cuda, "triton": _version("triton"),
            "mamba_ssm": _version("mamba_ssm"), "causal_conv1d": _version("causal_conv1d"),
            "transformers": _version("transformers"), "liger_kernel": _version("liger_kernel")}


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"bench.device={device}: torch sees no CUDA GPU; use bench.device=cpu "
                         "(tiny sizes only) or run on a GPU machine")
    return torch.device(device)


def _train_all(impls, batch_sizes, seq_len, vocab_size, device, warmup, steps, lr,
               mixed_precision, seed, reference_max_tokens, peak, measured_peak,
               on_row: Callable[[list[dict]], None] = lambda rows: None) -> list[dict]:
    """Every implementation at every batch size; ``on_row(rows)`` after each row."""
    rows: list[dict] = []
    for impl in impls:
        stop_reason = impl.skip_reason
        for batch in sorted(batch_sizes):
            tokens = batch * seq_len
            base = {"implementation": impl.name, "batch_size": batch, "seq_len": seq_len,
                    "tokens_per_step": tokens}
            if stop_reason is None and impl.slow and tokens > reference_max_tokens:
                stop_reason = (f"pure-PyTorch scan: skipped above bench.reference_max_tokens="
                               f"{reference_max_tokens} tokens per step")
            if stop_reason is not None:
                rows.append({**base, "status": "skipped", "reason": stop_reason})
                on_row(rows)
                continue
            log.info("training %s at batch %d x %d", impl.name, batch, seq_len)
            row = bench_training(impl, batch, seq_len, vocab_size, device, warmup, steps, lr,
                                 mixed_precision, seed)
            if row["status"] == "ok":
                flops = 6 * row["params"] * row["tokens_per_s"]
                row["mfu"] = flops / (peak * 1e12)
                row["mfu_measured_peak"] = flops / (measured_peak * 1e12)
            elif row["status"] == "oom":
                stop_reason = f"batch {batch} ran out of memory"
            rows.append(row)
            on_row(rows)
    return mark_best(rows)


def mark_best(rows: list[dict]) -> list[dict]:
    """Mark each implementation's fastest row ``best`` and give every row its ratio to
    mamba_ssm's best (where mamba_ssm trained); returns ``rows``."""
    best: dict[str, dict] = {}
    for row in rows:
        if row["status"] == "ok" and row["tokens_per_s"] > best.get(
                row["implementation"], {}).get("tokens_per_s", 0.0):
            best[row["implementation"]] = row
    for row in best.values():
        row["best"] = True
    reference = best.get("mamba_ssm")
    for row in rows:
        if row["status"] == "ok" and reference is not None:
            row["ratio_to_mamba_ssm"] = row["tokens_per_s"] / reference["tokens_per_s"]
    return rows


def run_benchmark(
    model_name: str = "mamba_130m",
    d_model: int = 768,
    n_layer: int = 24,
    vocab_size: int = 50280,
    d_state: int = 16,
    seq_len: int = 2048,
    batch_sizes: list[int] = (8, 16),
    implementations: list[str] = ("mambalab", "mamba_ssm", "hf", "hf_checkpointing"),
    kernels: list[str] = ("triton", "cuda", "reference"),
    cuda_graphs: list[bool] = (False,),
    warmup_steps: int = 3,
    steps: int = 10,
    lr: float = 3e-4,
    mixed_precision: str = "bf16",
    device: str = "auto",
    reference_max_tokens: int = 4096,
    peak_tflops: float = 989.4,
    measured_peak_tflops: float = 790.0,
    seed: int = 0,
    ops: bool = False,
    ops_batch: int = 8,
    ops_seq_len: int = 2048,
    ops_d_inner: int = 1536,
    ops_dt_rank: int = 48,
    ce_tokens: int = 16384,
    ops_warmup: int = 5,
    ops_reps: int = 20,
    profile: bool = False,
    profile_steps: int = 3,
    profile_top: int = 20,
    trace: str | None = None,
    out: str = "bench.json",
    print_tables: bool = True,
) -> dict:
    """Run the benchmark; returns the report (also written to ``out`` as JSON)."""
    config = dict(locals())   # the arguments as given, for the report
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"bench.mixed_precision={mixed_precision!r}: choose {MIXED_PRECISION}")
    if not batch_sizes or min(batch_sizes) < 1 or steps < 1 or warmup_steps < 0:
        raise ValueError("bench.batch_sizes must be a non-empty list of positive sizes, "
                         "bench.steps >= 1 and bench.warmup_steps >= 0")
    sizes = {"d_model": d_model, "n_layer": n_layer, "vocab_size": vocab_size,
             "d_state": d_state, "ops_batch": ops_batch, "ops_seq_len": ops_seq_len,
             "ops_d_inner": ops_d_inner, "ops_dt_rank": ops_dt_rank, "ce_tokens": ce_tokens,
             "ops_reps": ops_reps, "profile_steps": profile_steps}
    bad = [f"bench.{k}={v}" for k, v in sizes.items() if v < 1]
    if seq_len < 2:  # a step predicts tokens 2..L from 1..L-1
        bad.insert(0, f"bench.seq_len={seq_len} (at least 2)")
    if bad:
        raise ValueError(f"{', '.join(bad)}: these sizes must be positive; the defaults in "
                         "conf/bench.yaml are Mamba-130M's")
    dev = _resolve_device(device)
    size = ModelSize(d_model=d_model, n_layer=n_layer, vocab_size=vocab_size, d_state=d_state)
    config["batch_sizes"], config["implementations"] = list(batch_sizes), list(implementations)
    config["kernels"], config["model"] = list(kernels), model_name
    config["optimizer"] = "AdamW (fused on CUDA), lr %g, weight decay 0.1" % lr
    config["timing"] = "CUDA events per step, median of the timed steps after warm-up"
    result: dict = {"config": config, "environment": environment(dev)}

    if not cuda_graphs or any(not isinstance(g, bool) for g in cuda_graphs):
        raise ValueError(f"bench.cuda_graphs={list(cuda_graphs)}: a non-empty list of true/false, "
                         "e.g. [false, true] for each implementation eager and as a CUDA graph")
    config["cuda_graphs"] = list(cuda_graphs)
    impls = training_implementations(list(implementations), list(kernels), size, dev)
    impls = graph_variants(impls, list(cuda_graphs), dev)

    def partial(part: str) -> None:
        # what is measured so far, on disk: the part named was running when the run stopped
        write_json({**result, "partial": part}, out)

    def training_so_far(rows: list[dict]) -> None:
        result["training"] = mark_best(copy.deepcopy(rows))
        partial("training")

    training_so_far([])

    result["training"] = _train_all(impls, batch_sizes, seq_len, vocab_size, dev, warmup_steps,
                                    steps, lr, mixed_precision, seed, reference_max_tokens,
                                    peak_tflops, measured_peak_tflops, training_so_far)
    result["best"] = {r["implementation"]: r for r in result["training"] if r.get("best")}
    result["params"] = next((r["params"] for r in result["training"] if "params" in r), None)

    if ops:
        from mambalab.benchmarks.ops_bench import run_op_benchmarks

        partial("ops")
        result["ops"] = run_op_benchmarks(dev, ops_batch, ops_seq_len, d_model, ops_d_inner,
                                          d_state, ops_dt_rank, ce_tokens, vocab_size,
                                          ops_warmup, ops_reps, reference_max_tokens)
    if profile:
        partial("profile")
        result["profile"] = _profile_fastest(result, impls, seq_len, vocab_size, dev,
                                             warmup_steps, profile_steps, lr, mixed_precision,
                                             seed, profile_top, trace)
    path = write_json(result, out)
    if print_tables:
        print_report(result)
    log.info("wrote %s", path)
    return result


def _profile_fastest(result, impls, seq_len, vocab_size, dev, warmup, steps, lr,
                     mixed_precision, seed, top, trace) -> dict:
    from mambalab.benchmarks.profile import profile_training

    ok = [r for r in result["training"] if r["status"] == "ok"]
    if not ok:
        return {"status": "skipped", "reason": "no configuration trained successfully"}
    fastest = max(ok, key=lambda r: r["tokens_per_s"])
    impl = next(i for i in impls if i.name == fastest["implementation"])
    try:
        return {"status": "ok", **profile_training(impl, fastest["batch_size"], seq_len,
                                                   vocab_size, dev, warmup, steps, lr,
                                                   mixed_precision, seed, top, trace)}
    except Exception as exc:  # the profile is extra: the timings above still stand
        return {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
