"""The reference selective scan against an independent closed form, forward and all gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mambalab.ops.selective_scan import selective_scan
from mambalab.ops.selective_scan.reference import selective_scan_ref


def scan_closed_form(u, delta, A, B, C, D, z, delta_bias, initial_state, doc_starts,
                     delta_softplus=True):
    """y_t = sum_{s<=t, same doc} C_t . (prod_{s<r<=t} exp(delta_r A)) delta_s B_s u_s + the
    initial state's term, written as one masked (t, s) matrix from cumulative sums: no loop."""
    delta = delta + delta_bias[None, :, None]                             # (B, D, L)
    delta = F.softplus(delta) if delta_softplus else delta
    log_da = torch.einsum("bdl,dn->bdln", delta, A)                        # (B, D, L, N)
    cum = torch.cumsum(log_da, dim=2)                                      # sum_{r<=t}
    batch, dim, length = u.shape
    seg = torch.cumsum(doc_starts.long(), dim=-1)                          # (B, L)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    mask = causal[None] & (seg[:, :, None] == seg[:, None, :])             # (B, t, s)
    diff = cum[:, :, :, None, :] - cum[:, :, None, :, :]                   # (B, D, t, s, N)
    decay = torch.where(mask[:, None, :, :, None], diff, torch.full_like(diff, -torch.inf)).exp()
    x = delta[..., None] * torch.einsum("bnl,bdl->bdln", B, u)             # (B, D, s, N)
    y = torch.einsum("bdtsn,bdsn,bnt->bdt", decay, x, C)
    init_decay = cum.exp() * (seg == 0)[:, None, :, None]                  # (B, D, t, N)
    y = y + torch.einsum("bdtn,bdn,bnt->bdt", init_decay, initial_state, C)
    return (y + u * D[None, :, None]) * F.silu(z)


def make_inputs(batch=2, dim=3, length=63, n=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    doc_starts = torch.rand(batch, length, generator=g) < 0.08
    doc_starts[0, 0] = True
    return dict(u=r(batch, dim, length), delta=r(batch, dim, length) * 0.5,
                A=-torch.rand(dim, n, generator=g, dtype=dtype) - 0.5, B=r(batch, n, length),
                C=r(batch, n, length), D=r(dim), z=r(batch, dim, length), delta_bias=r(dim) * 0.1,
                initial_state=r(batch, dim, n), doc_starts=doc_starts)


@pytest.mark.parametrize("length,softplus", [(1, True), (16, True), (63, True), (63, False)])
def test_forward_and_all_gradients_match_closed_form(length, softplus):
    inputs = make_inputs(length=length)
    if not softplus:  # delta must then be positive by itself
        inputs["delta"] = inputs["delta"].abs() + 0.05
    diff_names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state"]
    grads = {}
    outs = {}
    upstream = torch.randn(2, 3, length, dtype=torch.float64)
    for name, fn in (("ref", None), ("closed", scan_closed_form)):
        leaves = {k: (v.clone().requires_grad_(True) if k in diff_names else v)
                  for k, v in inputs.items()}
        if fn is None:
            y = selective_scan_ref(leaves["u"], leaves["delta"], leaves["A"], leaves["B"],
                                   leaves["C"], D=leaves["D"], z=leaves["z"],
                                   delta_bias=leaves["delta_bias"], delta_softplus=softplus,
                                   initial_state=leaves["initial_state"],
                                   doc_starts=leaves["doc_starts"])
        else:
            y = fn(**leaves, delta_softplus=softplus)
        (y * upstream).sum().backward()
        outs[name] = y.detach()
        grads[name] = {k: leaves[k].grad for k in diff_names}
    torch.testing.assert_close(outs["ref"], outs["closed"], rtol=1e-9, atol=1e-9)
    for k in diff_names:
        torch.testing.assert_close(grads["ref"][k], grads["closed"][k], rtol=1e-8, atol=1e-8,
                                   msg=lambda m, k=k: f"grad of {k}: {m}")


def test_gradcheck_fp64_tiny():
    inputs = make_inputs(batch=1, dim=2, length=5, n=2, seed=3)
    diff = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")
    args = [inputs[k].requires_grad_(True) for k in diff]

    def fn(u, delta, A, B, C, D, z, delta_bias, initial_state):
        return selective_scan_ref(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                                  initial_state=initial_state, doc_starts=inputs["doc_starts"])

    assert torch.autograd.gradcheck(fn, args)


def test_last_state_carries_across_chunks_and_fp32_output_dtype():
    inputs = make_inputs(length=40, dtype=torch.float32, seed=5)
    inputs.pop("doc_starts")
    init = inputs.pop("initial_state")
    full, last = selective_scan_ref(**inputs, initial_state=init, return_last_state=True)
    split = 17
    first = {k: (v[..., :split] if v.dim() == 3 else v) for k, v in inputs.items()}
    second = {k: (v[..., split:] if v.dim() == 3 else v) for k, v in inputs.items()}
    y1, h1 = selective_scan_ref(**first, initial_state=init, return_last_state=True)
    y2, h2 = selective_scan_ref(**second, initial_state=h1, return_last_state=True)
    torch.testing.assert_close(torch.cat([y1, y2], dim=-1), full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h2, last, rtol=1e-5, atol=1e-5)
    assert last.dtype == torch.float32 and full.dtype == torch.float32


def test_bf16_inputs_keep_fp32_state_and_return_input_dtype():
    inputs = make_inputs(length=8, dtype=torch.float32)
    inputs.pop("doc_starts")
    bf = {k: v.bfloat16() for k, v in inputs.items()}
    y, h = selective_scan_ref(**bf, return_last_state=True)
    assert y.dtype == torch.bfloat16 and h.dtype == torch.float32


def test_dispatch_auto_on_cpu_is_the_reference():
    inputs = make_inputs(length=9, dtype=torch.float32)
    torch.testing.assert_close(selective_scan(**inputs), selective_scan_ref(**inputs))


def test_autocast_does_not_lower_the_reference_precision():
    inputs = make_inputs(length=12, dtype=torch.float32)
    plain = selective_scan_ref(**inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = selective_scan_ref(**inputs)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, plain)
