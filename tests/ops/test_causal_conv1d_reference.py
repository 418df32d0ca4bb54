"""The reference causal conv against F.conv1d: plain, with carried state, with document starts."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mambalab.ops.causal_conv1d import causal_conv1d
from mambalab.ops.causal_conv1d.reference import causal_conv1d_ref


def conv_torch(x, weight, bias, activation=True):
    width = weight.shape[-1]
    out = F.conv1d(x, weight[:, None, :], bias, padding=width - 1, groups=x.shape[1])
    out = out[..., :x.shape[-1]]
    return F.silu(out) if activation else out


def test_matches_conv1d_forward_and_gradients_at_odd_length():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 63, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    up = torch.randn(2, 5, 63, dtype=torch.float64)
    ours = causal_conv1d_ref(x, w, b)
    theirs = conv_torch(x, w, b)
    torch.testing.assert_close(ours, theirs)
    g_ours = torch.autograd.grad((ours * up).sum(), (x, w, b))
    g_theirs = torch.autograd.grad((theirs * up).sum(), (x, w, b))
    for a, c in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, c)
    torch.testing.assert_close(causal_conv1d_ref(x, w, None, activation=None),
                               conv_torch(x, w, None, activation=False))


def test_initial_and_final_state_split_a_sequence():
    torch.manual_seed(1)
    x, w, b = torch.randn(2, 3, 20), torch.randn(3, 1, 4), torch.randn(3)   # nn.Conv1d layout
    full, final = causal_conv1d_ref(x, w, b, return_final_state=True)
    y1, s1 = causal_conv1d_ref(x[..., :7], w, b, return_final_state=True)
    y2, s2 = causal_conv1d_ref(x[..., 7:], w, b, initial_state=s1, return_final_state=True)
    torch.testing.assert_close(torch.cat([y1, y2], -1), full)
    torch.testing.assert_close(s2, final)
    torch.testing.assert_close(final, x[..., -3:])
    # A chunk shorter than the window still hands on the right inputs.
    y3, s3 = causal_conv1d_ref(x[..., 7:9], w, b, initial_state=s1, return_final_state=True)
    torch.testing.assert_close(s3, x[..., 6:9])


def test_doc_starts_make_documents_independent():
    torch.manual_seed(2)
    x, w, b = torch.randn(1, 3, 30), torch.randn(3, 4), torch.randn(3)
    init = torch.randn(1, 3, 3)
    starts = torch.zeros(1, 30, dtype=torch.bool)
    starts[0, [10, 12, 25]] = True
    out, final = causal_conv1d_ref(x, w, b, initial_state=init, doc_starts=starts,
                                   return_final_state=True)
    # Before the first start the initial state is seen; after each start, only the document.
    torch.testing.assert_close(out[..., :10], causal_conv1d_ref(x[..., :10], w, b, initial_state=init))
    for lo, hi in ((10, 12), (12, 25), (25, 30)):
        torch.testing.assert_close(out[..., lo:hi], conv_torch(x[..., lo:hi], w, b))
    expected_final = x[..., 27:30].clone()   # the last document started at 25: all 3 inside it
    torch.testing.assert_close(final, expected_final)
    starts[0, 28] = True
    _, final = causal_conv1d_ref(x, w, b, doc_starts=starts, return_final_state=True)
    torch.testing.assert_close(final[..., 0], torch.zeros(1, 3))
    torch.testing.assert_close(final[..., 1:], x[..., 28:30])


def test_dispatch_auto_on_cpu_is_the_reference():
    x, w = torch.randn(1, 2, 6), torch.randn(2, 4)
    torch.testing.assert_close(causal_conv1d(x, w), causal_conv1d_ref(x, w))
