"""Check and time the Gluon scan backward (selective_scan_gluon_bwd.py) against the Triton lanes
backward on one GPU, from the same forward's saved states, on the mixer's (C, B*L) views.

    PYTHONPATH=.:$PYTHONPATH python3 scripts/gluon_bwd_check.py [--out DIR] [--quick]

1. Agreement at D=1536, N=16, L=2048, B=2 (document starts, an initial state, the last state's
   gradient; one segment and three), then B=8 plain: every output's largest difference over the
   Triton kernel's largest magnitude (both kernels fp32 inside; du, ddelta, dz, dB, dC are bf16).
2. Times (triton.testing.do_bench medians, ms) at B=8 and 32: the Triton backward as the mixer
   runs it (CONFIG's defaults), the Gluon one in each of VARIANTS (--variants), in 1 or 2
   segments at B <= 4. Writes gluon_bwd.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import triton

from mambalab.ops.triton import selective_scan_gluon_bwd as gluon_bwd
from mambalab.ops.triton.selective_scan_lanes_bwd import lanes_bwd_launch
from mambalab.ops.triton.selective_scan_lanes_fwd import lanes_fwd_launch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_scan import inputs  # noqa: E402  (the mixer's views, as bench_scan times them)

DIM, N, L = 1536, 16, 2048


def forward(x, docs=None, h0=None):
    _, _, states = lanes_fwd_launch(
        u=x["u"], delta=x["delta"], A=x["A"], B=x["B"], C=x["C"], D=x["D"], z=x["z"],
        delta_bias=x["delta_bias"], delta_softplus=True, initial_state=h0, doc_starts=docs,
        save_states=True, return_last_state=False, chunk=8, num_warps=1,
        states_dtype=torch.float16)
    return states


def backward(x, states, dy, *, gluon: bool, segments, docs=None, dlast=None, wave=8):
    batch = x["u"].shape[0]
    out = {k: torch.empty((batch, DIM, L), device="cuda", dtype=x["u"].dtype)
           for k in ("du", "ddelta", "dz")}
    res = lanes_bwd_launch(
        dy=dy, u=x["u"], delta=x["delta"], A=x["A"], B=x["B"], C=x["C"], D=x["D"], z=x["z"],
        delta_bias=x["delta_bias"], delta_softplus=True, doc_starts=docs, states=states,
        dlast_state=dlast, chunk=8, num_warps=1, pipeline=1, partials_16bit=True,
        segments=segments, use_gluon=gluon, wave_warps_per_sm=wave, **out)
    return res


def compare(a: dict, b: dict) -> dict:
    errs = {}
    for k, v in b.items():
        if v is None:
            continue
        ref = v.float()
        errs[k] = float((a[k].float() - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
        if not torch.isfinite(a[k]).all():
            errs[k] = float("inf")
    return errs


def check(batch: int, docs: bool, seg_gluon: int, seg_triton) -> dict:
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
    ref = backward(x, states, dy, gluon=False, segments=seg_triton, docs=d, dlast=dl)
    got = backward(x, states, dy, gluon=True, segments=seg_gluon, docs=d, dlast=dl)
    return compare(got, ref)


VARIANTS = {  # name: gluon_bwd.CONFIG (and "wave", passed to lanes_bwd_launch: the Gluon kernel
    # runs in one launch whatever it is). Variants measured and removed are in
    # docs/kernels/selective_scan.md (sixteenth session): terms summed 4 steps at a time, the
    # decays kept in shared memory, batch parts; (seventeenth session) the deferred terms summed
    # every 4 steps, alone and with 168 registers, with and without the loads ahead;
    # (nineteenth session) one or both exponentials by a polynomial on the FMA pipe.
    "default": dict(pipe=True, maxnreg=None, defer_dbc=True, split_chunk=True, wave=None),
    "s16": dict(pipe=True, maxnreg=None, defer_dbc=False, split_chunk=False, wave=None),
    "defer only": dict(pipe=True, maxnreg=None, defer_dbc=True, split_chunk=False, wave=None),
    "split only": dict(pipe=True, maxnreg=None, defer_dbc=False, split_chunk=True, wave=None),
    "no loads ahead": dict(pipe=False, maxnreg=None, defer_dbc=True, split_chunk=True, wave=None),
    "maxnreg 168": dict(pipe=True, maxnreg=168, defer_dbc=True, split_chunk=True, wave=None),
    # (twenty-third session) 200 registers, 10 warps an SM within the program's 22 KB of shared
    # memory (10 spill instructions offline): 0.983 against 0.888 ms at B=8, and training at
    # 32 x 2048 316.0k against 320.7k tokens/s (docs/kernels/selective_scan.md)
    "maxnreg 200": dict(pipe=True, maxnreg=200, defer_dbc=True, split_chunk=True, wave=None),
}


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
    checks = [("B2 docs h0 dlast, 1 segment", dict(batch=2, docs=True, seg_gluon=1, seg_triton=1)),
              ("B2 docs h0 dlast, 3 segments", dict(batch=2, docs=True, seg_gluon=3, seg_triton=1)),
              ("B8 plain", dict(batch=8, docs=False, seg_gluon=1, seg_triton="auto"))]
    for vi, v in enumerate(variants):
        gluon_bwd.CONFIG.update({k: e for k, e in VARIANTS[v].items() if k != "wave"})
        for name, kw in (checks if vi == 0 else checks[::2]):
            errs = check(**kw)
            worst = max(errs.values())
            ok &= worst < 2e-2
            rows["checks"][f"{v}: {name}"] = errs
            print(f"check {v}: {name}: worst {worst:.2e} ::",
                  " ".join(f"{k} {e:.1e}" for k, e in errs.items()), flush=True)
    for batch in (int(b) for b in args.batches.split(",")):
        x = inputs(batch, DIM, N, L, torch.bfloat16, dbl=True, seed=1)
        states = forward(x)
        dy = torch.randn(batch, DIM, L, device="cuda").to(torch.bfloat16)
        cases = [("triton (defaults)", None, dict(gluon=False, segments="auto"))]
        for v in variants:
            for seg in ((1, 2) if batch <= 8 else (1,)):
                cases.append((f"gluon {v} segments={seg}", v,
                              dict(gluon=True, segments=seg, wave=VARIANTS[v]["wave"])))
        for name, v, kw in cases:
            if v is not None:
                gluon_bwd.CONFIG.update({k: e for k, e in VARIANTS[v].items() if k != "wave"})
            try:
                ms = triton.testing.do_bench(lambda: backward(x, states, dy, **kw), warmup=50,
                                             rep=300)
            except Exception as e:  # noqa: BLE001 - a failing variant is a result
                ms = float("nan")
                print(f"  {name}: {type(e).__name__}: {str(e)[:300]}")
            rows["times"][f"B={batch} {name}"] = ms
            print(f"time B={batch} {name}: {ms:.3f} ms", flush=True)
    with open(os.path.join(args.out, "gluon_bwd.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
