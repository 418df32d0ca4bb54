"""Fixtures of the kernel tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def nan_empty(monkeypatch):
    """torch.empty returns NaN-filled floating tensors for the test, so that an output element a
    kernel never writes shows up as NaN instead of as whatever memory held."""
    real_empty = torch.empty

    def empty(*args, **kwargs):
        t = real_empty(*args, **kwargs)
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", empty)
