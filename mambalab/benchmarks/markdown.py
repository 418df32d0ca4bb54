"""Render a bench JSON report as the Markdown tables of docs/performance.md.

    python -m mambalab.benchmarks.markdown bench.json >> docs/performance.md
"""
from __future__ import annotations

import json
import sys


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def training_markdown(report: dict) -> str:
    cfg = report["config"]
    lines = [f"| implementation | batch | tokens/s | MFU (of {cfg['peak_tflops']:g}) | "
             f"MFU (of {cfg['measured_peak_tflops']:g}) | step ms | host ms | peak GiB | "
             "vs mamba_ssm | note |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in report["training"]:
        batch = f"{r['batch_size']}x{r['seq_len']}"
        name = r["implementation"] + (" (best)" if r.get("best") else "")
        if r["status"] != "ok":
            lines.append(f"| {name} | {batch} | {r['status']}: {r.get('reason', '')} "
                         "| | | | | | | |")
            continue
        ratio = r.get("ratio_to_mamba_ssm")
        lines.append(f"| {name} | {batch} | {r['tokens_per_s']:,.0f} | {r['mfu']:.1%} | "
                     f"{r['mfu_measured_peak']:.1%} | {r['step_ms']:.1f} | "
                     f"{_num(r.get('host_ms'), '.1f')} | {_num(r.get('peak_mem_gib'), '.1f')} | "
                     f"{'-' if ratio is None else format(ratio, '.2f') + 'x'} | "
                     f"{'host-bound' if r.get('host_bound') else ''} |")
    return "\n".join(lines)


def ops_markdown(report: dict) -> str:
    lines = ["| op | shape | implementation | fwd ms | fwd+bwd ms | host ms | extra GiB |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in report.get("ops") or []:
        if r["status"] != "ok":
            lines.append(f"| {r['op']} | {r['shape']} | {r['implementation']} | "
                         f"{r['status']}: {r.get('reason', '')} | | | |")
            continue
        lines.append(f"| {r['op']} | {r['shape']} | {r['implementation']} | {r['fwd_ms']:.3f} | "
                     f"{r['fwd_bwd_ms']:.3f} | {_num(r.get('host_ms'), '.3f')} | "
                     f"{_num(r.get('peak_extra_gib'), '.2f')} |")
    return "\n".join(lines)


def profile_markdown(report: dict) -> str:
    prof = report.get("profile") or {}
    if prof.get("status") != "ok":
        return f"(no profile: {prof.get('reason', 'run with bench.profile=true')})"
    lines = [f"{prof['implementation']} at {prof['batch_size']}x{prof['seq_len']}: "
             f"{prof['kernel_ms_per_step']:.1f} ms per step "
             f"({prof.get('measured', 'GPU kernel self time')}).",
             "",
             "| group | ms per step | share |", "| --- | ---: | ---: |"]
    lines += [f"| {g['group']} | {g['ms_per_step']:.2f} | {g['share']:.1%} |"
              for g in prof["groups"]]
    lines += ["", "| kernel | group | ms per step | calls per step | share |",
              "| --- | --- | ---: | ---: | ---: |"]
    lines += [f"| `{k['kernel'][:80]}` | {k['group']} | {k['ms_per_step']:.2f} | "
              f"{k['calls_per_step']} | {k['share']:.1%} |" for k in prof["top_kernels"]]
    return "\n".join(lines)


def report_markdown(report: dict) -> str:
    env = report["environment"]
    head = (f"Card: {env['device_name']}; torch {env['torch']} (CUDA {env['cuda']}), triton "
            f"{env['triton']}, mamba_ssm {env['mamba_ssm']}, causal_conv1d {env['causal_conv1d']}, "
            f"transformers {env['transformers']}, liger-kernel {env['liger_kernel']}.")
    if report.get("partial"):  # written before the run ended (runner.py)
        head += (f" **Partial report**: the run stopped during its {report['partial']} part; "
                 "what follows is what it had measured.")
    parts = [head, "", "### Training", "", training_markdown(report)]
    if report.get("ops"):
        parts += ["", "### Ops", "", ops_markdown(report)]
    if report.get("profile"):
        parts += ["", "### Profile", "", profile_markdown(report)]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m mambalab.benchmarks.markdown <bench.json>")
    try:
        with open(argv[0]) as f:
            report = json.load(f)
    except OSError as e:
        raise SystemExit(f"cannot read {argv[0]}: {e.strerror or e}; give the path of the JSON "
                         "that python -m mambalab.bench wrote (bench.out)") from e
    except json.JSONDecodeError as e:
        raise SystemExit(f"{argv[0]} is not a benchmark report ({e}); a report is the JSON that "
                         "python -m mambalab.bench writes (bench.out)") from e
    if not isinstance(report, dict) or "config" not in report:
        raise SystemExit(f"{argv[0]} is JSON but not a benchmark report (no \"config\"); a "
                         "report is what python -m mambalab.bench writes (bench.out)")
    sys.stdout.write(report_markdown(report))


if __name__ == "__main__":
    main()
