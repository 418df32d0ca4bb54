"""Where a training step's host time goes: cProfile over a few steps of Mamba-130M (kernels=triton)
at a small batch, where the host, not the device, sets the step time (8 x 2048 on an H200:
95-118 ms a step against about 73 ms of kernels, ninth session, docs/performance.md). Prints the
host time one step takes to issue and its wall time, then the functions by their own time and by
cumulative time. On a CPU it runs a 2-layer model on the reference ops (a dry run).

    PYTHONPATH=. python scripts/host_profile.py [batch] [seq_len] [steps]
"""
import cProfile
import io
import pstats
import sys
import time

import torch

from mambalab.benchmarks.train_bench import make_optimizer, random_batch
from mambalab.models import build_mamba_lm

batch, seq_len, steps = (int(a) for a in (sys.argv[1:] + ["1", "2048", "5"][len(sys.argv[1:]):]))
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
kernels = "triton" if device.type == "cuda" else "reference"  # the CPU: a dry run of the script
model = build_mamba_lm(d_model=768, n_layer=24 if device.type == "cuda" else 2, vocab_size=50280,
                       d_state=16, kernels=kernels).to(device).train()
opt = make_optimizer(model, 3e-4, device)
ids, targets = random_batch(batch, seq_len, 50280, device, 0)


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def step():
    with torch.autocast(device.type, dtype=torch.bfloat16):
        loss = model(ids, targets=targets).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


for _ in range(3):
    step()
sync()
t0 = time.perf_counter()
for _ in range(steps):
    step()
host = (time.perf_counter() - t0) / steps * 1e3
sync()
wall = (time.perf_counter() - t0) / steps * 1e3
print(f"batch {batch} x {seq_len}: host {host:.1f} ms a step (issuing), wall {wall:.1f} ms")
prof = cProfile.Profile()
# the backward on this thread (by default a CUDA backward runs on the autograd engine's device
# thread, where cProfile does not look)
with torch.autograd.set_multithreading_enabled(False):
    prof.enable()
    for _ in range(steps):
        step()
    sync()
    prof.disable()
for key in ("tottime", "cumulative"):
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats(key).print_stats(45)
    print("\n".join(line[:200] for line in s.getvalue().splitlines()[:70]))
