"""Time the Triton causal conv's two kernel families on one GPU, as the fused mixer calls them.

    PYTHONPATH=.:$PYTHONPATH python3 scripts/bench_conv.py [--out DIR]

At Mamba-130M's layer shape (D=1536, L=2048, W=4, bf16, SiLU) and B=8, 16 and 32, on the
mixer's layout (x a (B, D, L) view of a (D, B*L) matrix: unit stride along time): the forward,
the backward alone (what the mixer's backward runs since it keeps the conv output) and the
backward with the forward before it, for CONFIG["impl"] = "tile", "rows" and "time" (VARIANTS:
segment lengths, chunk, warps), and causal-conv1d's kernels when importable; then the rows and
time kernels checked against the tile kernels (outputs and gradients, with document starts).
Writes bench_conv.json. This is the measurement that decides causal_conv1d.CONFIG's default
(docs/performance.md).
"""
from __future__ import annotations

import argparse
import json
import os

import torch
import triton

from mambalab.ops.triton import causal_conv1d as cc


def inputs(batch: int, dim: int = 1536, seqlen: int = 2048, width: int = 4, docs: bool = False):
    g = torch.Generator(device="cuda").manual_seed(batch)
    mat = torch.randn(2 * dim, batch * seqlen, device="cuda", generator=g).to(torch.bfloat16)
    view = lambda m: m.view(m.shape[0], batch, seqlen).permute(1, 0, 2)  # noqa: E731
    x, dout = view(mat[:dim]), view(mat[dim:])
    w = torch.randn(dim, width, device="cuda", generator=g) * 0.5
    b = torch.randn(dim, device="cuda", generator=g)
    starts = (torch.rand(batch, seqlen, device="cuda", generator=g) < 0.002) if docs else None
    out = view(torch.empty(dim, batch * seqlen, device="cuda", dtype=torch.bfloat16))
    dx = view(torch.empty(dim, batch * seqlen, device="cuda", dtype=torch.bfloat16))
    return x, w, b, cc.segment_starts(starts, width), dout, out, dx


def time_ours(batch: int) -> dict:
    x, w, b, seg, dout, out, dx = inputs(batch)
    fwd = lambda: cc.causal_conv1d_fwd(x, w, b, None, seg, True, out=out)  # noqa: E731
    bwd_only = lambda: cc.causal_conv1d_bwd(x, w, b, None, seg, dout, True, dx=dx)  # noqa: E731

    def bwd():
        cc.causal_conv1d_fwd(x, w, b, None, seg, True, out=out)
        cc.causal_conv1d_bwd(x, w, b, None, seg, dout, True, dx=dx)
    res = {}
    for name, fn in (("fwd", fwd), ("bwd", bwd_only), ("bwd_with_fwd", bwd)):
        fn()
        res[name] = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
    return res


def time_cuda(batch: int) -> dict | None:
    """causal-conv1d's public causal_conv1d_fn (its autograd backward recomputes nothing: the
    forward is run again here, as the mixer's backward does)."""
    try:
        from causal_conv1d import causal_conv1d_fn
    except ImportError:
        return None
    x, w, b, _, dout, _, _ = inputs(batch)
    xc, gc = x.contiguous().requires_grad_(True), dout.contiguous()  # it reads (B, D, L)
    w, b = w.requires_grad_(True), b.requires_grad_(True)
    fwd = lambda: causal_conv1d_fn(xc, w, b, activation="silu")  # noqa: E731

    def bwd():
        causal_conv1d_fn(xc, w, b, activation="silu")
        causal_conv1d_fn(xc, w, b, activation="silu").backward(gc)
    res = {}
    try:
        for name, fn in (("fwd", fwd), ("bwd_with_fwd", bwd)):
            fn()
            res[name] = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
    except Exception as e:  # report, do not fail the run
        return {"error": repr(e)[:300]}
    return res


def check() -> dict:
    """rows and time against tile at B=2 with document starts: relative difference per tensor."""
    x, w, b, seg, dout, out, dx = inputs(2, docs=True)
    res = {}
    for impl in ("tile", "rows", "time"):
        cc.CONFIG["impl"] = impl
        y = cc.causal_conv1d_fwd(x, w, b, None, seg, True, out=out.clone())
        g = cc.causal_conv1d_bwd(x, w, b, None, seg, dout, True, dx=dx.clone())
        res[impl] = [y.float(), g[0].float(), g[1].float(), g[2].float()]
    rel = {}
    for impl in ("rows", "time"):
        for name, a, t in zip(("out", "dx", "dweight", "dbias"), res[impl], res["tile"]):
            rel[f"{impl}_{name}"] = ((a - t).norm() / t.norm()).item()
    return rel


# rows variants: segment length, K steps a vector (16: two 16-byte loads per lane, a whole
# 32-byte sector of a bf16 row), warps per program
# (the fifth session's sweep); time variants: warps per program (32 x warps groups of 8 steps),
# then groups a thread (time_G{g}_W{w}: g groups of 8 steps a thread, forward and backward)
VARIANTS = [("rows_default", {"impl": "rows"})] + [
    (f"time_W{w}", {"impl": "time", "time_warps": w}) for w in (2, 4, 8)] + [
    (f"time_G{g}_W{w}", {"impl": "time", "time_fwd_groups": g, "time_bwd_groups": g,
                         "time_warps": w}) for g, w in ((2, 2), (2, 4), (2, 8), (4, 2), (4, 4))]
if os.environ.get("BENCH_CONV_ROWS_SWEEP"):
    VARIANTS += [(f"rows_K{k}_seg{s}_W{w}", {"impl": "rows", "rows_chunk": k, "rows_seg_len": s,
                                             "rows_warps": w})
                 for k, s, w in ((8, 128, 1), (8, 256, 1), (8, 512, 1), (16, 256, 1),
                                 (16, 512, 1), (16, 256, 2), (16, 1024, 1))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    base = dict(cc.CONFIG)
    rows = {"device": torch.cuda.get_device_name(), "triton": triton.__version__}
    for batch in (8, 16, 32):
        for key, cfg in (("tile", {"impl": "tile"}), *VARIANTS):
            cc.CONFIG.clear(); cc.CONFIG.update(base, **cfg)
            rows[f"B{batch}_{key}"] = time_ours(batch)
            print(f"B{batch} {key:14s}", rows[f"B{batch}_{key}"], flush=True)
        rows[f"B{batch}_causal_conv1d"] = time_cuda(batch)
        print(f"B{batch} causal-conv1d", rows[f"B{batch}_causal_conv1d"], flush=True)
    cc.CONFIG.clear(); cc.CONFIG.update(base)
    rows["check_rows_vs_tile"] = check()
    cc.CONFIG.clear(); cc.CONFIG.update(base)
    print("rows and time vs tile (B=2, bf16, document starts):", rows["check_rows_vs_tile"],
          flush=True)
    with open(os.path.join(args.out, "bench_conv.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return 0 if max(rows["check_rows_vs_tile"].values()) < 1e-2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
