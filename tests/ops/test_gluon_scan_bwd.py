"""The Gluon scan backward (mambalab/ops/triton/selective_scan_gluon_bwd.py) against the Triton
lanes backward, from the same forward's saved states, and through the scan's autograd Function
against the fp64 reference.

Gluon kernels do not run under TRITON_INTERPRET=1, so the comparisons are GPU tests (run this
file on its own on the GPU machine); on the CPU only the dispatch is tested: every call the
Gluon kernel cannot take goes to the Triton kernel.
"""
from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

import pytest  # noqa: E402

pytest.importorskip("triton")

from mambalab.ops.selective_scan.reference import selective_scan_ref  # noqa: E402
from mambalab.ops.triton import selective_scan as ss  # noqa: E402
from mambalab.ops.triton import selective_scan_gluon_bwd as gb  # noqa: E402
from mambalab.ops.triton.selective_scan_lanes_bwd import lanes_bwd_launch  # noqa: E402
from mambalab.ops.triton.selective_scan_lanes_fwd import lanes_fwd_launch  # noqa: E402

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available() or INTERPRET,
                               reason="needs a CUDA GPU, Triton compiled (not interpreted)")


def test_dispatch_takes_only_its_contract():
    """The Gluon kernel runs only on CUDA, uninterpreted, for N = 16, K = 8, D % 16 == 0, fp16
    states in (D, N) layout and no y written; else the Triton kernel does."""
    st16 = torch.empty(1, 2, 32, 16, dtype=torch.float16)
    ok = dict(dstate=16, chunk=8, dim=32, states=st16, states_dn=True, writes_y=False)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not gb.supported(**ok, device=cpu)
    if gb.available() and not INTERPRET:
        assert gb.supported(**ok, device=cuda)
    for bad in (dict(dstate=8), dict(chunk=4), dict(dim=40), dict(states_dn=False),
                dict(writes_y=True), dict(states=st16.float())):
        assert not gb.supported(**{**ok, **bad}, device=cuda)


@pytest.mark.skipif(not gb.available(), reason="this Triton has no Gluon")
@pytest.mark.parametrize("config", [{}, {"defer_dbc": False, "split_chunk": False, "pipe": False},
                                    {"maxnreg": 168}])
def test_launch_passes_its_config_to_the_kernel(config, monkeypatch):
    """On the CPU the kernel cannot run, but its launcher can: every CONFIG key reaches the
    kernel as its constexpr (a key the launcher reads and CONFIG lacks fails here, not on a
    GPU)."""
    for key, value in config.items():
        monkeypatch.setitem(gb.CONFIG, key, value)
    seen = {}

    class Kernel:
        def __getitem__(self, grid):
            def run(*args, **kwargs):
                seen.update(kwargs, grid=grid, n_args=len(args))
            return run

    monkeypatch.setattr(gb, "_gluon_bwd_kernel", Kernel())
    batch, dim, seqlen = 2, 32, 16
    act = torch.zeros(batch, dim, seqlen, dtype=torch.bfloat16)
    bc = torch.zeros(batch, 16, seqlen, dtype=torch.bfloat16)
    f32 = torch.zeros(batch, dim, 16)
    gb.launch(dy=act, u=act, delta=act, A=torch.zeros(dim, 16), B=bc, C=bc,
              pc=torch.zeros(dim, 2), z=act, doc_starts=None,
              states=torch.zeros(batch, 2, dim, 16, dtype=torch.float16), dlast_state=None,
              du=act, ddelta=act, dz=act, dbc=gb.partials(batch, dim, seqlen, "cpu", act.dtype),
              dA=f32, dpc=torch.zeros(batch, dim, 2), dh0=f32, segG=f32, segP=f32,
              has_d=True, has_bias=True, delta_softplus=True, n_chunks=2, seg_chunks=2,
              segments=1, seg_blocks=1, n_blocks=1)
    cfg = gb.CONFIG
    assert seen["grid"] == (dim // 16, batch, 1) and seen["num_warps"] == 1
    assert (seen["PIPE"], seen["DEFER"], seen["SPLIT"]) == (
        cfg["pipe"], cfg["defer_dbc"], cfg["split_chunk"])
    assert seen.get("maxnreg") == cfg["maxnreg"]


def _inputs(batch, dim, seqlen, gen, docs):
    def rnd(*shape):
        return torch.randn(*shape, generator=gen).to("cuda")

    x = dict(u=rnd(batch, dim, seqlen).bfloat16(),
             delta=(rnd(batch, dim, seqlen) * 0.5 - 1).bfloat16(),
             A=-torch.exp(rnd(dim, 16) * 0.5), B=rnd(batch, 16, seqlen).bfloat16(),
             C=rnd(batch, 16, seqlen).bfloat16(), D=rnd(dim),
             z=rnd(batch, dim, seqlen).bfloat16(), delta_bias=rnd(dim) * 0.3)
    d = h0 = dl = None
    if docs:
        d = (torch.rand(batch, seqlen, generator=gen) < 0.05).cuda()
        d[0, 0] = True   # row 0 forgets its initial state (dh0 = 0), the others keep it
        d[1:, 0] = False
        d = d.to(torch.uint8)
        h0, dl = rnd(batch, dim, 16), rnd(batch, dim, 16)
    return x, d, h0, dl


def _backward(x, states, dy, docs, dlast, *, gluon, segments):
    out = {k: torch.empty_like(x["u"]) for k in ("du", "ddelta", "dz")}
    return lanes_bwd_launch(dy=dy, u=x["u"], delta=x["delta"], A=x["A"], B=x["B"], C=x["C"],
                            D=x["D"], z=x["z"], delta_bias=x["delta_bias"], delta_softplus=True,
                            doc_starts=docs, states=states, dlast_state=dlast, chunk=8,
                            num_warps=1, pipeline=1, partials_16bit=True, segments=segments,
                            use_gluon=gluon, **out)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("config", [{}, {"defer_dbc": False, "split_chunk": False}],
                         ids=["default", "per-step sums, duplicated chunk work"])
@pytest.mark.parametrize("batch,dim,seqlen,docs,segments", [
    (2, 64, 256, True, 1), (2, 64, 512, True, 3), (3, 1536, 512, False, 1)])
def test_gluon_matches_triton_backward(batch, dim, seqlen, docs, segments, config, monkeypatch):
    for key, value in config.items():
        monkeypatch.setitem(gb.CONFIG, key, value)
    gen = torch.Generator().manual_seed(seqlen + batch)
    x, d, h0, dl = _inputs(batch, dim, seqlen, gen, docs)
    _, _, states = lanes_fwd_launch(
        u=x["u"], delta=x["delta"], A=x["A"], B=x["B"], C=x["C"], D=x["D"], z=x["z"],
        delta_bias=x["delta_bias"], delta_softplus=True, initial_state=h0, doc_starts=d,
        save_states=True, return_last_state=False, chunk=8, num_warps=1,
        states_dtype=torch.float16)
    dy = torch.randn(batch, dim, seqlen, generator=gen).cuda().bfloat16()
    calls = []
    launch = gb.launch
    monkeypatch.setattr(gb, "launch", lambda **kw: calls.append(1) or launch(**kw))
    ref = _backward(x, states, dy, d, dl, gluon=False, segments=1)
    assert not calls
    got = _backward(x, states, dy, d, dl, gluon=True, segments=segments)
    assert calls, "the Gluon kernel did not run"
    for k, v in ref.items():
        if v is None:
            continue
        err = ((got[k].float() - v.float()).abs().max()
               / v.float().abs().max().clamp_min(1e-30)).item()
        # both fp32 inside; du, ddelta, dz, dB, dC are bf16 (dB, dC from partials over 16
        # channels against 32), so they differ by bf16 roundings
        assert err < 1.5e-2, f"{k}: {err:.2e}"


@pytest.mark.gpu
@needs_gpu
def test_autograd_with_gluon_matches_reference(monkeypatch):
    """The scan's autograd Function with the Gluon backward (the default on a GPU) against the
    fp64 reference loop: every gradient."""
    monkeypatch.setitem(ss.CONFIG, "lanes_bwd_gluon", True)
    gen = torch.Generator().manual_seed(3)
    x, d, h0, _ = _inputs(2, 64, 256, gen, True)
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in x.items()}
    h0 = h0.requires_grad_(True)
    y = ss.selective_scan_triton(**leaves, initial_state=h0, doc_starts=d.bool(),
                                 delta_softplus=True)
    ref_in = {k: v.detach().double().requires_grad_(True) for k, v in x.items()}
    h0r = h0.detach().double().requires_grad_(True)
    y_ref = selective_scan_ref(**ref_in, initial_state=h0r, doc_starts=d.bool(),
                               delta_softplus=True)
    dy = torch.randn(y.shape, generator=gen).cuda()
    (y.float() * dy).sum().backward()
    (y_ref * dy.double()).sum().backward()
    for k in leaves:
        g, r = leaves[k].grad.double(), ref_in[k].grad
        err = ((g - r).norm() / r.norm()).item()
        assert err < 2e-2, f"d{k}: {err:.2e}"
    err = ((h0.grad.double() - h0r.grad).norm() / h0r.grad.norm()).item()
    assert err < 2e-2, f"dinitial_state: {err:.2e}"
