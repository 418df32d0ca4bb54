"""The Gluon scan forward (mambalab/ops/triton/selective_scan_gluon_fwd.py) against the Triton
lanes forward on the same inputs: y, the saved fp16 chunk states, the last state, the fp16
overflow flag; with document starts, an initial state and time segments.

Gluon kernels do not run under TRITON_INTERPRET=1, so the comparisons are GPU tests (run this
file on its own on the GPU machine); on the CPU the dispatch and the launcher are tested.
"""
from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

import pytest  # noqa: E402

pytest.importorskip("triton")

from mambalab.ops.triton import lanes_states  # noqa: E402
from mambalab.ops.triton import selective_scan as ss  # noqa: E402
from mambalab.ops.triton import selective_scan_gluon_fwd as gf  # noqa: E402
from mambalab.ops.triton.selective_scan_lanes_fwd import lanes_fwd_launch  # noqa: E402

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available() or INTERPRET,
                               reason="needs a CUDA GPU, Triton compiled (not interpreted)")


def test_dispatch_takes_only_its_contract():
    """The Gluon forward runs only on CUDA, uninterpreted, for N = 16, K = 8, D % 32 == 0 and
    states not saved or saved as fp16 in (D, N) layout; else the Triton kernel does."""
    ok = dict(dstate=16, chunk=8, dim=64, save_states=True, states_dtype=torch.float16,
              states_dn=True)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not gf.supported(**ok, device=cpu)
    if gf.available() and not INTERPRET:
        assert gf.supported(**ok, device=cuda)
        assert gf.supported(**{**ok, "save_states": False, "states_dtype": torch.float32},
                            device=cuda)
    for bad in (dict(dstate=8), dict(chunk=4), dict(dim=48), dict(states_dn=False),
                dict(states_dtype=torch.float32)):
        assert not gf.supported(**{**ok, **bad}, device=cuda)


def test_cpu_forward_ignores_the_switch(monkeypatch):
    """lanes_fwd_gluon on a CPU (or interpreted): the Triton kernel runs, and gives its result."""
    monkeypatch.setitem(ss.CONFIG, "impl", "lanes")
    calls = []
    monkeypatch.setattr(gf, "launch", lambda **kw: calls.append(1))
    gen = torch.Generator().manual_seed(0)
    x = dict(u=torch.randn(1, 32, 16, generator=gen), delta=torch.randn(1, 32, 16, generator=gen),
             A=-torch.rand(32, 16, generator=gen), B=torch.randn(1, 16, 16, generator=gen),
             C=torch.randn(1, 16, 16, generator=gen))
    outs = []
    for flag in (False, True):
        monkeypatch.setitem(ss.CONFIG, "lanes_fwd_gluon", flag)
        outs.append(ss.selective_scan_fwd(**x, delta_softplus=True, save_states=False)[0])
    assert not calls
    assert torch.equal(outs[0], outs[1])


@pytest.mark.skipif(not gf.available(), reason="this Triton has no Gluon")
@pytest.mark.parametrize("pipe,async_", [(True, True), (True, False), (False, False)])
def test_launch_passes_its_config_to_the_kernel(pipe, async_, monkeypatch):
    """On the CPU the kernel cannot run, but its launcher can: the grid (a warp a 32 channels,
    a program a segment) and every constexpr it derives from its arguments and CONFIG."""
    monkeypatch.setitem(gf.CONFIG, "pipe", pipe)
    monkeypatch.setitem(gf.CONFIG, "async", async_)
    seen = {}

    class Kernel:
        def __getitem__(self, grid):
            def run(*args, **kwargs):
                seen.update(kwargs, grid=grid, n_args=len(args))
            return run

    monkeypatch.setattr(gf, "_gluon_fwd_kernel", Kernel())
    batch, dim, seqlen = 2, 64, 32
    act = torch.zeros(batch, dim, seqlen, dtype=torch.bfloat16)
    bc = torch.zeros(batch, 16, seqlen, dtype=torch.bfloat16)
    gf.launch(u=act, delta=act, A=torch.zeros(dim, 16), B=bc, C=bc, pc=torch.zeros(dim, 2),
              z=None, initial_state=None, doc_starts=None, y=act,
              states=torch.zeros(batch, 4, dim, 16, dtype=torch.float16), last=None,
              flag=torch.zeros(1, dtype=torch.int32), segH=act, segP=act, has_d=True,
              has_bias=False, delta_softplus=True, n_chunks=4, seg_chunks=2, segments=2,
              seg_blocks=1, n_blocks=4)
    assert seen["grid"] == (dim // 32, batch, 2) and seen["num_warps"] == 1
    assert seen["PIPE"] is pipe and seen["ASYNC"] is async_
    assert seen["SEG"] and seen["WATCH"] and seen["SAVE_STATES"]
    assert not seen["HAS_Z"] and not seen["HAS_BIAS"] and not seen["STORE_LAST"]


def _inputs(batch, dim, seqlen, gen, docs):
    def rnd(*shape):
        return torch.randn(*shape, generator=gen).to("cuda")

    x = dict(u=rnd(batch, dim, seqlen).bfloat16(),
             delta=(rnd(batch, dim, seqlen) * 0.5 - 1).bfloat16(),
             A=-torch.exp(rnd(dim, 16) * 0.5), B=rnd(batch, 16, seqlen).bfloat16(),
             C=rnd(batch, 16, seqlen).bfloat16(), D=rnd(dim),
             z=rnd(batch, dim, seqlen).bfloat16(), delta_bias=rnd(dim) * 0.3)
    d = h0 = None
    if docs:
        d = (torch.rand(batch, seqlen, generator=gen) < 0.05).cuda()
        d[0, 0] = True
        d = d.to(torch.uint8)
        h0 = rnd(batch, dim, 16)
    return x, d, h0


def _forward(x, docs, h0, *, gluon, segments, save=True):
    return lanes_fwd_launch(
        u=x["u"], delta=x["delta"], A=x["A"], B=x["B"], C=x["C"], D=x["D"], z=x["z"],
        delta_bias=x["delta_bias"], delta_softplus=True, initial_state=h0, doc_starts=docs,
        save_states=save, return_last_state=True, chunk=8, num_warps=1,
        states_dtype=torch.float16, segments=segments, use_gluon=gluon)


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30)).item()


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("batch,dim,seqlen,docs,segments,save,async_", [
    (2, 64, 256, True, 1, True, True), (2, 64, 512, True, 3, True, True),
    (3, 1536, 512, False, 1, True, True), (2, 96, 128, False, 2, False, True),
    (2, 64, 256, True, 1, True, False)])
def test_gluon_matches_triton_forward(batch, dim, seqlen, docs, segments, save, async_,
                                      monkeypatch):
    monkeypatch.setitem(gf.CONFIG, "async", async_)
    gen = torch.Generator().manual_seed(seqlen + batch)
    x, d, h0 = _inputs(batch, dim, seqlen, gen, docs)
    calls = []
    launch = gf.launch
    monkeypatch.setattr(gf, "launch", lambda **kw: calls.append(1) or launch(**kw))
    y0, last0, st0 = _forward(x, d, h0, gluon=False, segments=1, save=save)
    assert not calls
    y1, last1, st1 = _forward(x, d, h0, gluon=True, segments=segments, save=save)
    assert calls, "the Gluon kernel did not run"
    # both fp32 inside, the same operations per state in another order (y's sum over the
    # states); y is bf16, the states fp16
    assert _rel(y1, y0) < 1e-2, f"y: {_rel(y1, y0):.2e}"
    assert _rel(last1, last0) < 1e-4, f"last state: {_rel(last1, last0):.2e}"
    if save:
        assert _rel(st1, st0) < 1e-3, f"states: {_rel(st1, st0):.2e}"


@pytest.mark.gpu
@needs_gpu
def test_gluon_raises_the_overflow_flag(monkeypatch):
    """A saved state beyond fp16's 65504 (an initial state of ~1e6) raises lanes_states' flag,
    as the Triton kernel does; in range it stays down. The flag is per process: reset here."""
    monkeypatch.setattr(lanes_states, "_flags", {})
    gen = torch.Generator().manual_seed(5)
    x, _, _ = _inputs(1, 32, 64, gen, False)
    h0 = torch.randn(1, 32, 16, generator=gen).cuda()
    _forward(x, None, h0, gluon=True, segments=1)
    torch.cuda.synchronize()
    assert int(lanes_states.overflow_flag(x["u"].device)) == 0
    _, _, saved = _forward(x, None, h0 * 1e6, gluon=True, segments=1)
    torch.cuda.synchronize()
    assert not torch.isfinite(saved.float()).all()
    assert int(lanes_states.overflow_flag(x["u"].device)) == 1
