"""The model calls that every evaluation mode shares: summed NLL, or logits for accuracy tasks.

Models follow the ``MambaLM.forward`` contract of docs/architecture.md:
``model(input_ids, targets=None, doc_starts=None, state=None, reduction="mean")``.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
import torch.nn.functional as F

IGNORE = -100


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Evaluate without gradients in eval mode, and give the model back in the mode it came in."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _extra(state: Any, doc_starts: torch.Tensor | None) -> dict[str, Any]:
    # Only pass what is set, so models that lack an argument still work where it is not needed.
    kwargs: dict[str, Any] = {}
    if state is not None:
        kwargs["state"] = state
    if doc_starts is not None:
        kwargs["doc_starts"] = doc_starts
    return kwargs


class Accumulator:
    """Running sums kept on the device, so that a batch never waits for a host sync."""

    def __init__(self, device: torch.device) -> None:
        self.nll = torch.zeros((), dtype=torch.float64, device=device)
        self.tokens = torch.zeros((), dtype=torch.int64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)

    def add_nll(self, model: torch.nn.Module, input_ids: torch.Tensor, targets: torch.Tensor,
                state: Any = None, doc_starts: torch.Tensor | None = None) -> None:
        """Score ``targets`` (B, L) given ``input_ids`` (B, L) by the fused loss (no fp32 logits)."""
        out = model(input_ids, targets=targets, reduction="sum", **_extra(state, doc_starts))
        self.nll += out.loss.double()
        self.tokens += (targets != IGNORE).sum()

    def add_accuracy(self, model: torch.nn.Module, input_ids: torch.Tensor, targets: torch.Tensor,
                     state: Any = None, doc_starts: torch.Tensor | None = None) -> None:
        """Loss and argmax accuracy over the answer positions (targets != -100)."""
        logits = model(input_ids, **_extra(state, doc_starts)).logits  # (B, L, V)
        mask = targets != IGNORE  # (B, L)
        self.nll += F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(),
                                    ignore_index=IGNORE, reduction="sum").double()
        self.correct += ((logits.argmax(dim=-1) == targets) & mask).sum()
        self.tokens += mask.sum()

    def add(self, metric: str, model: torch.nn.Module, input_ids: torch.Tensor,
            targets: torch.Tensor, state: Any = None, doc_starts: torch.Tensor | None = None) -> None:
        if metric == "accuracy":
            self.add_accuracy(model, input_ids, targets, state, doc_starts)
        else:
            self.add_nll(model, input_ids, targets, state, doc_starts)

    def values(self) -> tuple[float, int, int]:
        return float(self.nll.item()), int(self.tokens.item()), int(self.correct.item())


def stream_batch(model: torch.nn.Module, acc: Accumulator, metric: str, input_ids: torch.Tensor,
                 targets: torch.Tensor, chunk_len: int) -> None:
    """Score (B, L) sequences chunk by chunk, carrying the recurrent state between chunks.

    Every position sees the whole sequence before it, as in one forward pass over (B, L), while
    activations stay O(B * chunk_len): this is how the Mamba paper evaluates up to 2^20 tokens.
    """
    batch_size, length = input_ids.shape
    if length <= chunk_len:
        # One chunk is one forward pass: no state to carry, so the model may take its fastest
        # kernels (mamba_ssm's fused ones cannot start from a state).
        acc.add(metric, model, input_ids, targets)
        return
    if not hasattr(model, "allocate_state"):
        raise ValueError(f"{type(model).__name__} cannot carry a recurrent state between chunks, "
                         f"and this batch is {length} tokens long: use a chunk of at least that "
                         f"(seq_len={length}, or chunk_len for tasks) or mode=strided")
    state = model.allocate_state(batch_size, device=input_ids.device)
    for start in range(0, length, chunk_len):
        end = min(start + chunk_len, length)
        acc.add(metric, model, input_ids[:, start:end], targets[:, start:end], state=state)
