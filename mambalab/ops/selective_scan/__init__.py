"""The selective scan: reference, mamba_ssm CUDA and Triton implementations behind one call."""
from __future__ import annotations

import torch

from mambalab.ops.dispatch import resolve_op
from mambalab.ops.selective_scan.reference import selective_scan_ref


def selective_scan(
    u: torch.Tensor,                          # (B, D, L)
    delta: torch.Tensor,                      # (B, D, L)
    A: torch.Tensor,                          # (D, N)
    B: torch.Tensor,                          # (B, N, L)
    C: torch.Tensor,                          # (B, N, L)
    D: torch.Tensor | None = None,            # (D,)
    z: torch.Tensor | None = None,            # (B, D, L)
    delta_bias: torch.Tensor | None = None,   # (D,)
    delta_softplus: bool = True,
    initial_state: torch.Tensor | None = None,  # (B, D, N) fp32
    doc_starts: torch.Tensor | None = None,   # (B, L) bool
    return_last_state: bool = False,
    impl: str = "auto",
):
    """Run the scan with ``impl`` (auto|triton|cuda|reference); see ``selective_scan_ref``."""
    if impl == "auto":
        impl = resolve_op("selective_scan", "auto", u.device)
        if impl == "cuda" and (initial_state is not None or doc_starts is not None):
            impl = "reference"  # the CUDA kernel cannot carry or reset state
    kwargs = dict(D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus,
                  initial_state=initial_state, doc_starts=doc_starts,
                  return_last_state=return_last_state)
    if impl == "reference":
        return selective_scan_ref(u, delta, A, B, C, **kwargs)
    if impl == "cuda":
        from mambalab.ops.selective_scan.cuda import selective_scan_cuda

        return selective_scan_cuda(u, delta, A, B, C, **kwargs)
    if impl == "triton":
        from mambalab.ops import triton as triton_ops

        return triton_ops.selective_scan_triton(u, delta, A, B, C, **kwargs)
    raise ValueError(f"selective_scan: unknown impl={impl!r} (auto|triton|cuda|reference)")


__all__ = ["selective_scan", "selective_scan_ref"]
