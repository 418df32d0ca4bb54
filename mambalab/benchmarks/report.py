"""The benchmark's report: rich tables on the console, one JSON file for docs/performance.md."""
from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mambalab.training.run_dir import write_json_atomic


def _fmt(value, spec: str, empty: str = "-") -> str:
    return empty if value is None else format(value, spec)


def training_note(row: dict) -> str:
    """A trained row's note: "best" (the implementation's fastest batch) and "host-bound" (the
    host took about as long to issue a step as the device to run it: tokens/s then measures the
    host; a CUDA graph, "+graphs" rows and trainer.cuda_graphs, removes that cost)."""
    flags = (("best", row.get("best")), ("host-bound", row.get("host_bound")))
    return ", ".join(name for name, on in flags if on)


def training_table(rows: list[dict], peak_tflops: float, measured_peak_tflops: float) -> Table:
    table = Table(title="Training throughput (median step after warm-up)")
    for col in ("implementation", "batch", "tokens/s", f"MFU@{peak_tflops:g}",
                f"MFU@{measured_peak_tflops:g}", "step ms", "host ms", "peak GiB", "vs mamba_ssm",
                "note"):
        table.add_column(col, justify="left" if col in ("implementation", "note") else "right")
    for r in rows:
        ok = r.get("status") == "ok"
        note = training_note(r) if ok else f"{r['status']} (see below)"
        batch = f"{r.get('batch_size', '-')}x{r.get('seq_len', '-')}"
        ratio = r.get("ratio_to_mamba_ssm")
        table.add_row(escape(r["implementation"]), batch,
                      _fmt(r.get("tokens_per_s"), ",.0f"), _fmt(r.get("mfu"), ".1%"),
                      _fmt(r.get("mfu_measured_peak"), ".1%"), _fmt(r.get("step_ms"), ".1f"),
                      _fmt(r.get("host_ms"), ".1f"), _fmt(r.get("peak_mem_gib"), ".1f"),
                      "-" if ratio is None else f"{ratio:.2f}x", note)
    return table


def ops_table(rows: list[dict]) -> Table:
    table = Table(title="Ops: forward and forward+backward (device ms per call; host: the "
                        "host's ms for one forward+backward, the device idle at its start)")
    for col in ("op", "shape", "implementation", "fwd ms", "fwd+bwd ms", "host ms", "extra GiB",
                "note"):
        table.add_column(col, justify="right" if "ms" in col or "GiB" in col else "left")
    for r in rows:
        ok = r.get("status") == "ok"
        table.add_row(r["op"], r["shape"], escape(r["implementation"]),
                      _fmt(r.get("fwd_ms"), ".3f"),
                      _fmt(r.get("fwd_bwd_ms"), ".3f"), _fmt(r.get("host_ms"), ".3f"),
                      _fmt(r.get("peak_extra_gib"), ".2f"),
                      "" if ok else f"{r['status']} (see below)")
    return table


def profile_table(profile: dict) -> Table:
    table = Table(title=f"Step-time breakdown: {escape(profile['implementation'])} at "
                        f"{profile['batch_size']}x{profile['seq_len']} "
                        f"({profile['kernel_ms_per_step']:.1f} ms per step of "
                        f"{profile.get('measured', 'GPU kernel self time')})")
    for col in ("group", "ms/step", "share"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for g in profile["groups"]:
        table.add_row(g["group"], f"{g['ms_per_step']:.2f}", f"{g['share']:.1%}")
    return table


def top_kernels_table(profile: dict) -> Table:
    table = Table(title="Top kernels by GPU time")
    for col in ("kernel", "group", "ms/step", "calls/step", "share"):
        table.add_column(col, justify="left" if col in ("kernel", "group") else "right")
    for k in profile["top_kernels"]:
        table.add_row(escape(k["kernel"][:70]), k["group"], f"{k['ms_per_step']:.2f}",
                      str(k["calls_per_step"]), f"{k['share']:.1%}")
    return table


def _print_reasons(console: Console, rows: list[dict], label) -> None:
    """Why each row did not run: in full, under its table."""
    for r in rows:
        if r.get("status") != "ok":
            console.print(escape(f"  {label(r)}: {r['status']}: {r.get('reason', '')}"),
                          soft_wrap=True)


def print_report(result: dict, console: Console | None = None) -> None:
    # a log file is not a terminal: give the tables room instead of rich's 80 columns
    console = console or Console(width=None if Console().is_terminal else 160)
    env = result["environment"]
    console.print(f"[bold]{env['device_name']}[/bold]  torch {env['torch']}  "
                  f"triton {env.get('triton')}  mamba_ssm {env.get('mamba_ssm')}  "
                  f"model {result['config']['model']}  params {result.get('params') or '-'}")
    console.print(training_table(result["training"], result["config"]["peak_tflops"],
                                 result["config"]["measured_peak_tflops"]))
    _print_reasons(console, result["training"],
                   lambda r: f"{r['implementation']} {r['batch_size']}x{r['seq_len']}")
    if result.get("ops"):
        console.print(ops_table(result["ops"]))
        _print_reasons(console, result["ops"], lambda r: f"{r['op']} {r['implementation']}")
    if result.get("profile"):
        prof = result["profile"]
        if prof.get("status", "ok") == "ok":
            console.print(profile_table(prof))
            console.print(top_kernels_table(prof))
        else:
            console.print(f"profile: {prof['status']}: {prof.get('reason')}")


def write_json(result: dict, path: str) -> str:
    """Atomic write (a half-written report never replaces a good one); returns the path. An
    unwritable place or a full disk raises an OSError that names the path and the fix, and
    leaves no temporary file behind."""
    path = os.path.abspath(path)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json_atomic(Path(path), result)
    except OSError as e:
        raise OSError(e.errno, f"cannot write the benchmark report {path}: {e.strerror or e}; "
                      "point bench.out at a writable file with free space") from e
    return path
