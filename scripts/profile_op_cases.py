"""Where an op-table row's time goes: for the conv and scan cases of ``bench.ops`` (B=8, the
benchmark's layer), each implementation's forward+backward timed four ways:

- ``event_ms``: the median CUDA-event interval of one call, as the ops table reports it;
- ``host_ms``: the host's time to issue one call (no synchronisation: Python, autograd and the
  kernel launches);
- ``kernels_ms``: the summed device time of the kernels one call runs (torch.profiler);
- ``graph_ms``: ``kernels_ms`` plus the gaps between them when the host is not the limit: 50
  calls queued behind a 20 ms sleep kernel, timed on the device.

If ``event_ms`` is near ``host_ms`` and far above ``kernels_ms``, the table measures the host.

    PYTHONPATH=. python scripts/profile_op_cases.py [--batch 8]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from mambalab.benchmarks.op_cases import conv_case, scan_case
from mambalab.benchmarks.ops_bench import _outputs
from mambalab.benchmarks.timing import median, time_repeated


def fwd_bwd_fn(case, fn):
    leaves = [t for t in case.inputs if t.requires_grad]
    outs = _outputs(fn(*case.inputs))
    grads = [torch.randn_like(o) for o in outs]
    del outs
    return lambda: torch.autograd.grad(_outputs(fn(*case.inputs)), leaves, grads,
                                       allow_unused=True)


def measure(run) -> dict:
    dev = torch.device("cuda")
    for _ in range(5):
        run()
    torch.cuda.synchronize()
    event = median(time_repeated(run, dev, 5, 30))
    # host time to issue one call, the device kept busy so that launches never wait
    torch.cuda._sleep(200_000_000)
    t0 = time.perf_counter()
    for _ in range(20):
        run()
    host = (time.perf_counter() - t0) * 1e3 / 20
    torch.cuda.synchronize()
    # device time of 50 calls queued behind a sleep (gaps from the host hidden)
    torch.cuda._sleep(400_000_000)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(2):
        run()
    start.record()
    for _ in range(50):
        run()
    end.record()
    torch.cuda.synchronize()
    queued = start.elapsed_time(end) / 50
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            run()
        torch.cuda.synchronize()
    kern = {}
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if t:
            kern[e.key[:60]] = round(t / 10 / 1e3, 4)
    return {"event_ms": round(event, 4), "host_ms": round(host, 4),
            "queued_ms": round(queued, 4), "kernels_ms": round(sum(kern.values()), 4),
            "kernels": dict(sorted(kern.items(), key=lambda kv: -kv[1])[:8])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", default=None)
    ap.add_argument("--cprofile", action="store_true",
                    help="also print where the host's time goes in the Triton conv and scan calls")
    args = ap.parse_args()
    dev = torch.device("cuda")
    rows = {}
    for case in (conv_case(args.batch, 2048, 1536, 4, dev),
                 scan_case(args.batch, 2048, 1536, 16, dev, 0)):
        for name, fn in case.impls.items():
            if not callable(fn):
                continue
            key = f"{case.op}/{name}"
            run = fwd_bwd_fn(case, fn)
            rows[key] = measure(run)
            print(key, json.dumps(rows[key]), flush=True)
            if args.cprofile and name == "triton":
                import cProfile
                import pstats
                torch.cuda._sleep(400_000_000)  # the device busy: the host never waits
                pr = cProfile.Profile()
                pr.enable()
                for _ in range(20):
                    run()
                pr.disable()
                torch.cuda.synchronize()
                pstats.Stats(pr).sort_stats("tottime").print_stats(14)
        del case
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
