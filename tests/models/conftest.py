from __future__ import annotations

import pytest
import torch

from mambalab.models import build_mamba_lm


@pytest.fixture
def tiny():
    """A mamba_tiny-sized model (conf/model/mamba_tiny.yaml) with a small vocabulary."""
    torch.manual_seed(0)
    return build_mamba_lm(d_model=32, n_layer=2, vocab_size=61, d_state=8, kernels="reference")
