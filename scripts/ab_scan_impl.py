"""Mamba-130M training throughput with each variant of the Triton path, in one process.

    PYTHONPATH=.:$PYTHONPATH python3 scripts/ab_scan_impl.py [--batch 16] [--rounds 2] [--out DIR]
        [--variants tile:channel_last tile:dbl step:dbl]

Builds mambalab's model with kernels=triton and times training steps (bf16 autocast, fused
AdamW, random tokens; mambalab.benchmarks.train_bench) for each variant SCAN:LAYOUT, where SCAN
sets mambalab.ops.triton.selective_scan.CONFIG["impl"] ("tile" or "step") and LAYOUT sets
mambalab.models.mixer.TRITON_XZ_LAYOUT ("dbl" or "channel_last"), in rounds, so a drift of the
card's clocks shows up as a difference between rounds.
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from mambalab.benchmarks.implementations import ModelSize, training_implementations
from mambalab.benchmarks.train_bench import bench_training
from mambalab.models import mixer
from mambalab.ops.triton import selective_scan as ss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[16])
    ap.add_argument("--variants", nargs="+", default=["tile:channel_last", "tile:dbl", "step:dbl"])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--step-config", help="JSON file of CONFIG keys for the step variants "
                                          "(scripts/bench_scan.py --impl seg writes step_best.json)")
    args = ap.parse_args()
    base = dict(ss.CONFIG)
    step_cfg = {}
    if args.step_config:
        with open(args.step_config) as f:
            step_cfg = json.load(f)
    device = torch.device("cuda")
    size = ModelSize(d_model=768, n_layer=24, vocab_size=50280, d_state=16)
    (impl,) = training_implementations(["mambalab"], ["triton"], size, device)
    rows = []
    for r in range(args.rounds):
        for batch in args.batch:
            for name in args.variants:
                scan, layout = name.split(":")
                ss.CONFIG.clear()
                ss.CONFIG.update(base)
                if scan == "step":
                    ss.CONFIG.update(step_cfg)
                ss.CONFIG["impl"] = scan
                mixer.TRITON_XZ_LAYOUT = layout
                row = bench_training(impl, batch, 2048, size.vocab_size, device, warmup=3,
                                     steps=10, lr=3e-4, mixed_precision="bf16", seed=0)
                row = {"round": r, "variant": name, "batch": batch,
                       **{k: row.get(k) for k in ("status", "tokens_per_s", "step_ms",
                                                  "peak_mem_gib", "first_loss", "last_loss",
                                                  "reason")}}
                rows.append(row)
                print(json.dumps(row), flush=True)
    with open(os.path.join(args.out, "ab_scan_impl.json"), "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
