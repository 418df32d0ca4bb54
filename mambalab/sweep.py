"""`python -m mambalab.sweep multirun/<sweep>`: the summary of a sweep, on demand.

Prints the table (overrides, status, steps, tokens, best and final validation loss and perplexity,
tokens/s, wall time), writes `summary.csv` and `summary.png` into the sweep folder, lists the
jobs that did not complete, and exits 1 if there are any (0 with `--exit-zero`). Works while the
sweep is still running: unfinished jobs show as `running`.
"""
from __future__ import annotations

import argparse
import sys

from mambalab.sweeps.summary import summarize_sweep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mambalab.sweep", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", help="the sweep folder, e.g. multirun/wt103_mamba_130m")
    parser.add_argument("--no-files", action="store_true",
                        help="print only; do not write summary.csv and summary.png")
    parser.add_argument("--exit-zero", action="store_true",
                        help="exit 0 even when some jobs did not complete")
    args = parser.parse_args(argv)
    try:
        summary = summarize_sweep(args.sweep_dir, write_files=not args.no_files)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 1 if summary.unfinished and not args.exit_zero else 0


if __name__ == "__main__":
    sys.exit(main())
