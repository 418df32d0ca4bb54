"""Triton selective scan vs the reference loop in fp64: outputs and every gradient.

Without a GPU the small cases run under TRITON_INTERPRET=1 (set below before Triton is imported);
on a GPU machine (run this file on its own) they run compiled on the GPU, and the full-size case
(B=8, L=2048, D=1536, N=16, bf16) runs as well.
"""
from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cpu" if INTERPRET else "cuda"

import pytest  # noqa: E402

pytest.importorskip("triton")

from mambalab.ops.selective_scan.reference import selective_scan_ref  # noqa: E402
from mambalab.ops.triton import selective_scan as ss  # noqa: E402
from mambalab.ops.triton.selective_scan import selective_scan_triton  # noqa: E402


def make_inputs(batch, dim, dstate, seqlen, dtype, device, *, with_z, with_d, with_bias, with_h0,
                with_docs, transposed=False, gen=None):
    rnd = lambda *s: torch.randn(*s, generator=gen).to(device)  # noqa: E731
    if transposed:  # u, delta, z as (B, D, L) views of a (B, L, 3D) projection: stride(-1) != 1
        xz = rnd(batch, seqlen, 3 * dim).to(dtype)
        u, delta, z = (xz[..., i * dim:(i + 1) * dim].transpose(1, 2) for i in range(3))
        delta = delta * 0.5 - 1.0
    else:
        u, z = rnd(batch, dim, seqlen).to(dtype), rnd(batch, dim, seqlen).to(dtype)
        delta = (rnd(batch, dim, seqlen) * 0.5 - 1.0).to(dtype)
    inputs = dict(
        u=u, delta=delta,
        A=-torch.exp(rnd(dim, dstate) * 0.5),  # negative, as -exp(A_log)
        B=rnd(batch, dstate, seqlen).to(dtype), C=rnd(batch, dstate, seqlen).to(dtype),
        D=rnd(dim) if with_d else None, z=z if with_z else None,
        delta_bias=rnd(dim) * 0.3 if with_bias else None,
        initial_state=rnd(batch, dim, dstate) if with_h0 else None,
    )
    docs = None
    if with_docs:
        docs = torch.rand(batch, seqlen, generator=gen) < 0.1
        docs[0, 0] = True  # batch 1 keeps its initial state, so its gradient is tested
        docs[1:, 0] = False
        docs[0, seqlen // 2] = True
        docs = docs.to(device)
    return inputs, docs


GRAD_NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state"]


def check_against_reference(inputs, docs, softplus, tol, return_last, gen):
    leaves = {k: (v.detach().clone().requires_grad_(True) if v is not None else None)
              for k, v in inputs.items()}
    out = selective_scan_triton(**leaves, delta_softplus=softplus, doc_starts=docs,
                                return_last_state=return_last)
    y, last = out if return_last else (out, None)
    dy = torch.randn(y.shape, generator=gen).to(y.device)
    loss = (y.float() * dy).sum()
    dlast = None
    if return_last:
        dlast = torch.randn(last.shape, generator=gen).to(y.device)
        loss = loss + (last * dlast).sum()
    loss.backward()

    ref_leaves = {k: (v.detach().double().requires_grad_(True) if v is not None else None)
                  for k, v in inputs.items()}
    # The reference in fp64 (its compute dtype follows u's).
    y_ref, last_ref = selective_scan_ref(**ref_leaves, delta_softplus=softplus, doc_starts=docs,
                                         return_last_state=True)
    loss_ref = (y_ref * dy.double()).sum()
    if return_last:
        loss_ref = loss_ref + (last_ref * dlast.double()).sum()
    loss_ref.backward()

    def rel(a, b):
        assert torch.isfinite(a).all(), "non-finite values (an unwritten element?)"
        return ((a.double() - b).norm() / b.norm().clamp_min(1e-12)).item()

    assert y.dtype == inputs["u"].dtype
    errs = {"y": rel(y, y_ref)}
    if return_last:
        errs["last_state"] = rel(last, last_ref)
    for name in GRAD_NAMES:
        if leaves.get(name) is not None:
            errs["d" + name] = rel(leaves[name].grad, ref_leaves[name].grad)
    bad = {k: v for k, v in errs.items() if not v < tol}
    assert not bad, f"relative errors above {tol}: {bad} (all: {errs})"


CASES = [
    # (seqlen, dim, dstate, dtype, z, D, bias, softplus, h0, docs, last, transposed, n_in, keep)
    (1, 8, 4, torch.float32, True, True, True, True, True, True, True, False, 4, True),
    (17, 8, 4, torch.float32, False, False, False, False, False, False, False, False, 1, False),
    (63, 12, 5, torch.float32, True, True, True, True, False, True, False, True, 2, True),
    (130, 16, 16, torch.float32, True, True, False, True, True, False, True, False, 4, True),
    (63, 8, 16, torch.bfloat16, True, True, True, True, False, True, True, False, 16, False),
]


@pytest.mark.parametrize("impl", ["step", "step-seg", "tile"])
@pytest.mark.parametrize("case", CASES, ids=[f"L{c[0]}-D{c[1]}-N{c[2]}-{str(c[3])[6:]}"
                                               for c in CASES])
def test_matches_reference_cpu(case, impl, monkeypatch, nan_empty):
    # nan_empty: an output element the kernels never write shows up as NaN
    seqlen, dim, dstate, dtype, z, d, bias, sp, h0, docs, last, transposed, n_in, keep = case
    # Small tiles so that several channel blocks and chunks (and a ragged last chunk) are run;
    # n_in changes how the states split between registers and lanes; keep=False reruns the
    # forward in the backward instead of keeping the chunk states.
    monkeypatch.setitem(ss.CONFIG, "fwd_n_in", n_in)
    monkeypatch.setitem(ss.CONFIG, "bwd_n_in", n_in)
    monkeypatch.setitem(ss.CONFIG, "keep_states", keep)
    monkeypatch.setitem(ss.CONFIG, "block_t", 16)
    monkeypatch.setitem(ss.CONFIG, "fwd_block_d", 4)
    monkeypatch.setitem(ss.CONFIG, "bwd_block_d", 4)
    # step kernels: states every 8 steps, chunks of 4 (forward) and 2 (backward), two channel
    # blocks of 2 x 2 channels and both batches in one backward program (d_in, n_batch, d_lanes)
    # step-seg: time split into segments of 16 steps (two state blocks), scanned in parallel
    monkeypatch.setitem(ss.CONFIG, "impl", "step" if impl == "step-seg" else impl)
    monkeypatch.setitem(ss.CONFIG, "step_seg_len", 16 if impl == "step-seg" else 10**9)
    monkeypatch.setitem(ss.CONFIG, "step_state_every", 8)
    monkeypatch.setitem(ss.CONFIG, "step_fwd_block_t", 4)
    monkeypatch.setitem(ss.CONFIG, "step_bwd_block_t", 2)
    monkeypatch.setitem(ss.CONFIG, "step_fwd_block_d", 4)
    monkeypatch.setitem(ss.CONFIG, "step_fwd_n_in", n_in)
    monkeypatch.setitem(ss.CONFIG, "step_bwd_n_in", n_in)
    monkeypatch.setitem(ss.CONFIG, "step_bwd_d_in", 2)
    monkeypatch.setitem(ss.CONFIG, "step_bwd_n_batch", 2)
    monkeypatch.setitem(ss.CONFIG, "step_bwd_d_lanes", 2)
    gen = torch.Generator().manual_seed(seqlen * 131 + dim)
    inputs, doc_starts = make_inputs(2, dim, dstate, seqlen, dtype, DEVICE, with_z=z, with_d=d,
                                     with_bias=bias, with_h0=h0, with_docs=docs,
                                     transposed=transposed, gen=gen)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    check_against_reference(inputs, doc_starts, sp, tol, last, gen)


LANES_CASES = [
    # (seqlen, dim, dstate, dtype, z, D, bias, softplus, h0, docs, last, chunk, warps, keep,
    #  pipeline (backward: 0, 1 or 2; forward: on unless 0))
    (32, 64, 16, torch.float32, True, True, True, True, True, True, True, 8, 1, False, 1),
    (24, 64, 5, torch.float32, False, False, False, True, False, False, False, 4, 2, True, 0),
    (16, 32, 16, torch.bfloat16, True, True, True, False, False, True, True, 8, 1, False, 2),
    (24, 32, 16, torch.bfloat16, True, True, True, True, True, True, True, 8, 1, False, 0),
]


@pytest.mark.parametrize("case", LANES_CASES, ids=[f"L{c[0]}-D{c[1]}-N{c[2]}-{str(c[3])[6:]}-pipe{c[14]}"
                                                     for c in LANES_CASES])
def test_lanes_matches_reference_cpu(case, monkeypatch, nan_empty):
    """The lanes kernels (warp shuffles emulated under the interpreter, lane for lane): two
    programs or two warps a program, several chunks, every optional input in some case."""
    seqlen, dim, dstate, dtype, z, d, bias, sp, h0, docs, last, chunk, warps, keep, pipe = case
    monkeypatch.setitem(ss.CONFIG, "impl", "lanes")
    monkeypatch.setitem(ss.CONFIG, "lanes_fp32", True)  # fp32 cases run the lanes kernels too
    monkeypatch.setitem(ss.CONFIG, "lanes_chunk", chunk)
    monkeypatch.setitem(ss.CONFIG, "lanes_warps", warps)
    monkeypatch.setitem(ss.CONFIG, "keep_states", keep)
    monkeypatch.setitem(ss.CONFIG, "lanes_pipeline", bool(pipe))
    monkeypatch.setitem(ss.CONFIG, "lanes_bwd_pipeline", pipe)  # 0, 1 or 2
    # fp32 states: fp32 cases at 1e-4, and cases without softplus, whose negative deltas make
    # the states grow past fp16's range (fp16 states and their fallback: their own tests)
    monkeypatch.setitem(ss.CONFIG, "lanes_states", "float32")
    gen = torch.Generator().manual_seed(seqlen * 7 + dim)
    inputs, doc_starts = make_inputs(2, dim, dstate, seqlen, dtype, DEVICE, with_z=z, with_d=d,
                                     with_bias=bias, with_h0=h0, with_docs=docs, gen=gen)
    assert ss.lanes_ok(inputs["u"], inputs["delta"], inputs["B"], inputs["C"], inputs["z"])
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    check_against_reference(inputs, doc_starts, sp, tol, last, gen)


@pytest.mark.parametrize("states,dbc16,dstate", [("float16", False, 16), ("float16", True, 5),
                                                ("float32", True, 16)])
@pytest.mark.parametrize("chunk", [8, 4])
def test_lanes_saved_states_and_partials(states, dbc16, dstate, chunk, monkeypatch, nan_empty):
    """The saved chunk states in fp16 (lanes_states; N = 16: (D, N) a chunk, stored as vectors;
    N = 5: (N, D)) or fp32, the dB/dC partials in bf16 or fp32 (lanes_dbc_16bit), two warps a
    program: the reference check, fp32 inputs at 2e-3 where the states are fp16 (their rounding,
    2^-12 relative, shows there, far below it), bf16 inputs at 2e-2 as every bf16 case."""
    from mambalab.ops.triton import lanes_states

    for key, value in (("impl", "lanes"), ("lanes_fp32", True), ("lanes_chunk", chunk),
                       ("lanes_warps", 2), ("lanes_states", states), ("lanes_dbc_16bit", dbc16)):
        monkeypatch.setitem(ss.CONFIG, key, value)
    for dtype, tol in ((torch.float32, 2e-3 if states == "float16" else 1e-4),
                       (torch.bfloat16, 2e-2)):
        gen = torch.Generator().manual_seed(chunk)
        inputs, doc_starts = make_inputs(2, 64, dstate, 16, dtype, DEVICE, with_z=True,
                                         with_d=True, with_bias=True, with_h0=True,
                                         with_docs=True, gen=gen)
        check_against_reference(inputs, doc_starts, True, tol, True, gen)
    # what the forward saved: the dtype asked for, in the layout lanes_states gives it
    _, _, saved = ss.selective_scan_fwd(**inputs, doc_starts=doc_starts)
    assert saved.dtype == getattr(torch, states)
    dn = lanes_states.is_dn(saved, 2, 16 // chunk, 64, dstate)
    assert dn == (states == "float16" and dstate == 16)


def test_lanes_fp16_states_overflow_falls_back_to_fp32(monkeypatch, nan_empty):
    """States beyond fp16's 65504 (an initial state of ~1e6): the forward raises the overflow
    flag; the next forward warns and saves fp32 states, whose gradients match the reference. The
    flag and the warning are per process: reset here."""
    from mambalab.ops.triton import lanes_states

    monkeypatch.setattr(lanes_states, "_flags", {})
    monkeypatch.setattr(lanes_states, "_warned", False)
    for key, value in (("impl", "lanes"), ("lanes_fp32", True), ("lanes_chunk", 8),
                       ("lanes_states", "float16")):
        monkeypatch.setitem(ss.CONFIG, key, value)
    gen = torch.Generator().manual_seed(3)
    inputs, _ = make_inputs(2, 32, 16, 32, torch.float32, DEVICE, with_z=True, with_d=True,
                            with_bias=True, with_h0=True, with_docs=False, gen=gen)
    _, _, saved = ss.selective_scan_fwd(**inputs)  # in range: fp16, no flag
    assert saved.dtype == torch.float16 and int(lanes_states.overflow_flag(saved.device)) == 0
    inputs["initial_state"] = inputs["initial_state"] * 1e6
    _, _, saved = ss.selective_scan_fwd(**inputs)
    assert not torch.isfinite(saved.float()).all()
    if DEVICE == "cuda":
        torch.cuda.synchronize()  # the flag's copy to the host was not waited for
    with pytest.warns(RuntimeWarning, match="fp16's range"):
        _, _, saved = ss.selective_scan_fwd(**inputs)
    assert saved.dtype == torch.float32
    check_against_reference(inputs, None, True, 1e-4, True, gen)


def test_forward_register_cap():
    """lanes_fwd_maxnreg: "auto" caps ptxas at 168 registers where that adds no wave of one-warp
    programs (12 an SM fit at 168, 16 at 128), never off CUDA; an int or None passes; anything
    else is an error naming the key."""
    from mambalab.ops.triton.selective_scan_lanes_fwd import FWD_MAXNREG, fwd_maxnreg

    assert fwd_maxnreg("auto", 1536, None) is None           # CPU / interpreter
    assert fwd_maxnreg("auto", 768, 132) == FWD_MAXNREG      # B=8 in 2 segments, D=1536
    assert fwd_maxnreg("auto", 1536, 132) == FWD_MAXNREG     # B=32: one wave either way
    assert fwd_maxnreg("auto", 2000, 132) is None            # 1 wave at 128, 2 at 168
    assert fwd_maxnreg("auto", 3072, 132) == FWD_MAXNREG     # 2 waves either way
    assert fwd_maxnreg(None, 1536, 132) is None
    assert fwd_maxnreg(200, 1536, 132) == 200
    for bad in ("168", 300, True, 1.5):
        with pytest.raises(ValueError, match="lanes_fwd_maxnreg"):
            fwd_maxnreg(bad, 1536, 132)


def test_lanes_states_dtype_is_checked(monkeypatch):
    monkeypatch.setitem(ss.CONFIG, "lanes_states", "bfloat8")
    with pytest.raises(ValueError, match="lanes_states"):
        ss.lanes_states_dtype()
    from mambalab.ops.triton import lanes_states

    # fp16 states are (D, N) a chunk where N fills 16-byte vectors, else (N, D); fp32 (N, D)
    assert lanes_states.layout_dn(16, torch.float16)
    assert not lanes_states.layout_dn(4, torch.float16)
    assert not lanes_states.layout_dn(16, torch.float32)
    with pytest.raises(ValueError, match="another chunk"):
        lanes_states.is_dn(torch.empty(2, 4, 32, 16), 2, 4, 32, 16)  # fp32 states are (N, D)


def test_lanes_backward_in_batch_parts(monkeypatch, nan_empty):
    """A batch larger than one wave of the device is launched in parts of its rows (the kernel
    sees views of every (B, ...) tensor): forced here to one row a launch, it matches the
    reference; and the parts the device's size gives."""
    from mambalab.ops.triton import selective_scan_lanes_bwd as lb

    assert lb.batch_parts(32, 48, 132) == [(0, 16), (16, 32)]  # 1,536 warps, 1,056 a wave
    assert lb.batch_parts(16, 48, 132) == [(0, 16)]
    assert lb.batch_parts(64, 48, 132) == [(0, 16), (16, 32), (32, 48), (48, 64)]
    assert lb.batch_parts(24, 48, 132) == [(0, 12), (12, 24)]
    assert lb.batch_parts(20, 48, 132) == [(0, 20)]                # 960 warps: one wave
    assert lb.batch_parts(3, 48, None) == [(0, 3)]               # off CUDA: one launch
    assert lb.batch_parts(32, 48, 132, None) == [(0, 32)]        # the parts switched off
    monkeypatch.setattr(lb, "batch_parts", lambda batch, warps, sms, wave: [(b, b + 1)
                                                                             for b in range(batch)])
    monkeypatch.setitem(ss.CONFIG, "impl", "lanes")
    monkeypatch.setitem(ss.CONFIG, "lanes_chunk", 8)
    gen = torch.Generator().manual_seed(5)
    inputs, doc_starts = make_inputs(2, 32, 16, 16, torch.bfloat16, DEVICE, with_z=True,
                                     with_d=True, with_bias=True, with_h0=True, with_docs=True,
                                     gen=gen)
    check_against_reference(inputs, doc_starts, True, 2e-2, True, gen)


def test_lanes_contract_falls_back_to_tile(monkeypatch):
    """Shapes the lanes kernels do not take go to the tile kernels."""
    monkeypatch.setitem(ss.CONFIG, "impl", "lanes")
    gen = torch.Generator().manual_seed(3)

    def ok(dim=32, dstate=16, seqlen=16, transposed=False):
        x, _ = make_inputs(1, dim, dstate, seqlen, torch.float32, DEVICE, with_z=True,
                           with_d=True, with_bias=True, with_h0=False, with_docs=False,
                           transposed=transposed, gen=gen)
        return ss.lanes_ok(x["u"], x["delta"], x["B"], x["C"], x["z"])
    assert not ok()                 # fp32 inputs: the tile kernels unless lanes_fp32
    monkeypatch.setitem(ss.CONFIG, "lanes_fp32", True)
    assert ok()
    assert not ok(dstate=32)        # B and C of one step fill one warp: N <= 16
    assert not ok(dim=48)           # channels in whole warps
    assert not ok(seqlen=12)        # whole chunks of lanes_chunk steps
    assert not ok(transposed=True)  # unit stride along time
    monkeypatch.setitem(ss.CONFIG, "impl", "tile")
    assert not ok()


def test_doc_starts_isolate_documents():
    """A document's outputs do not depend on what came before its start."""
    gen = torch.Generator().manual_seed(0)
    inputs, _ = make_inputs(1, 4, 4, 20, torch.float32, DEVICE, with_z=True, with_d=True,
                            with_bias=True, with_h0=False, with_docs=False, gen=gen)
    docs = torch.zeros(1, 20, dtype=torch.bool, device=DEVICE)
    docs[0, 9] = True
    y = selective_scan_triton(**inputs, doc_starts=docs)
    tail = {k: (v[..., 9:].contiguous() if k in ("u", "delta", "B", "C", "z") else v)
            for k, v in inputs.items()}
    y_tail = selective_scan_triton(**tail)
    torch.testing.assert_close(y[..., 9:], y_tail, rtol=1e-5, atol=1e-5)


def test_bad_shape_names_the_problem():
    gen = torch.Generator().manual_seed(1)
    inputs, _ = make_inputs(1, 4, 4, 8, torch.float32, DEVICE, with_z=False, with_d=False,
                            with_bias=False, with_h0=False, with_docs=False, gen=gen)
    bad = dict(inputs, B=inputs["B"][:, :, :5])
    with pytest.raises(ValueError, match="B must be"):
        selective_scan_triton(**bad)
    empty = {k: (v[..., :0] if k in ("u", "delta", "B", "C") else v) for k, v in inputs.items()}
    with pytest.raises(ValueError, match="seqlen >= 1"):
        selective_scan_triton(**empty)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("impl", ["tile", "lanes"])
def test_matches_reference_gpu_full_size(impl, monkeypatch):
    monkeypatch.setitem(ss.CONFIG, "impl", impl)
    if INTERPRET:
        pytest.skip("Triton was imported in interpreter mode (TRITON_INTERPRET=1, maybe set by "
                    "another test file): run this file on its own to test the compiled kernel")
    gen = torch.Generator().manual_seed(0)
    inputs, docs = make_inputs(8, 1536, 16, 2048, torch.bfloat16, "cuda", with_z=True,
                               with_d=True, with_bias=True, with_h0=False, with_docs=True,
                               gen=gen)
    # The fp64 loop over 2048 steps takes seconds on the GPU.
    check_against_reference(inputs, docs, True, 2e-2, False, gen)
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return
    inputs, _ = make_inputs(8, 1536, 16, 2048, torch.bfloat16, "cuda", with_z=True, with_d=True,
                            with_bias=True, with_h0=False, with_docs=False, gen=gen)
    ours = selective_scan_triton(**inputs)
    theirs = selective_scan_fn(inputs["u"], inputs["delta"], inputs["A"], inputs["B"],
                               inputs["C"], inputs["D"], inputs["z"], inputs["delta_bias"], True)
    err = ((ours.float() - theirs.float()).norm() / theirs.float().norm()).item()
    assert err < 1e-2, f"relative difference to mamba_ssm's selective_scan_fn: {err}"


def test_step_segments_auto(monkeypatch):
    """"auto" segments aim at step_warps_per_sm warps per SM: B=8, D=1536 is 384 warps of one
    (batch, channel) per thread, so 132 SMs x 16 warps take 8 segments of 256 steps."""
    monkeypatch.setitem(ss.CONFIG, "step_seg_len", "auto")
    monkeypatch.setitem(ss.CONFIG, "step_state_every", 64)
    monkeypatch.setitem(ss.CONFIG, "step_warps_per_sm", 16)

    class Props:
        multi_processor_count = 132

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Props())
    cuda = torch.device("cuda")
    assert ss.step_seg_len(8, 1536, 2048, cuda) == 256
    assert ss.step_seg_len(16, 1536, 2048, cuda) == 512
    assert ss.step_seg_len(8, 1536, 100, cuda) >= 100  # too short to split in 64-step blocks
    assert ss.step_seg_len(8, 1536, 2048, torch.device("cpu")) == 2048  # one "SM": one segment
    monkeypatch.setitem(ss.CONFIG, "step_seg_len", 8)
    assert ss.step_seg_len(8, 1536, 2048, cuda) == 64  # a fixed length, at least state_every
    monkeypatch.setitem(ss.CONFIG, "step_seg_len", None)
    assert ss.step_seg_len(8, 1536, 2048, cuda) == 2048  # the default: one segment


def test_config_from_env(monkeypatch):
    monkeypatch.setattr(ss, "CONFIG", dict(ss.CONFIG))
    monkeypatch.setenv("MAMBALAB_SCAN_CONFIG", '{"impl": "step", "step_seg_len": 256}')
    ss._config_from_env()
    assert ss.CONFIG["impl"] == "step" and ss.CONFIG["step_seg_len"] == 256
    monkeypatch.setenv("MAMBALAB_SCAN_CONFIG", '{"impl": "step", "seg_len": 256}')
    with pytest.raises(ValueError, match=r"unknown keys \['seg_len'\]"):
        ss._config_from_env()
    monkeypatch.setenv("MAMBALAB_SCAN_CONFIG", "impl=step")
    with pytest.raises(ValueError, match="not JSON"):
        ss._config_from_env()


@pytest.mark.parametrize("fwd,bwd,blk,dtype,docs,chunk,dstate,warps", [
    (2, 2, 2, torch.float32, True, 8, 16, 1),
    (3, 1, 16, torch.float32, False, 8, 16, 1),
    (1, 3, 16, torch.float32, True, 8, 16, 1),
    (4, 4, 16, torch.bfloat16, True, 8, 16, 1),
    (2, 3, 2, torch.float32, True, 4, 5, 2),  # 16 chunks of 4 steps, N = 5, 2 warps a program
])
def test_lanes_in_time_segments(fwd, bwd, blk, dtype, docs, chunk, dstate, warps, monkeypatch,
                                nan_empty):
    """The forward and the backward in time segments (selective_scan_lanes_carry.py: each
    segment starts from the state its predecessors pass on, or the gradient its successors pass
    back): 8 chunks in 2 segments of two carry blocks each, in 3 (3 + 3 + 2 chunks) or in 4;
    16 chunks of 4 steps with N = 5 and two warps a program; with document starts (one inside
    a block zeroes its carry), an initial state and the last state (its value and its
    gradient), against the reference."""
    from mambalab.ops.triton import selective_scan_lanes_carry as lc

    monkeypatch.setattr(lc, "CARRY_BLOCK_CHUNKS", blk)
    n_chunks = 64 // chunk
    for segs in (fwd, bwd):
        seg_chunks, blk_chunks = lc.segment_chunks(n_chunks, segs)
        assert seg_chunks % blk_chunks == 0 and -(-n_chunks // seg_chunks) == segs
    for key, value in (("impl", "lanes"), ("lanes_fp32", True), ("lanes_chunk", chunk),
                       ("lanes_warps", warps), ("lanes_states", "float32"),
                       ("lanes_fwd_segments", fwd), ("lanes_bwd_segments", bwd)):
        monkeypatch.setitem(ss.CONFIG, key, value)
    gen = torch.Generator().manual_seed(11 + fwd + 4 * bwd)
    inputs, doc_starts = make_inputs(2, 32 * warps, dstate, 64, dtype, DEVICE, with_z=True,
                                     with_d=True, with_bias=True, with_h0=True, with_docs=docs,
                                     gen=gen)
    check_against_reference(inputs, doc_starts, True, 1e-4 if dtype == torch.float32 else 2e-2,
                            True, gen)


def test_lanes_time_segments_fill_the_device():
    from mambalab.ops.triton import selective_scan_lanes_carry as lb

    assert lb.time_segments(8, 48, 256, 132, 6) == 2    # 384 warps a segment, 792 places
    assert lb.time_segments(2, 48, 256, 132, 6) == 8
    assert lb.time_segments(1, 48, 256, 132, 6) == 16   # at most 16
    assert lb.time_segments(1, 48, 32, 132, 6) == 2     # each of at least 16 chunks
    assert lb.time_segments(16, 48, 256, 132, 6) == 1   # the batch fills it: batch_parts
    assert lb.time_segments(2, 48, 256, None, 6) == 1   # off CUDA
    assert lb.segment_chunks(256, 2) == (128, 16)       # blocks of 16 chunks: 8 per segment
    assert lb.segment_chunks(256, 3) == (96, 16)        # 96 + 96 + 64: whole blocks
    assert lb.segment_chunks(40, 3) == (14, 14)         # 14 + 14 + 12
    assert lb.segment_chunks(131072, 16) == (8192, 512)  # L = 1M: 16 blocks a segment


@pytest.mark.parametrize("bad", [0, -2, "4", 1.5, True])
def test_lanes_segments_setting_is_checked(bad, monkeypatch):
    """A segment count that is not "auto" or a positive integer is an error naming the key."""
    monkeypatch.setitem(ss.CONFIG, "impl", "lanes")
    monkeypatch.setitem(ss.CONFIG, "lanes_fwd_segments", bad)
    gen = torch.Generator().manual_seed(2)
    inputs, _ = make_inputs(1, 32, 4, 16, torch.bfloat16, DEVICE, with_z=False, with_d=False,
                            with_bias=False, with_h0=False, with_docs=False, gen=gen)
    with pytest.raises(ValueError, match="lanes_fwd_segments.*positive integer"):
        ss.selective_scan_fwd(**inputs)
