"""The scan forward with some decays from fast_math.exp2_poly (FFMAs) instead of MUFU ex2, on one
GPU: agreement with the MUFU forward (y and the saved states) and times, as the mixer runs it.

    PYTHONPATH=.:$PYTHONPATH python3 scripts/soft_exp_check.py [--out DIR] [--soft 0,4,8,16]

For each SOFT (states of 16 whose decay is the polynomial's) and B in --batches: the forward
(saving fp16 states, the mixer's segments) timed with triton.testing.do_bench (median, ms), and
y's and the states' largest difference over SOFT=0's largest magnitude. Writes soft_exp.json.
The backward's variant (selective_scan_gluon_bwd.CONFIG["soft_exp"]) is timed by
gluon_bwd_check.py.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import triton

from mambalab.ops.triton import selective_scan as ss
from mambalab.ops.triton.selective_scan_lanes_fwd import lanes_fwd_launch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_scan import inputs  # noqa: E402  (the mixer's views)

DIM, N, L = 1536, 16, 2048


def forward(x, soft: int, docs=None):
    y, _, states = lanes_fwd_launch(
        u=x["u"], delta=x["delta"], A=x["A"], B=x["B"], C=x["C"], D=x["D"], z=x["z"],
        delta_bias=x["delta_bias"], delta_softplus=True, initial_state=None, doc_starts=docs,
        save_states=True, return_last_state=False, chunk=8, num_warps=1,
        states_dtype=torch.float16, segments=ss.CONFIG["lanes_fwd_segments"], soft_exp=soft)
    return y, states


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    if not torch.isfinite(a).all():
        return float("inf")
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--soft", default="0,4,8,16")
    ap.add_argument("--batches", default="8,32")
    args = ap.parse_args()
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "triton", triton.__version__)
    rows: dict = {"checks": {}, "times": {}}
    ok = True
    softs = [int(s) for s in args.soft.split(",")]
    for batch in (int(b) for b in args.batches.split(",")):
        x = inputs(batch, DIM, N, L, torch.bfloat16, dbl=True, seed=batch)
        docs = (torch.rand(batch, L, device="cuda") < 0.003).to(torch.uint8)
        for with_docs in (False, True):
            y0, s0 = forward(x, 0, docs if with_docs else None)
            for soft in softs[1:] if softs[0] == 0 else softs:
                y, s = forward(x, soft, docs if with_docs else None)
                errs = {"y": rel(y, y0), "states": rel(s, s0)}
                ok &= max(errs.values()) < 1e-2
                rows["checks"][f"B={batch} soft={soft} docs={with_docs}"] = errs
                print(f"check B={batch} soft={soft} docs={with_docs}: y {errs['y']:.2e} "
                      f"states {errs['states']:.2e}", flush=True)
        for soft in softs:
            ms = triton.testing.do_bench(lambda x=x, s=soft: forward(x, s), warmup=50, rep=300)
            rows["times"][f"B={batch} soft={soft}"] = ms
            print(f"time B={batch} forward soft={soft}: {ms:.3f} ms", flush=True)
        del x
        torch.cuda.empty_cache()
    with open(os.path.join(args.out, "soft_exp.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
