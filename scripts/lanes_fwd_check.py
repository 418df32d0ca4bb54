"""Variants of the lanes scan forward on one GPU, as the mixer runs it: agreement with the first
variant (y and the saved states) and times.

    PYTHONPATH=.:$PYTHONPATH python3 scripts/lanes_fwd_check.py [--out DIR] [--batches 8,32] \
        [--variants "maxnreg=0;maxnreg=auto;maxnreg=168 segments=1;pipe=0"]

A variant sets lanes_fwd_launch's ``pipe`` (1: each chunk's loads a chunk ahead, 0: none;
CONFIG's by default), ``segments`` (time segments: an int or auto, CONFIG's by default) and
``maxnreg`` (ptxas's register cap: an int, 0 for ptxas's own choice, or auto; CONFIG's by
default). For each B
in --batches: the forward saving fp16 states, timed with triton.testing.do_bench (median, ms),
and y's and the states' largest difference over the first variant's largest magnitude, with and
without document starts. Writes lanes_fwd.json; exits 1 if a variant disagrees by 1e-2 or more.
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


def parse(variant: str) -> dict:
    out = {"pipe": int(ss.CONFIG["lanes_pipeline"]), "segments": ss.CONFIG["lanes_fwd_segments"],
           "maxnreg": ss.CONFIG["lanes_fwd_maxnreg"]}
    for item in variant.split():
        key, value = item.split("=")
        if key not in out:
            raise SystemExit(f"unknown variant key {key!r} in {variant!r}: pipe, segments, maxnreg")
        out[key] = value if value == "auto" else int(value)
    return out


def forward(x, v: dict, docs=None):
    y, _, states = lanes_fwd_launch(
        u=x["u"], delta=x["delta"], A=x["A"], B=x["B"], C=x["C"], D=x["D"], z=x["z"],
        delta_bias=x["delta_bias"], delta_softplus=True, initial_state=None, doc_starts=docs,
        save_states=True, return_last_state=False, chunk=8, num_warps=1,
        states_dtype=torch.float16, segments=v["segments"], pipeline=bool(v["pipe"]),
        maxnreg=v["maxnreg"] or None)
    return y, states


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    if not torch.isfinite(a).all():
        return float("inf")
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--variants", default="maxnreg=0;maxnreg=auto")
    ap.add_argument("--batches", default="8,32")
    args = ap.parse_args()
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "triton", triton.__version__)
    names = [v.strip() for v in args.variants.split(";") if v.strip()]
    variants = {name: parse(name) for name in names}
    rows: dict = {"variants": variants, "checks": {}, "times": {}}
    ok = True
    for batch in (int(b) for b in args.batches.split(",")):
        x = inputs(batch, DIM, N, L, torch.bfloat16, dbl=True, seed=batch)
        docs = (torch.rand(batch, L, device="cuda") < 0.003).to(torch.uint8)
        for with_docs in (False, True):
            y0, s0 = forward(x, variants[names[0]], docs if with_docs else None)
            for name in names[1:]:
                y, s = forward(x, variants[name], docs if with_docs else None)
                errs = {"y": rel(y, y0), "states": rel(s, s0)}
                ok &= max(errs.values()) < 1e-2
                rows["checks"][f"B={batch} {name} docs={with_docs}"] = errs
                print(f"check B={batch} [{name}] docs={with_docs}: y {errs['y']:.2e} "
                      f"states {errs['states']:.2e}", flush=True)
        for name in names:
            ms = triton.testing.do_bench(lambda x=x, v=variants[name]: forward(x, v), warmup=50,
                                         rep=300)
            rows["times"][f"B={batch} {name}"] = ms
            print(f"time B={batch} forward [{name}]: {ms:.3f} ms", flush=True)
        del x
        torch.cuda.empty_cache()
    with open(os.path.join(args.out, "lanes_fwd.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
