"""Recurrent decoding: step() and carried state reproduce the full forward pass."""
from __future__ import annotations

import torch

from mambalab.models import generate


def test_step_by_step_logits_equal_the_full_forward(tiny):
    tiny.eval()
    ids = torch.randint(0, 61, (3, 21))
    with torch.no_grad():
        full = tiny(ids).logits                                           # (B, L, V)
    state = tiny.allocate_state(3)
    steps = torch.stack([tiny.step(ids[:, t], state) for t in range(ids.shape[1])], dim=1)
    assert (steps - full).abs().max() < 1e-4
    assert state.ssm_states[0].dtype == torch.float32 and state.conv_states[0].shape == (3, 64, 4)


def test_two_chunks_with_carried_state_equal_one_forward(tiny):
    tiny.eval()
    ids = torch.randint(0, 61, (2, 30))
    with torch.no_grad():
        full = tiny(ids).logits
        state = tiny.allocate_state(2)
        first = tiny(ids[:, :13], state=state).logits
        second = tiny(ids[:, 13:14], state=state).logits   # a chunk shorter than the conv window
        third = tiny(ids[:, 14:], state=state).logits
    torch.testing.assert_close(torch.cat([first, second, third], 1), full, rtol=1e-4, atol=1e-5)
    # and stepping on from a prefilled state continues the same sequence
    state2 = tiny.allocate_state(2)
    with torch.no_grad():
        tiny(ids[:, :29], state=state2)
    torch.testing.assert_close(tiny.step(ids[:, 29], state2), full[:, 29], rtol=1e-4, atol=1e-5)


def test_carried_state_losses_sum_to_the_whole_and_train(tiny):
    ids, targets = torch.randint(0, 61, (2, 16)), torch.randint(0, 61, (2, 16))
    whole = tiny(ids, targets=targets, reduction="sum").loss
    state = tiny.allocate_state(2)
    a = tiny(ids[:, :9], targets=targets[:, :9], state=state, reduction="sum").loss
    b = tiny(ids[:, 9:], targets=targets[:, 9:], state=state, reduction="sum").loss
    torch.testing.assert_close(a + b, whole, rtol=1e-5, atol=1e-4)
    (a + b).backward()  # the in-place state update must not break autograd


def test_generate_greedy_matches_argmax_of_full_forward(tiny):
    prompt = torch.randint(0, 61, (2, 5))
    out = generate(tiny, prompt, max_new_tokens=6, temperature=0.0)
    assert out.shape == (2, 11) and torch.equal(out[:, :5], prompt)
    with torch.no_grad():
        logits = tiny(out[:, :-1]).logits[..., :61]
    torch.testing.assert_close(logits[:, 4:].argmax(-1), out[:, 5:])


def test_generate_sampling_is_seeded_filtered_and_stops_at_eos(tiny):
    prompt = torch.randint(0, 61, (2, 4))
    a = generate(tiny, prompt, 8, temperature=1.0, top_k=5, top_p=0.9, seed=7)
    b = generate(tiny, prompt, 8, temperature=1.0, top_k=5, top_p=0.9, seed=7)
    assert torch.equal(a, b) and (a < 61).all()
    first = generate(tiny, prompt, 1, temperature=0.0)[:, -1]
    eos_run = generate(tiny, prompt, 5, temperature=0.0, eos_id=int(first[0]))
    assert (eos_run[0, 4:] == first[0]).all()
