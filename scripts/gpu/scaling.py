"""Data-parallel scaling efficiency from two run directories of the same config:

    python scripts/gpu/scaling.py RUN_1GPU RUN_NGPU [--skip-steps 20] [--out scaling.json]

efficiency = tok/s(N) / (N x tok/s(1)), N = the second run's world_size (summary.json). tok/s at
steady state is the median of the train events' `tok_per_s` (metrics.jsonl: all ranks' tokens per
second of each logging window, evaluation and checkpoints excluded) over windows ending after
--skip-steps (the first steps compile kernels and warm the allocator).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def steady_tok_per_s(run: Path, skip_steps: int) -> dict:
    metrics, summary = run / "metrics.jsonl", run / "summary.json"
    if not metrics.is_file() or not summary.is_file():
        raise ValueError(f"{run}: no metrics.jsonl/summary.json; pass a training run directory")
    info = json.loads(summary.read_text())
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    windows = [r["tok_per_s"] for r in rows
               if r.get("split") == "train" and r.get("step", 0) > skip_steps and r.get("tok_per_s")]
    if not windows:
        raise ValueError(f"{run}: no train events after step {skip_steps} (it reached step "
                         f"{info.get('step')}); lower --skip-steps or train longer")
    return {"run": str(run), "world_size": info.get("world_size", 1), "status": info.get("status"),
            "steps": info.get("step"), "tokens_per_step": info.get("tokens_per_step"),
            "tok_per_s": statistics.median(windows), "windows": len(windows),
            "mfu": next((r.get("mfu") for r in reversed(rows) if r.get("split") == "train"), None)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("single", type=Path, help="the 1-process run directory")
    parser.add_argument("multi", type=Path, help="the N-process run directory")
    parser.add_argument("--skip-steps", type=int, default=20)
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    try:
        one, many = (steady_tok_per_s(r, args.skip_steps) for r in (args.single, args.multi))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if one["world_size"] != 1:
        print(f"error: {args.single} ran on {one['world_size']} processes; the baseline must be 1",
              file=sys.stderr)
        return 2
    n = many["world_size"]
    result = {"single": one, "multi": many, "processes": n,
              "speedup": many["tok_per_s"] / one["tok_per_s"],
              "efficiency": many["tok_per_s"] / (n * one["tok_per_s"])}
    print(f"| processes | tokens/step | tok/s (median, steps > {args.skip_steps}) | MFU |\n"
          f"| ---: | ---: | ---: | ---: |")
    for r in (one, many):
        print(f"| {r['world_size']} | {r['tokens_per_step']:,} | {r['tok_per_s']:,.0f} | {r['mfu']} |")
    print(f"\nspeedup {result['speedup']:.2f}x on {n} processes; "
          f"scaling efficiency {100 * result['efficiency']:.1f}%")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
