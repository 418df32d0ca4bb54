"""Check and time the scan backward with its sums on the tensor cores (selective_scan_mma_bwd.py)
against the Triton lanes backward and the Gluon one, on one GPU, from the same forward's saved
states (the mixer's views, as scripts/gluon_bwd_check.py).

    PYTHONPATH=.:$PYTHONPATH python3 scripts/mma_bwd_check.py [--out DIR] [--variants a,b]

1. Agreement with the Triton kernel (fp32 sums) at D=1536, N=16, L=2048: B=2 with document
   starts, an initial state and the last state's gradient, in one segment and in three; B=8
   plain. Each output's largest difference over the reference's largest magnitude, for the
   Gluon kernel (its error is the yardstick: bf16 outputs) and the mma kernel.
2. Times (triton.testing.do_bench medians, ms) at B=8 and 32: Triton, Gluon, mma per VARIANTS.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import triton

from mambalab.ops.triton import selective_scan_mma_bwd as mma_bwd
from mambalab.ops.triton.selective_scan_lanes_bwd import lanes_bwd_launch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_scan import inputs  # noqa: E402
from gluon_bwd_check import DIM, L, N, compare, forward  # noqa: E402

VARIANTS = {  # mma_bwd.CONFIG, and "segments" at B=8 (1 or 2: a list, each timed)
    "default": dict(pipe=True, maxnreg=None, decay_again=True, segments=[1]),
    "decays kept": dict(pipe=True, maxnreg=None, decay_again=False, segments=[1]),
    "maxnreg 200": dict(pipe=True, maxnreg=200, decay_again=True, segments=[1, 2]),
    "maxnreg 168": dict(pipe=True, maxnreg=168, decay_again=True, segments=[1, 2]),
}


def configure(v: str) -> None:
    mma_bwd.CONFIG.update({k: e for k, e in VARIANTS[v].items() if k != "segments"})


def backward(x, states, dy, *, kind: str, segments, docs=None, dlast=None):
    batch = x["u"].shape[0]
    out = {k: torch.empty((batch, DIM, L), device="cuda", dtype=x["u"].dtype)
           for k in ("du", "ddelta", "dz")}
    return lanes_bwd_launch(
        dy=dy, u=x["u"], delta=x["delta"], A=x["A"], B=x["B"], C=x["C"], D=x["D"], z=x["z"],
        delta_bias=x["delta_bias"], delta_softplus=True, doc_starts=docs, states=states,
        dlast_state=dlast, chunk=8, num_warps=1, pipeline=1, partials_16bit=True,
        segments=segments, use_gluon=kind != "triton", use_mma=kind == "mma",
        wave_warps_per_sm=8, **out)


def check(batch: int, docs: bool, segments: int) -> dict:
    x = inputs(batch, DIM, N, L, torch.bfloat16, dbl=True, seed=batch)
    g = torch.Generator(device="cuda").manual_seed(7)
    d = h0 = dl = None
    if docs:
        d = torch.rand(batch, L, device="cuda", generator=g) < 0.003
        d[:, 0] = True
        d = d.to(torch.uint8)
        h0 = torch.randn(batch, DIM, N, device="cuda", generator=g)
        dl = torch.randn(batch, DIM, N, device="cuda", generator=g)
    states = forward(x, d, h0)
    dy = torch.randn(batch, DIM, L, device="cuda", generator=g).to(torch.bfloat16)
    ref = backward(x, states, dy, kind="triton", segments=1, docs=d, dlast=dl)
    out = {}
    for kind in ("gluon", "mma"):
        got = backward(x, states, dy, kind=kind, segments=segments, docs=d, dlast=dl)
        out[kind] = compare(got, ref)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--batches", default="8,32")
    args = ap.parse_args()
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "triton", triton.__version__)
    rows = {"checks": {}, "times": {}}
    ok = True
    variants = args.variants.split(",")
    checks = [("B2 docs h0 dlast, 1 segment", dict(batch=2, docs=True, segments=1)),
              ("B2 docs h0 dlast, 3 segments", dict(batch=2, docs=True, segments=3)),
              ("B8 plain", dict(batch=8, docs=False, segments=1))]
    for vi, v in enumerate(variants):
        configure(v)
        for name, kw in (checks if vi == 0 else checks[::2]):
            try:
                errs = check(**kw)
            except Exception as e:  # noqa: BLE001 - a failing variant is a result
                print(f"check {v}: {name}: {type(e).__name__}: {str(e)[:2000]}", flush=True)
                ok = False
                continue
            rows["checks"][f"{v}: {name}"] = errs
            for kind, e in errs.items():
                worst = max(e.values())
                ok &= worst < 2e-2
                print(f"check {v}: {name}: {kind} worst {worst:.2e} ::",
                      " ".join(f"{k} {x:.1e}" for k, x in e.items()), flush=True)
    for batch in (int(b) for b in args.batches.split(",")):
        x = inputs(batch, DIM, N, L, torch.bfloat16, dbl=True, seed=1)
        states = forward(x)
        dy = torch.randn(batch, DIM, L, device="cuda").to(torch.bfloat16)
        cases = [("triton", None, "triton", "auto"), ("gluon", None, "gluon", 1)]
        cases += [(f"mma {v} segments={seg}", v, "mma", seg) for v in variants
                  for seg in (VARIANTS[v]["segments"] if batch <= 8 else [1])]
        for name, v, kind, seg in cases:
            if v is not None:
                configure(v)
            try:
                ms = triton.testing.do_bench(
                    lambda: backward(x, states, dy, kind=kind, segments=seg), warmup=50, rep=300)
            except Exception as e:  # noqa: BLE001
                ms = float("nan")
                print(f"  {name}: {type(e).__name__}: {str(e)[:300]}")
            rows["times"][f"B={batch} {name}"] = ms
            print(f"time B={batch} {name}: {ms:.3f} ms", flush=True)
    with open(os.path.join(args.out, "mma_bwd.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
