"""Shared test set-up: CPU by default, GPU tests marked and skipped with a reason elsewhere."""
from __future__ import annotations

import os

import pytest
import torch

# Tests are offline: no hub look-ups, and a failing one must fail fast rather than retry.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Without a GPU the Triton kernels are tested in Triton's interpreter, which must be chosen before
# Triton is first imported; on the GPU machine they compile for the card.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; run on the GPU machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
