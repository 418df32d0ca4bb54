"""Time the Gluon scan backward with parts of its work left out (selective_scan_gluon_bwd
CONFIG["ablate"], a bit mask; the results are wrong, only the times mean anything): where its
time goes when the kernel is latency-bound and its instruction count is not the measure.

    PYTHONPATH=.:$PYTHONPATH python3 scripts/gluon_ablate.py [--out DIR] [--masks 0,1,2]

Bits: 1 no recomputation of the chunk's states; 2 no dB/dC terms (no shared-memory sums over
channels); 4 the reverse pass's decay without its exponential; 8 no sums over the states. Times
are triton.testing.do_bench medians (ms) at B=8 and 32, one launch, one segment.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import triton

from mambalab.ops.triton import selective_scan_gluon_bwd as gluon_bwd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_scan import inputs  # noqa: E402
from gluon_bwd_check import DIM, L, N, backward, forward  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--masks", default="0,1,2,4,8,10,11,15,0")
    ap.add_argument("--batches", default="8,32")
    args = ap.parse_args()
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "triton", triton.__version__)
    times = {}
    for batch in (int(b) for b in args.batches.split(",")):
        x = inputs(batch, DIM, N, L, torch.bfloat16, dbl=True, seed=1)
        states = forward(x)
        dy = torch.randn(batch, DIM, L, device="cuda").to(torch.bfloat16)
        for mask in (int(m) for m in args.masks.split(",")):
            gluon_bwd.CONFIG["ablate"] = mask
            ms = triton.testing.do_bench(
                lambda: backward(x, states, dy, gluon=True, segments=1, wave=None),
                warmup=50, rep=300)
            times.setdefault(f"B={batch} ablate={mask}", []).append(ms)
            print(f"time B={batch} ablate={mask}: {ms:.3f} ms", flush=True)
    gluon_bwd.CONFIG["ablate"] = 0
    with open(os.path.join(args.out, "gluon_ablate.json"), "w") as f:
        json.dump(times, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
