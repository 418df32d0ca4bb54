"""The lanes backward's dB/dC partial sum (ops/triton/dbc_sum.py) against what the mixer ran
before it: ``part.sum(1)`` and two copies into rows of x_dbl's gradient. Mixer shape (D=1536,
N=16, R=48, L=2048), bf16 partials, B = 8, 16, 32; device ms (do_bench medians), each
CONFIG variant, checked against the torch sum. Writes bench_dbc.json.

    PYTHONPATH=. python scripts/bench_dbc.py --out $OUT
"""
from __future__ import annotations

import argparse
import json
import os

import torch
import triton

from mambalab.ops.triton import dbc_sum as mod

VARIANTS = [(64, 4), (128, 4), (256, 4), (128, 8), (256, 8)]  # (block_l, warps)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    dim, n_state, rank, seqlen = 1536, 16, 48, 2048
    rows, worst = {"device": torch.cuda.get_device_name()}, 0.0
    for batch in (8, 16, 32):
        part = torch.randn(batch, dim // 32, 32, seqlen, device="cuda").bfloat16()
        mat = torch.empty(rank + 2 * n_state, batch * seqlen, device="cuda",
                          dtype=torch.bfloat16)
        view = lambda r0: mat[r0:r0 + n_state].view(n_state, batch, seqlen).permute(1, 0, 2)  # noqa: E731

        def torch_way():
            s = part.sum(1)
            mat[rank:rank + n_state].view(n_state, batch, seqlen).copy_(
                s[:, :n_state].transpose(0, 1))
            mat[rank + n_state:].view(n_state, batch, seqlen).copy_(
                s[:, 16:16 + n_state].transpose(0, 1))
        res = {"torch_sum_copy": triton.testing.do_bench(torch_way, warmup=25, rep=100,
                                                         return_mode="median")}
        want = part.float().sum(1)
        for block_l, warps in VARIANTS:
            mod.CONFIG.update(block_l=block_l, warps=warps)
            fn = lambda: mod.dbc_sum(part, n_state, view(rank), view(rank + n_state))  # noqa: E731
            res[f"triton_L{block_l}_W{warps}"] = triton.testing.do_bench(
                fn, warmup=25, rep=100, return_mode="median")
            fn()
            err = max((view(rank).float() - want[:, :n_state]).abs().max().item(),
                      (view(rank + n_state).float() - want[:, 16:]).abs().max().item())
            worst = max(worst, err / want.abs().max().item())
        rows[f"B{batch}"] = res
        print(f"B{batch}", {k: round(v, 4) for k, v in res.items()}, flush=True)
    rows["max_rel_err"] = worst
    print("max error relative to the largest sum:", worst)
    with open(os.path.join(args.out, "bench_dbc.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return 0 if worst < 1e-2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
