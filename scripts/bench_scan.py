"""Check and time the Triton selective scan on one GPU (docs/kernels/selective_scan.md).

    PYTHONPATH=.:$PYTHONPATH python3 scripts/bench_scan.py [--impl tile|step|seg|lanes|lanes-scaling|lanes-variants|lanes-segments] [--configs all|default] [--out DIR]

With --impl tile-variants: the tile kernels on the mixer's (C, B*L) views, channel-last and
contiguous inputs, and a few backward tiles.
With --impl lanes: the lanes kernels (one thread per channel, states in registers, B and C by
warp shuffles) against the tile kernels as the mixer runs them; writes bench_scan_lanes.json.
With --impl seg: the step kernels with time segments (the current design) against the tile
kernels, as the mixer runs them; writes the best CONFIG keys to step_best.json.
With --impl step: the step kernels' tile choices against the tile kernels' default at B=8 and 16
(the mixer's channel-last layout and (B, D, L) contiguous), a check, and mamba_ssm when importable.

1. Correctness at the benchmark's D, N and L (batch 2) against an fp32 loop on the GPU: y and every
   gradient, with z, D, the dt bias, softplus, document starts and an initial state.
2. Times (median of triton.testing.do_bench) at B=8, L=2048, D=1536, N=16, bf16: forward alone,
   backward alone (from saved states) and forward + backward through autograd, for each tile
   config; then the layouts the mixer passes (u, dt, z as views of a (B, L, D) projection); and
   mamba_ssm's selective_scan_fn when importable. A device-to-device copy gives the bandwidth.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
import triton

from mambalab.ops.triton import selective_scan as ss


def ref_scan(u, delta, A, B, C, D, z, delta_bias, initial_state, doc_starts):
    delta = F.softplus(delta + delta_bias[:, None])
    h = initial_state
    ys = []
    for t in range(u.shape[-1]):
        h = h * (~doc_starts[:, t]).to(h.dtype)[:, None, None]
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))
    return (torch.stack(ys, -1) + D[:, None] * u) * F.silu(z)


def inputs(batch, dim, dstate, seqlen, dtype, transposed=False, seed=0, dbl=False):
    g = torch.Generator(device="cuda").manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, device="cuda", generator=g)  # noqa: E731
    if dbl:  # what the mixer passes now: views of (C, B*L) matrices, unit stride along L
        mat = rnd(3 * dim + 2 * dstate, batch * seqlen).to(dtype)
        view = lambda m: m.view(m.shape[0], batch, seqlen).permute(1, 0, 2)  # noqa: E731
        u, delta, z = (view(mat[i * dim:(i + 1) * dim]) for i in range(3))
        with torch.no_grad():
            delta.mul_(0.5).sub_(1.0)
        return dict(u=u, delta=delta, A=-torch.exp(rnd(dim, dstate) * 0.5),
                    B=view(mat[3 * dim:3 * dim + dstate]), C=view(mat[3 * dim + dstate:]),
                    D=rnd(dim), z=z, delta_bias=rnd(dim) * 0.3)
    if transposed:  # channel-last: views of a (B, L, 3D) tensor, stride(-1) != 1
        xz = rnd(batch, seqlen, 3 * dim).to(dtype)
        u, delta, z = (xz[..., i * dim:(i + 1) * dim].transpose(1, 2) for i in range(3))
    else:
        u, delta, z = (rnd(batch, dim, seqlen).to(dtype) for _ in range(3))
    with torch.no_grad():
        delta.mul_(0.5).sub_(1.0)
    return dict(u=u, delta=delta, A=-torch.exp(rnd(dim, dstate) * 0.5),
                B=rnd(batch, dstate, seqlen).to(dtype), C=rnd(batch, dstate, seqlen).to(dtype),
                D=rnd(dim), z=z, delta_bias=rnd(dim) * 0.3)


def check(dtype=torch.bfloat16):
    x = inputs(2, 1536, 16, 2048, dtype, seed=1)
    docs = torch.rand(2, 2048, device="cuda") < 0.002
    h0 = torch.randn(2, 1536, 16, device="cuda")
    ours = {k: v.detach().clone().requires_grad_(True) for k, v in x.items()}
    h0a = h0.clone().requires_grad_(True)
    y = ss.selective_scan_triton(**ours, initial_state=h0a, doc_starts=docs)
    dy = torch.randn_like(y, dtype=torch.float32)
    (y.float() * dy).sum().backward()
    refs = {k: v.detach().float().requires_grad_(True) for k, v in x.items()}
    h0b = h0.clone().requires_grad_(True)
    y_ref = ref_scan(**refs, initial_state=h0b, doc_starts=docs)
    (y_ref * dy).sum().backward()
    rel = lambda a, b: ((a.float() - b).norm() / b.norm()).item()  # noqa: E731
    errs = {"y": rel(y, y_ref), "dh0": rel(h0a.grad, h0b.grad)}
    errs.update({"d" + k: rel(ours[k].grad, refs[k].grad) for k in x})
    finite = all(torch.isfinite(t).all().item() for t in [y] + [v.grad for v in ours.values()])
    return errs, finite


def copy_bandwidth() -> float:
    """GB/s of a 256 MiB device-to-device copy, bytes read plus written."""
    src = torch.randn(1 << 27, device="cuda").to(torch.bfloat16)
    dst = torch.empty_like(src)
    ms = triton.testing.do_bench(lambda: dst.copy_(src), return_mode="median")
    return 2 * src.numel() * src.element_size() / ms / 1e6


def time_part(part, cfg, x):
    """Median ms of the forward alone or the backward alone (from saved states) for one tile."""
    ss.CONFIG.update({"block_t": cfg["block_t"], f"{part}_n_in": cfg["n_in"],
                      f"{part}_block_d": cfg["block_d"], f"{part}_warps": cfg["warps"]})
    return time_raw_part(part, x)


def time_config(cfg, x):
    ss.CONFIG.update(cfg)
    fwd = lambda: ss.selective_scan_fwd(**x, save_states=False)  # noqa: E731
    y, _, states = ss.selective_scan_fwd(**x)
    dy = torch.randn_like(y)
    bwd = lambda: ss.selective_scan_bwd(dy, **x, states=states)  # noqa: E731
    leaves = {k: v.detach().requires_grad_(True) for k, v in x.items()}

    def fwd_bwd():
        ss.selective_scan_triton(**leaves).backward(dy)
    out = {}
    for name, fn in (("fwd", fwd), ("bwd", bwd), ("fwd+bwd", fwd_bwd)):
        fn()
        out[name] = triton.testing.do_bench(fn, warmup=50, rep=200, return_mode="median")
    return out


def mamba_ssm_times(rows: dict) -> None:
    """mamba_ssm's selective_scan_fn forward+backward at B=8 and 16 (contiguous inputs), into rows."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        print("mamba_ssm not importable: no comparison")
        return
    for batch in (8, 16):
        x = inputs(batch, 1536, 16, 2048, torch.bfloat16)
        leaves = {k: v.detach().requires_grad_(True) for k, v in x.items()}
        dy = torch.randn_like(x["u"])

        def theirs():
            selective_scan_fn(leaves["u"], leaves["delta"], leaves["A"], leaves["B"],
                              leaves["C"], leaves["D"], leaves["z"], leaves["delta_bias"],
                              True).backward(dy)
        rows[f"B{batch}_mamba_ssm_fwd+bwd"] = triton.testing.do_bench(theirs, return_mode="median")
        print(f"B{batch} mamba_ssm fwd+bwd", rows[f"B{batch}_mamba_ssm_fwd+bwd"], flush=True)


def finish(rows: dict, name: str, path: str) -> int:
    """Check the default config against an fp32 loop, time mamba_ssm, write the JSON; exit code."""
    errs, finite = check()
    rows[f"check_{name}_default"] = {"errs": errs, "finite": finite}
    print(f"check {name} default (B=2, L=2048, bf16, vs fp32 loop):", finite, errs, flush=True)
    mamba_ssm_times(rows)
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)
    return 0 if finite and max(errs.values()) < 2e-2 else 1


STEP_FWD = [(4, 32, 1), (8, 32, 1), (4, 64, 2), (4, 128, 4)]  # (block_t, block_d, warps)
# (block_t, n_batch, d_lanes, d_in, warps)
STEP_BWD = [(2, 8, 4, 1, 1), (2, 4, 8, 1, 1), (2, 2, 16, 1, 1), (4, 8, 4, 1, 1),
            (2, 1, 32, 1, 1), (2, 8, 4, 1, 2)]


def step_sweep(out: str) -> int:
    """Time the step kernels' tile choices against the tile kernels' default, in one run, at the
    benchmark's layer shape (B=8 and 16, channel-last as the mixer passes them and (B, D, L)
    contiguous), and check the chosen one against an fp32 loop."""
    rows: dict = {"device": torch.cuda.get_device_name(), "triton": triton.__version__}
    base = dict(ss.CONFIG)
    for batch in (8, 16):
        for layout in ("mixer", "contiguous"):
            x = inputs(batch, 1536, 16, 2048, torch.bfloat16, transposed=layout == "mixer")
            ss.CONFIG.clear(); ss.CONFIG.update(base); ss.CONFIG["impl"] = "tile"
            ss.CONFIG["keep_states"] = False
            key = f"B{batch}_{layout}_tile_default"
            rows[key] = time_config({}, x)
            print(f"{key:44s}", {k: round(v, 3) for k, v in rows[key].items()}, flush=True)
            ss.CONFIG["impl"] = "step"
            best = {}
            for part, cfgs in (("fwd", STEP_FWD), ("bwd", STEP_BWD)):
                if batch == 16 and layout == "contiguous":
                    cfgs = cfgs[:1]  # the default only
                for cfg in cfgs:
                    ss.CONFIG.clear(); ss.CONFIG.update(base)
                    if part == "fwd":
                        bt, bd, w = cfg
                        ss.CONFIG.update(step_fwd_block_t=bt, step_fwd_block_d=bd, step_fwd_warps=w)
                    else:
                        bt, nb, dl, di, w = cfg
                        ss.CONFIG.update(step_bwd_block_t=bt, step_bwd_n_batch=nb,
                                         step_bwd_d_lanes=dl, step_bwd_d_in=di, step_bwd_warps=w)
                    key = f"B{batch}_{layout}_step_{part}_{'_'.join(map(str, cfg))}"
                    try:
                        ms = time_raw_part(part, x)
                    except Exception as e:  # a config that fails to compile is reported
                        rows[key] = {"error": repr(e)[:300]}
                        print(key, rows[key], flush=True)
                        continue
                    rows[key] = ms
                    print(f"{key:44s} {ms:.3f} ms", flush=True)
                    if ms < best.get(part, (1e9,))[0]:
                        best[part] = (ms, dict(ss.CONFIG))
            ss.CONFIG.clear(); ss.CONFIG.update(base)
            for part in ("fwd", "bwd"):
                if part in best:
                    ss.CONFIG.update({k: v for k, v in best[part][1].items()
                                      if k.startswith(f"step_{part}")})
            key = f"B{batch}_{layout}_step_best"
            rows[key] = {**time_config({}, x), "config": dict(ss.CONFIG)}
            print(f"{key:44s}", rows[key], flush=True)
    ss.CONFIG.clear(); ss.CONFIG.update(base)
    return finish(rows, "step", os.path.join(out, "bench_scan_step.json"))


TILE_BWD = [(4, 4, 1, 8), (4, 8, 1, 16), (4, 4, 2, 16)]  # (block_t, n_in, warps, block_d)

SEG_LENS = ["auto", 128, 256, 512, 2048]
STATE_EVERY = [16, 32, 64]
SEG_FWD = [(4, 32, 1), (2, 32, 1), (8, 32, 1), (4, 64, 2)]  # (block_t, block_d, warps)
SEG_BWD = [(1, 4, 8, 1, 1), (2, 4, 8, 1, 1), (1, 2, 16, 1, 1), (1, 8, 4, 1, 1), (1, 4, 8, 1, 2),
           (2, 8, 4, 1, 1)]  # (block_t, n_batch, d_lanes, d_in, warps); [0] is CONFIG's
if os.environ.get("SEG_QUICK"):  # a short device call: the likeliest configurations only
    SEG_LENS, STATE_EVERY = ["auto", 2048], [16, 64]
    SEG_FWD, SEG_BWD = SEG_FWD[:3], SEG_BWD[:4]


def time_mixer_parts(x):
    """What the fused mixer runs with the current CONFIG: (forward ms, backward ms). Tile: the
    forward without states, then in the backward the forward again (states and y) and the scan
    backward. Step: the forward keeping its states, then the backward writing y."""
    if ss.bwd_writes_y(x["u"], x["delta"], x["B"], x["C"], x["z"]):
        fwd = lambda: ss.selective_scan_fwd(**x, save_states=True)  # noqa: E731
        y, _, states = fwd()
        dy = torch.randn_like(y)
        y_out = torch.empty_like(y)
        bwd = lambda: ss.selective_scan_bwd(dy, **x, states=states, y_out=y_out)  # noqa: E731
    else:
        fwd = lambda: ss.selective_scan_fwd(**x, save_states=False)  # noqa: E731
        y, _, _ = ss.selective_scan_fwd(**x)
        dy = torch.randn_like(y)

        def bwd():
            _, _, states = ss.selective_scan_fwd(**x)
            ss.selective_scan_bwd(dy, **x, states=states)
    out = []
    for fn in (fwd, bwd):
        fn()
        out.append(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))
    return out


def seg_sweep(out: str) -> int:
    """The step kernels with time segments against the tile kernels, as the mixer runs them
    (its (C, B*L) views), at B=8 and 16: segment length x state spacing with the default tiles,
    then the forward and backward tiles at the best pair; the best config is checked against an
    fp32 loop and written to step_best.json (CONFIG keys) for the end-to-end A/B."""
    rows: dict = {"device": torch.cuda.get_device_name(), "triton": triton.__version__}
    base = dict(ss.CONFIG)
    xs = {b: inputs(b, 1536, 16, 2048, torch.bfloat16, dbl=True) for b in (8, 16)}

    def run(key, cfg, batches=(8,)):
        ss.CONFIG.clear(); ss.CONFIG.update(base, **cfg)
        res = {}
        for b in batches:
            try:
                f, bw = time_mixer_parts(xs[b])
            except Exception as e:  # a config that fails to compile or run is reported
                rows[f"B{b}_{key}"] = {"error": repr(e)[:300]}
                print(f"B{b}_{key}", rows[f"B{b}_{key}"], flush=True)
                return None
            rows[f"B{b}_{key}"] = res[b] = {"fwd": f, "bwd": bw, "total": f + bw, "config": cfg}
            print(f"B{b}_{key:50s} fwd {f:.3f}  bwd {bw:.3f}  total {f + bw:.3f}", flush=True)
        return res[batches[0]]["total"]

    run("tile_default", {"impl": "tile"}, (8, 16))
    best = (1e9, None)
    for every in STATE_EVERY:
        for seg in SEG_LENS:
            cfg = {"impl": "step", "step_state_every": every, "step_seg_len": seg}
            t = run(f"step_every{every}_seg{seg}", cfg)
            if t is not None and t < best[0]:
                best = (t, cfg)
    for bt, bd, w in SEG_FWD[1:]:
        cfg = dict(best[1], step_fwd_block_t=bt, step_fwd_block_d=bd, step_fwd_warps=w)
        t = run(f"step_fwd_T{bt}_BD{bd}_W{w}", cfg)
        if t is not None and t < best[0]:
            best = (t, cfg)
    for bt, nb, dl, di, w in SEG_BWD[1:]:
        if best[1]["step_state_every"] % bt:
            continue
        cfg = dict(best[1], step_bwd_block_t=bt, step_bwd_n_batch=nb, step_bwd_d_lanes=dl,
                   step_bwd_d_in=di, step_bwd_warps=w)
        t = run(f"step_bwd_T{bt}_NB{nb}_DL{dl}_DI{di}_W{w}", cfg)
        if t is not None and t < best[0]:
            best = (t, cfg)
    for w in (8, 16, 32):  # "auto" segments: warps per SM aimed at
        if best[1].get("step_seg_len") == "auto":
            cfg = dict(best[1], step_warps_per_sm=w)
            t = run(f"step_auto_wps{w}", cfg)
            if t is not None and t < best[0]:
                best = (t, cfg)
    run("step_best", best[1], (8, 16))
    rows["step_best_config"] = best[1]
    with open(os.path.join(out, "step_best.json"), "w") as f:
        json.dump(best[1], f)
    print("best step config:", json.dumps(best[1]), flush=True)
    ss.CONFIG.clear(); ss.CONFIG.update(base, **best[1])
    code = finish(rows, "step_seg", os.path.join(out, "bench_scan_seg.json"))
    ss.CONFIG.clear(); ss.CONFIG.update(base)
    return code


def lanes_sweep(out: str) -> int:
    """The lanes kernels against the tile kernels, as the mixer runs them (its (C, B*L) views),
    at B=8 and 16: the forward alone, and the backward with the forward it reruns; the raw
    backward alone; the lanes chunk and warps; fp32 inputs; then the check of the default lanes
    config against an fp32 loop (and mamba_ssm's kernel when importable)."""
    rows: dict = {"device": torch.cuda.get_device_name(), "triton": triton.__version__}
    base = dict(ss.CONFIG)
    xs = {b: inputs(b, 1536, 16, 2048, torch.bfloat16, dbl=True) for b in (8, 16)}

    def run(key, cfg, batches=(8, 16), x=None):
        ss.CONFIG.clear(); ss.CONFIG.update(base, **cfg)
        for b in batches:
            xb = xs[b] if x is None else x
            try:
                f, bw = time_mixer_parts(xb)
                raw = time_raw_part("bwd", xb)
            except Exception as e:  # a config that fails to compile or run is reported
                rows[f"B{b}_{key}"] = {"error": repr(e)[:300]}
                print(f"B{b}_{key}", rows[f"B{b}_{key}"], flush=True)
                continue
            rows[f"B{b}_{key}"] = {"fwd": f, "bwd_with_rerun": bw, "total": f + bw,
                                   "bwd_raw": raw, "config": cfg}
            print(f"B{b}_{key:24s} fwd {f:.3f}  bwd(+rerun fwd) {bw:.3f}  total {f + bw:.3f}  "
                  f"raw bwd {raw:.3f}", flush=True)

    run("tile_default", {"impl": "tile"})
    run("lanes_default", {"impl": "lanes"})
    if not os.environ.get("LANES_QUICK"):  # each variant compiles its own kernels (~20 s)
        for k, w in ((4, 1), (8, 2)):
            run(f"lanes_K{k}_W{w}", {"impl": "lanes", "lanes_chunk": k, "lanes_warps": w}, (8,))
        x32 = inputs(8, 1536, 16, 2048, torch.float32, dbl=True)
        run("tile_fp32", {"impl": "tile"}, (8,), x32)
        run("lanes_fp32", {"impl": "lanes", "lanes_fp32": True}, (8,), x32)
    ss.CONFIG.clear(); ss.CONFIG.update(base, impl="lanes")
    code = finish(rows, "lanes", os.path.join(out, "bench_scan_lanes.json"))
    ss.CONFIG.clear(); ss.CONFIG.update(base)
    return code


def lanes_scaling(out: str) -> int:
    """How the lanes kernels' time grows with the batch (warps = B * D / 32): the forward (saving
    its states, as the mixer runs it) and the backward writing y, at B = 4 .. 64. Flat times
    mean the kernels are short of warps (latency-bound); proportional ones, that they are
    throughput-bound. Writes bench_scan_lanes_scaling.json."""
    rows: dict = {"device": torch.cuda.get_device_name(), "triton": triton.__version__,
                  "config": dict(ss.CONFIG)}
    for batch in (4, 8, 16, 32, 64):
        x = inputs(batch, 1536, 16, 2048, torch.bfloat16, dbl=True)
        f, bw = time_mixer_parts(x)
        rows[f"B{batch}"] = {"fwd": f, "bwd": bw, "warps": batch * 1536 // 32}
        print(f"B{batch:3d} warps {batch * 48:5d}  fwd {f:.3f}  bwd {bw:.3f}  "
              f"per 1k rows: fwd {f / batch / 1.536:.4f} bwd {bw / batch / 1.536:.4f}", flush=True)
        del x
        torch.cuda.empty_cache()
    with open(os.path.join(out, "bench_scan_lanes_scaling.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return 0


def lanes_parts(out: str) -> int:
    """The lanes backward at batches beyond one wave of the device, in one launch against the
    parts selective_scan_lanes_bwd.batch_parts gives (and B=16, one wave, as the reference), as
    the mixer runs it. Writes bench_scan_lanes_parts.json."""
    from mambalab.ops.triton.selective_scan_lanes_bwd import batch_parts

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    rows: dict = {"device": torch.cuda.get_device_name(), "triton": triton.__version__,
                  "config": dict(ss.CONFIG)}
    base = dict(ss.CONFIG)
    # PARTS_BATCHES / PARTS_WAVE (environment): other batches; another value of
    # lanes_bwd_wave_warps_per_sm, the warps an SM holds, above which batch_parts splits
    batches = [int(b) for b in os.environ.get("PARTS_BATCHES", "16,24,32,48,64").split(",")]
    wave_parts = int(os.environ.get("PARTS_WAVE", base["lanes_bwd_wave_warps_per_sm"]))
    for batch in batches:
        x = inputs(batch, 1536, 16, 2048, torch.bfloat16, dbl=True)
        for name, wave in (("one_launch", None), ("parts", wave_parts)):
            if name == "parts" and len(batch_parts(batch, 48, sms, wave)) == 1:
                continue  # one launch either way
            ss.CONFIG.clear(); ss.CONFIG.update(base, lanes_bwd_wave_warps_per_sm=wave)
            f, bw = time_mixer_parts(x)
            rows[f"B{batch}_{name}"] = {"fwd": f, "bwd": bw, "warps": batch * 48}
            print(f"B{batch:3d} {name:10s} wave {wave} fwd {f:.3f}  bwd {bw:.3f}  bwd per row "
                  f"{bw / batch:.4f}", flush=True)
        del x
        torch.cuda.empty_cache()
    ss.CONFIG.clear(); ss.CONFIG.update(base)
    with open(os.path.join(out, "bench_scan_lanes_parts.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return 0


LANES_VARIANTS = {  # name: CONFIG keys; "base" is the fourth session's pipelining (none)
    "base": {"lanes_pipeline": False, "lanes_bwd_pipeline": 0},
    "fwd_pipe": {"lanes_pipeline": True, "lanes_bwd_pipeline": 0},
    "bwd_pipe1": {"lanes_pipeline": True, "lanes_bwd_pipeline": 1},
    # eighth session (the defaults became fp16 states, (D, N) a chunk, and bf16 dB/dC partials:
    # "bwd_pipe1" is them now): 4-step chunks; the fp32 states and partials of before
    "K4": {"lanes_pipeline": True, "lanes_bwd_pipeline": 1, "lanes_chunk": 4},
    "fp32": {"lanes_pipeline": True, "lanes_bwd_pipeline": 1, "lanes_states": "float32",
             "lanes_dbc_16bit": False},
}
VARIANT_BATCHES = tuple(int(b) for b in os.environ.get("VARIANT_BATCHES", "8,16,32").split(","))
VARIANTS_ONLY = os.environ.get("VARIANTS_ONLY")  # comma-separated names, e.g. to skip the old ones
# measured slower in the fifth session's second call (B=16, bwd 3.01 and 8.91 ms against 2.19):
# {"lanes_bwd_split": 2} (since removed) and {"lanes_bwd_pipeline": 2} (then True); in the sixth
# session's first call, the backward in state passes (lanes_bwd_passes 2 or 4, with ptxas's
# register cap at 168 or 128 or none; since removed: git show 37fb4c8), B=16 bwd 2.51-4.07 ms
# against 2.26 (docs/kernels/selective_scan.md)


def lanes_variants(out: str) -> int:
    """The lanes kernels' pipelining and backward-split variants as the mixer runs them, at B=8
    and 16; the fastest forward and backward choices (by B=16) are checked against an fp32 loop
    and written to best_scan.json (MAMBALAB_SCAN_CONFIG for the benchmark that follows)."""
    rows: dict = {"device": torch.cuda.get_device_name(), "triton": triton.__version__}
    base = dict(ss.CONFIG, impl="lanes")
    xs = {b: inputs(b, 1536, 16, 2048, torch.bfloat16, dbl=True) for b in VARIANT_BATCHES}
    names = [n for n in LANES_VARIANTS if not VARIANTS_ONLY or n in VARIANTS_ONLY.split(",")]
    for name in names:
        cfg = LANES_VARIANTS[name]
        ss.CONFIG.clear(); ss.CONFIG.update(base, **cfg)
        for b in VARIANT_BATCHES:
            try:
                f, bw = time_mixer_parts(xs[b])
            except Exception as e:  # a variant that fails to compile or run is reported
                rows[f"B{b}_{name}"] = {"error": repr(e)[:300]}
                print(f"B{b}_{name}", rows[f"B{b}_{name}"], flush=True)
                continue
            rows[f"B{b}_{name}"] = {"fwd": f, "bwd": bw, "total": f + bw, "config": cfg}
            print(f"B{b}_{name:12s} fwd {f:.3f}  bwd {bw:.3f}  total {f + bw:.3f}", flush=True)
    # the backward by its time per batch row summed over the batches timed (the benchmark's best
    # batches are the large ones); the forward, which no variant but base changes, at B=16
    def per_row(n):
        got = [rows.get(f"B{b}_{n}", {}).get("bwd") for b in VARIANT_BATCHES]
        return sum(x / b for x, b in zip(got, VARIANT_BATCHES)) if None not in got else 1e9
    bwd_best = min(names, key=per_row)
    fwd_names = [n for n in ("base", "fwd_pipe") if n in names] or [bwd_best]
    fwd_best = min(fwd_names, key=lambda n: rows.get(f"B16_{n}", {}).get("fwd", 1e9))
    best = {"impl": "lanes", "lanes_pipeline": LANES_VARIANTS[fwd_best]["lanes_pipeline"]}
    best.update({k: v for k, v in LANES_VARIANTS[bwd_best].items() if k != "lanes_pipeline"})
    rows["best"] = best
    print("best lanes config:", json.dumps(best), flush=True)
    with open(os.path.join(out, "best_scan.json"), "w") as f:
        json.dump(best, f)
    ss.CONFIG.clear(); ss.CONFIG.update(base, **best)
    code = finish(rows, "lanes_variants", os.path.join(out, "bench_scan_lanes_variants.json"))
    ss.CONFIG.clear(); ss.CONFIG.update(base)
    return code


def lanes_segments(out: str) -> int:
    """The lanes kernels in time segments (CONFIG["lanes_fwd_segments"], ["lanes_bwd_segments"]:
    1, 2, 4, "auto") at B = 1 .. 16 and at B=1, L=16384: the forward saving its states and the
    raw backward from them without y (as the fused mixer runs them, the forward's y kept), each
    over the segment counts; then the scan's autograd Function forward + backward (as the
    benchmark's ops table times it: contiguous inputs) with both off and both auto. Then the
    fp32-loop check at B=2 (auto: 8 segments each way) and with 3 forced. Writes
    bench_scan_lanes_segments.json."""
    rows: dict = {"device": torch.cuda.get_device_name(), "triton": triton.__version__}
    base = dict(ss.CONFIG, impl="lanes")
    shapes = [(int(b), 2048) for b in os.environ.get("SEG_BATCHES", "1,2,4,8,16").split(",")]
    shapes.append((1, 16384))
    for batch, seqlen in shapes:
        xd = inputs(batch, 1536, 16, seqlen, torch.bfloat16, dbl=True)
        xc = inputs(batch, 1536, 16, seqlen, torch.bfloat16)
        key = f"B{batch}_L{seqlen}"
        for segs in (1, 2, 4, "auto"):
            ss.CONFIG.clear()
            ss.CONFIG.update(base, lanes_fwd_segments=segs, lanes_bwd_segments=segs)
            fwd = lambda: ss.selective_scan_fwd(**xd, save_states=True)  # noqa: E731
            y, _, states = fwd()
            dy = torch.randn_like(y)
            bwd = lambda: ss.selective_scan_bwd(dy, **xd, states=states)  # noqa: E731
            bwd()
            f = triton.testing.do_bench(fwd, warmup=25, rep=100, return_mode="median")
            raw = triton.testing.do_bench(bwd, warmup=25, rep=100, return_mode="median")
            rows[f"{key}_seg{segs}"] = {"fwd": f, "raw_bwd": raw}
            print(f"{key:12s} segments {segs!s:5s} fwd {f:.3f}  raw bwd {raw:.3f}", flush=True)
        for segs in (1, "auto"):
            ss.CONFIG.clear()
            ss.CONFIG.update(base, lanes_fwd_segments=segs, lanes_bwd_segments=segs)
            fb = time_config({}, xc)["fwd+bwd"]
            rows[f"{key}_seg{segs}"]["fn_fwd+bwd"] = fb
            print(f"{key:12s} segments {segs!s:5s} Function fwd+bwd {fb:.3f}", flush=True)
    code = 0
    for segs in ("auto", 3):
        ss.CONFIG.clear(); ss.CONFIG.update(base, lanes_fwd_segments=segs, lanes_bwd_segments=segs)
        errs, finite = check()
        rows[f"check_seg{segs}"] = {"errs": errs, "finite": finite}
        print(f"check segments {segs} (B=2, L=2048, bf16, vs fp32 loop):", finite, errs, flush=True)
        code |= 0 if finite and max(errs.values()) < 2e-2 else 1
    ss.CONFIG.clear(); ss.CONFIG.update(base)
    mamba_ssm_times(rows)
    with open(os.path.join(out, "bench_scan_lanes_segments.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return code


def tile_sweep(out: str) -> int:
    """The tile kernels at B=8 and 16 on the three layouts (dbl: the mixer's (C, B*L) views;
    channel_last; contiguous) and a few backward tiles; then mamba_ssm's kernel on contiguous
    inputs when importable. (The 2026-11-28 run also timed the backward with its reversed-time
    loads after the chunk's stores, the kernel before: docs/bench/h100-2026-11-28-scan-tile.json.)"""
    rows: dict = {"device": torch.cuda.get_device_name(), "triton": triton.__version__}
    base = dict(ss.CONFIG, impl="tile")
    for batch, layout in ((8, "dbl"), (8, "channel_last"), (8, "contiguous"), (16, "dbl")):
        x = inputs(batch, 1536, 16, 2048, torch.bfloat16, transposed=layout == "channel_last",
                   dbl=layout == "dbl")
        ss.CONFIG.clear(); ss.CONFIG.update(base)
        key = f"B{batch}_{layout}"
        rows[key] = time_config({}, x)
        print(f"{key:40s}", {k: round(v, 3) for k, v in rows[key].items()}, flush=True)
        if layout != "dbl" or batch != 8:
            continue
        for bt, ni, w, bd in TILE_BWD[1:]:
            ss.CONFIG.clear(); ss.CONFIG.update(base, block_t=bt, bwd_n_in=ni, bwd_warps=w,
                                                bwd_block_d=bd)
            key = f"B{batch}_{layout}_bwd_T{bt}_NI{ni}_W{w}_BD{bd}"
            try:
                rows[key] = time_raw_part("bwd", x)
            except Exception as e:
                rows[key] = {"error": repr(e)[:300]}
            print(key, rows[key], flush=True)
    ss.CONFIG.clear(); ss.CONFIG.update(base)
    return finish(rows, "tile", os.path.join(out, "bench_scan_tile.json"))


def time_raw_part(part, x):
    """Median ms of the forward alone (no states saved) or the backward alone (from saved
    states), with the current CONFIG."""
    if part == "fwd":
        fn = lambda: ss.selective_scan_fwd(**x, save_states=False)  # noqa: E731
    else:
        y, _, states = ss.selective_scan_fwd(**x)
        dy = torch.randn_like(y)
        fn = lambda: ss.selective_scan_bwd(dy, **x, states=states)  # noqa: E731
    fn()
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="all")
    ap.add_argument("--impl", default="tile", choices=["tile", "step", "tile-variants", "seg", "lanes",
                                                     "lanes-scaling", "lanes-variants", "lanes-parts",
                                                     "lanes-segments"])
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "triton", triton.__version__)
    if args.impl == "step":
        return step_sweep(args.out)
    if args.impl == "tile-variants":
        return tile_sweep(args.out)
    if args.impl == "seg":
        return seg_sweep(args.out)
    if args.impl == "lanes":
        return lanes_sweep(args.out)
    if args.impl == "lanes-scaling":
        return lanes_scaling(args.out)
    if args.impl == "lanes-variants":
        return lanes_variants(args.out)
    if args.impl == "lanes-parts":
        return lanes_parts(args.out)
    if args.impl == "lanes-segments":
        return lanes_segments(args.out)
    ss.CONFIG["impl"] = "tile"
    rows = {}
    rows["copy_GBps"] = copy_bandwidth()
    print(f"copy bandwidth {rows['copy_GBps']:.0f} GB/s")

    x = inputs(8, 1536, 16, 2048, torch.bfloat16)
    # (block_t, n_in, warps); block_d = (32 // (16 // n_in)) * warps keeps a warp off the time axis
    fwd_cfgs = [(4, 8, 2), (8, 8, 2), (8, 4, 2), (4, 4, 2), (4, 8, 1), (8, 4, 1)]
    bwd_cfgs = [(4, 4, 2), (4, 8, 2), (4, 8, 1), (4, 4, 1), (8, 4, 2), (8, 8, 2)]
    if args.configs != "all":
        fwd_cfgs, bwd_cfgs = fwd_cfgs[:1], bwd_cfgs[1:2]
    best = {}
    for part, cfgs in (("fwd", fwd_cfgs), ("bwd", bwd_cfgs)):
        for bt, ni, w in cfgs:
            bd = (32 // (16 // ni)) * w
            key = f"{part}_T{bt}_NI{ni}_W{w}_BD{bd}"
            try:
                ms = time_part(part, dict(block_t=bt, n_in=ni, block_d=bd, warps=w), x)
            except Exception as e:  # a config that fails to compile is reported, not fatal
                rows[key] = {"error": repr(e)[:300]}
                print(key, rows[key], flush=True)
                continue
            rows[key] = ms
            print(f"{key:28s} {ms:.3f} ms", flush=True)
            if ms < best.get((part, bt), (1e9,))[0]:
                best[(part, bt)] = (ms, ni, w, bd)
    ts = [t for t in {t for _, t in best} if ("fwd", t) in best and ("bwd", t) in best]
    bt = min(ts, key=lambda t: best[("fwd", t)][0] + best[("bwd", t)][0])
    _, fni, fw, fbd = best[("fwd", bt)]
    _, bni, bw, bbd = best[("bwd", bt)]
    ss.CONFIG.update(dict(block_t=bt, fwd_n_in=fni, fwd_warps=fw, fwd_block_d=fbd, bwd_n_in=bni,
                          bwd_warps=bw, bwd_block_d=bbd))
    print("chosen", ss.CONFIG)
    rows["chosen"] = dict(ss.CONFIG)
    rows["chosen_times"] = time_config({}, x)
    print("chosen, bf16, (B, D, L) contiguous", rows["chosen_times"])
    ss.CONFIG["keep_states"] = False
    rows["chosen_recompute"] = time_config({}, x)
    print("chosen, keep_states=False", rows["chosen_recompute"])
    ss.CONFIG["keep_states"] = True
    rows["mixer_layout"] = time_config({}, inputs(8, 1536, 16, 2048, torch.bfloat16, True))
    print("mixer layout (views of (B, L, 3D))", rows["mixer_layout"])
    rows["fp32_inputs"] = time_config({}, inputs(8, 1536, 16, 2048, torch.float32))
    print("fp32 inputs", rows["fp32_inputs"])
    errs, finite = check()
    rows["check_bf16"] = {"errs": errs, "finite": finite}
    print("check (B=2, D=1536, N=16, L=2048, bf16, vs fp32 loop):", finite, errs)
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        leaves = {k: v.detach().requires_grad_(True) for k, v in x.items()}
        dy = torch.randn_like(x["u"])

        def theirs():
            selective_scan_fn(leaves["u"], leaves["delta"], leaves["A"], leaves["B"],
                              leaves["C"], leaves["D"], leaves["z"], leaves["delta_bias"],
                              True).backward(dy)
        rows["mamba_ssm_fwd+bwd"] = triton.testing.do_bench(theirs, return_mode="median")
        print("mamba_ssm fwd+bwd", rows["mamba_ssm_fwd+bwd"])
    except ImportError:
        print("mamba_ssm not importable: no comparison")
    with open(os.path.join(args.out, "bench_scan.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print("\nconfig                 fwd ms   bwd ms   fwd+bwd ms")
    for k, v in rows.items():
        if isinstance(v, dict) and "fwd" in v:
            print(f"{k:22s} {v['fwd']:7.3f}  {v['bwd']:7.3f}  {v['fwd+bwd']:7.3f}")
    return 0 if finite and max(errs.values()) < 2e-2 else 1


if __name__ == "__main__":
    sys.exit(main())
