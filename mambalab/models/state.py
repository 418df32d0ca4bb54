"""The recurrent state of a Mamba LM: what decoding and streaming evaluation carry across calls."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MambaState:
    """Per layer: ``conv_states[i]`` (B, D_inner, d_conv), the last d_conv inputs of the conv
    (model dtype; as mamba_ssm's, the oldest column is not read again), and ``ssm_states[i]``
    (B, D_inner, N) fp32. Updated in place by ``MambaLM.forward(..., state=)`` and ``step``."""

    conv_states: list[torch.Tensor]
    ssm_states: list[torch.Tensor]
    seqlen_offset: int = 0                # tokens consumed so far (informational)

    @property
    def batch_size(self) -> int:
        return self.ssm_states[0].shape[0]

    def reset(self, rows: torch.Tensor | None = None) -> None:
        """Zero the state of every row, or of the rows where ``rows`` (B,) bool is True."""
        for tensor in (*self.conv_states, *self.ssm_states):
            if rows is None:
                tensor.zero_()
            else:
                tensor[rows.to(tensor.device)] = 0
        if rows is None:
            self.seqlen_offset = 0
