"""Launch each Triton kernel of the mixer's hot path once, at one layer's shape, for Nsight
Compute (stall reasons, occupancy, memory throughput):

    ncu --clock-control none -k regex:'_lanes|_gluon|_conv' python3 scripts/ncu_kernels.py [--batch 16]

The lanes scan's forward (saving states) and backward (the Gluon kernel, as the fused mixer runs
it; with --write-y the Triton lanes backward, writing y), and the conv's forward and backward in
the current causal_conv1d.CONFIG, on the mixer's (C, B*L) views (bench_scan.inputs).
Every launch is profiled, so each kernel runs exactly once.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_conv import inputs as conv_inputs  # noqa: E402
from bench_scan import inputs as scan_inputs  # noqa: E402

from mambalab.ops.triton import causal_conv1d as cc  # noqa: E402
from mambalab.ops.triton import selective_scan as ss  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--parts", default="scan,conv")
    ap.add_argument("--write-y", action="store_true")
    args = ap.parse_args()
    parts = args.parts.split(",")
    if "scan" in parts:
        x = scan_inputs(args.batch, 1536, 16, 2048, torch.bfloat16, dbl=True)
        y, _, states = ss.selective_scan_fwd(**x, save_states=True)
        # as the fused mixer calls it: no y written, so the Gluon backward takes it where it can
        # (--write-y: the Triton lanes backward, which writes y)
        ss.selective_scan_bwd(torch.randn_like(y), **x, states=states,
                              y_out=torch.empty_like(y) if args.write_y else None)
        del x, y, states
    if "conv" in parts:
        x, w, b, seg, dout, out, dx = conv_inputs(args.batch)
        cc.causal_conv1d_fwd(x, w, b, None, seg, True, out=out)
        cc.causal_conv1d_bwd(x, w, b, None, seg, dout, True, dx=dx)
    torch.cuda.synchronize()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
