"""The causal-conv1d package's CUDA kernel behind mambalab's signature."""
from __future__ import annotations

import torch


def causal_conv1d_cuda(x, weight, bias=None, activation="silu", initial_state=None,
                       doc_starts=None, return_final_state=False):
    """causal_conv1d.causal_conv1d_fn; shapes as causal_conv1d_ref.

    Carried state and document resets need the kernel's channel-last layout, so x is copied
    into it for those calls only; the two cannot be combined in one call.
    """
    from causal_conv1d import causal_conv1d_fn

    weight = weight.reshape(weight.shape[0], weight.shape[-1])           # (D, W)
    if doc_starts is not None and (initial_state is not None or return_final_state):
        raise ValueError("causal_conv1d impl=cuda cannot combine doc_starts with carried state; "
                         "use impl='reference' or impl='triton'")
    seq_idx = None
    if initial_state is not None or return_final_state or doc_starts is not None:
        x = x.transpose(1, 2).contiguous().transpose(1, 2)               # channel-last (B, D, L)
        if initial_state is not None:
            initial_state = initial_state.to(x.dtype).transpose(1, 2).contiguous().transpose(1, 2)
        if doc_starts is not None:
            seq_idx = torch.cumsum(doc_starts.to(torch.int32), dim=-1, dtype=torch.int32)
    act = None if activation is None else "silu"
    if return_final_state:
        out, final = causal_conv1d_fn(x, weight, bias, seq_idx=seq_idx,
                                      initial_states=initial_state,
                                      return_final_states=True, activation=act)
        return out, final
    return causal_conv1d_fn(x, weight, bias, seq_idx=seq_idx, initial_states=initial_state,
                            activation=act)
