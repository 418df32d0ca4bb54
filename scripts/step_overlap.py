"""Where a training step's host time goes, with and without the per-step wait (the Stepper's
deferred read-back). Mamba-130M on random tokens, on the GPU:

    PYTHONPATH=.:$PYTHONPATH python scripts/step_overlap.py --batch 8 --steps 30

Modes: `wait` reads each step back at once (the Stepper with deferred off); `late` reads step k back
after queueing step k + 1's forward and backward (what the trainer does); `late-noskip` is `late`
without the device-side skip (plain optimizer step), to see what found_inf costs. `+loader` after a
mode takes each step's batch from the trainer's loader for random tokens (its prefetch thread
builds batches beside the main thread) instead of one batch made beforehand:

    python scripts/step_overlap.py --batch 8 --modes wait,late,wait+loader,late+loader

tells whether that thread is what makes the late read-back slower at 8 x 2048 in the trainer.
Prints, per mode, the median wall time a step and the host's time in each phase (ms)."""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from accelerate import Accelerator

from mambalab.data import RandomTokensDataModule
from mambalab.models import build_mamba_lm
from mambalab.training.optim import build_adamw
from mambalab.training.step import PendingStep, Stepper


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--modes", default="wait,late,late-noskip,wait")
    ap.add_argument("--tiny", action="store_true", help="a 1-layer model: checks the script on a CPU")
    args = ap.parse_args()
    acc = Accelerator(mixed_precision="bf16")
    torch.manual_seed(0)
    from omegaconf import OmegaConf
    cfg = OmegaConf.load("conf/model/mamba_130m.yaml")
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg).items() if not k.startswith("_")}
    if args.tiny:
        kwargs.update(d_model=32, n_layer=1, vocab_size=256)
    model = build_mamba_lm(**kwargs).to(acc.device)
    opt = build_adamw(model=model, lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1,
                      fused="true" if args.tiny else "auto")
    model, opt = acc.prepare(model, opt)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, kwargs["vocab_size"] - 3, (args.batch, args.seq + 1), generator=g)
    # contiguous and pinned, as the loaders give them: a view would be copied through pageable
    # memory, which waits for the device at every step (the first GPU call of this script did)
    batch = {"input_ids": tokens[:, :-1].contiguous(), "targets": tokens[:, 1:].contiguous()}
    if torch.cuda.is_available():
        batch = {k: v.pin_memory() for k, v in batch.items()}
    stepper = Stepper(acc, model, opt, grad_clip=1.0, oom_retry=False)
    for mode in args.modes.split(","):
        kind, _, source = mode.partition("+")
        stepper.deferred = kind.startswith("late")
        noskip = kind == "late-noskip"
        loader = None
        if source == "loader":
            data = RandomTokensDataModule(vocab_size=kwargs["vocab_size"] - 3, seq_len=args.seq,
                                          batch_size=args.batch, prefetch=4, pin_memory="auto")
            data.prepare()
            loader = data.train_loader()
        elif source:
            raise SystemExit(f"unknown batch source {source!r} in mode {mode!r}: only +loader")
        pending: PendingStep | None = None
        walls, phases = [], {"accumulate": [], "settle": [], "update": []}
        sync()
        last = time.perf_counter()
        for i in range(args.steps):
            t0 = time.perf_counter()
            stepper.accumulate([next(loader) if loader is not None else batch])
            t1 = time.perf_counter()
            if pending is not None:
                pending.result()
            t2 = time.perf_counter()
            if noskip:
                loss = stepper._loss
                stepper._loss = None
                acc.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                pending = PendingStep(i, torch.stack([loss, loss, loss * 0]))
            else:
                pending = stepper.update(i)
            if not stepper.deferred:
                pending.result()
            t3 = time.perf_counter()
            phases["accumulate"].append(t1 - t0)
            phases["settle"].append(t2 - t1)
            phases["update"].append(t3 - t2)
            walls.append(t3 - last)
            last = t3
        pending.result()
        sync()
        if loader is not None:
            loader.close()
        skip = args.steps // 3  # compilation and warm-up

        def med(xs: list[float]) -> float:
            return 1e3 * statistics.median(xs[skip:])

        print(f"{mode:12s} batch {args.batch}: {med(walls):7.1f} ms a step "
              f"({args.batch * args.seq / med(walls) * 1e3:,.0f} tok/s); host: accumulate "
              f"{med(phases['accumulate']):.1f}, settle {med(phases['settle']):.1f}, update "
              f"{med(phases['update']):.1f}", flush=True)


if __name__ == "__main__":
    main()
