"""The causal depthwise conv: reference, causal-conv1d CUDA and Triton behind one call."""
from __future__ import annotations

import torch

from mambalab.ops.causal_conv1d.reference import causal_conv1d_ref
from mambalab.ops.dispatch import resolve_op


def causal_conv1d(
    x: torch.Tensor,                           # (B, D, L)
    weight: torch.Tensor,                      # (D, W) or (D, 1, W)
    bias: torch.Tensor | None = None,          # (D,)
    activation: str | None = "silu",
    initial_state: torch.Tensor | None = None,  # (B, D, W - 1)
    doc_starts: torch.Tensor | None = None,    # (B, L) bool
    return_final_state: bool = False,
    impl: str = "auto",
):
    """Run the conv with ``impl`` (auto|triton|cuda|reference); see ``causal_conv1d_ref``."""
    if impl == "auto":
        impl = resolve_op("causal_conv1d", "auto", x.device)
    kwargs = dict(activation=activation, initial_state=initial_state, doc_starts=doc_starts,
                  return_final_state=return_final_state)
    if impl == "reference":
        return causal_conv1d_ref(x, weight, bias, **kwargs)
    if impl == "cuda":
        from mambalab.ops.causal_conv1d.cuda import causal_conv1d_cuda

        return causal_conv1d_cuda(x, weight, bias, **kwargs)
    if impl == "triton":
        from mambalab.ops import triton as triton_ops

        return triton_ops.causal_conv1d_triton(x, weight, bias, **kwargs)
    raise ValueError(f"causal_conv1d: unknown impl={impl!r} (auto|triton|cuda|reference)")


__all__ = ["causal_conv1d", "causal_conv1d_ref"]
