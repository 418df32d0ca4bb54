"""Time the fused linear cross-entropy implementations on one GPU, as the model calls them.

    PYTHONPATH=.:$PYTHONPATH python3 scripts/bench_loss.py [--out DIR]

Mamba-130M's head (d_model 768, vocabulary 50,280, an fp32 weight under bf16 autocast) at 16,384
and 65,536 tokens (8 and 32 x 2048): forward + backward of liger-kernel's fused loss and
mambalab's Triton one (mambalab/ops/cross_entropy/triton_fused.py), timed with do_bench (device
time of back-to-back calls); then the two row kernels alone on one chunk of bf16 logits (4,096 x
50,280: the chunk the training step uses at 32 x 2048), and the two losses checked against each
other. Writes bench_loss.json. This is the measurement that decides the loss's CUDA default
(mambalab/ops/cross_entropy/config.py).
"""
from __future__ import annotations

import argparse
import json
import os

import torch
import triton


def _loss_fn(impl: str, hidden, weight, targets):
    from mambalab.ops.cross_entropy import fused_linear_cross_entropy

    def run():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fused_linear_cross_entropy(hidden, weight, targets, impl=impl)
        loss.backward()
        return loss
    return run


def time_losses(tokens: int) -> dict:
    g = torch.Generator(device="cuda").manual_seed(tokens)
    hidden = torch.randn(tokens, 768, device="cuda", generator=g).bfloat16().requires_grad_(True)
    weight = (0.02 * torch.randn(50280, 768, device="cuda", generator=g)).requires_grad_(True)
    targets = torch.randint(0, 50280, (tokens,), device="cuda", generator=g)
    res = {}
    for impl in ("triton", "liger"):
        try:
            fn = _loss_fn(impl, hidden, weight, targets)
            res[impl + "_loss"] = fn().item()
            res[impl + "_ms"] = triton.testing.do_bench(fn, warmup=5, rep=50,
                                                        return_mode="median")
        except Exception as e:  # report, do not fail the run
            res[impl] = repr(e)[:300]
    return res


def time_row_kernels(rows: int = 4096) -> dict:
    from mambalab.ops.triton.cross_entropy import cross_entropy_rows_

    g = torch.Generator(device="cuda").manual_seed(0)
    logits = torch.randn(rows, 50280, device="cuda", generator=g).bfloat16()
    targets = torch.randint(0, 50280, (rows,), device="cuda", generator=g)
    loss = torch.empty(rows, device="cuda")
    scale = torch.full((1,), 1.0 / rows, device="cuda")
    res = {"bytes_moved_GB": 2 * logits.numel() * logits.element_size() / 1e9}
    buf = logits.clone()
    # (columns per iteration, warps per row): more warps a row, fewer rows in flight, so that a
    # row read by the first pass is still in L2 for the second
    for block, warps in ((4096, 8), (8192, 16), (8192, 32), (16384, 32), (4096, 4)):
        def ours():
            cross_entropy_rows_(buf, targets, loss, scale, -100, block=block, num_warps=warps)
        ms = triton.testing.do_bench(ours, warmup=5, rep=50, return_mode="median")
        res[f"triton_rows_{block}_{warps}_ms"] = ms
        res["triton_rows_ms"] = min(ms, res.get("triton_rows_ms", ms))
    try:
        from liger_kernel.ops.cross_entropy import liger_cross_entropy_kernel
        from liger_kernel.ops.fused_linear_cross_entropy import MAX_FUSED_SIZE

        def liger():
            liger_cross_entropy_kernel[(rows,)](
                X_ptr=buf, X_stride=buf.stride(-2), Y_ptr=targets, Y_stride=1, weight_ptr=None,
                loss_ptr=loss, z_loss_ptr=None, loss_stride=1, token_accuracy_ptr=None,
                token_accuracy_stride=0, predicted_tokens_ptr=None, predicted_tokens_stride=0,
                n_cols=50280, n_non_ignore=rows, sum_non_ignore_weight=rows, weight_sum=0.0,
                ignore_index=-100, lse_square_scale=0.0, label_smoothing=0.0,
                reduction="mean", softcap=None, RETURN_Z_LOSS=False,
                RETURN_TOKEN_ACCURACY=False, RETURN_PREDICTED_TOKENS=False, HAS_WEIGHT=False,
                HAS_SOFTCAPPING=False, HAS_GRADIENTS=True,
                BLOCK_SIZE=min(MAX_FUSED_SIZE, triton.next_power_of_2(50280)), num_warps=32)
        res["liger_rows_ms"] = triton.testing.do_bench(liger, warmup=5, rep=50,
                                                       return_mode="median")
    except Exception as e:  # a liger whose kernel takes other arguments: report it
        res["liger_rows"] = repr(e)[:300]
    for key in [k for k in res if k.endswith("_ms")]:
        if key in res:
            res[key.replace("_ms", "_TBps")] = res["bytes_moved_GB"] / res[key]
    return res


def check() -> dict:
    """Loss and gradients of the two at 4,096 tokens (100 ignored): relative differences."""
    g = torch.Generator(device="cuda").manual_seed(1)
    hidden = torch.randn(4096, 768, device="cuda", generator=g).requires_grad_(True)
    weight = (0.02 * torch.randn(50280, 768, device="cuda", generator=g)).requires_grad_(True)
    targets = torch.randint(0, 50280, (4096,), device="cuda", generator=g)
    targets[:100] = -100
    out = {}
    for impl in ("triton", "liger"):
        hidden.grad = weight.grad = None
        loss = _loss_fn(impl, hidden, weight, targets)()
        out[impl] = (loss.detach(), hidden.grad.clone(), weight.grad.clone())
    rel = lambda a, b: ((a.float() - b.float()).norm() / b.float().norm()).item()  # noqa: E731
    names = ("loss", "dhidden", "dweight")
    return {name: rel(a, b) for name, a, b in zip(names, out["triton"], out["liger"])}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--rows-only", action="store_true", help="only the row kernels")
    args = ap.parse_args()
    res = {"device": torch.cuda.get_device_name(), "triton": triton.__version__}
    if args.rows_only:
        res["row_kernels_4096x50280"] = time_row_kernels()
        print("row kernels", res["row_kernels_4096x50280"], flush=True)
        with open(os.path.join(args.out, "bench_loss_rows.json"), "w") as f:
            json.dump(res, f, indent=1)
        return 0
    for tokens in (16384, 65536):
        res[f"tokens_{tokens}"] = time_losses(tokens)
        print(tokens, res[f"tokens_{tokens}"], flush=True)
    res["row_kernels_4096x50280"] = time_row_kernels()
    print("row kernels", res["row_kernels_4096x50280"], flush=True)
    res["check_triton_vs_liger"] = check()
    print("triton vs liger", res["check_triton_vs_liger"], flush=True)
    with open(os.path.join(args.out, "bench_loss.json"), "w") as f:
        json.dump(res, f, indent=1)
    return 0 if max(res["check_triton_vs_liger"].values()) < 2e-2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
