"""On a GPU: streaming with the fast kernels equals one forward pass, in fp32 and under bf16."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mambalab.eval.documents import EvalDocument
from mambalab.eval.per_document import score_streaming

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("kernels", ["auto", "triton"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_streaming_equals_full_forward_on_gpu(kernels, precision):
    from mambalab.models import build_mamba_lm

    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_mamba_lm(d_model=256, n_layer=4, vocab_size=1000, kernels=kernels).to(device).eval()
    rng = np.random.default_rng(0)
    docs = [EvalDocument(rng.integers(1, 1000, size=n), "") for n in (3000, 1700, 513, 64)]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.no_grad(), autocast:
        full = score_streaming(model, docs, 0, chunk_len=4096, batch_size=4, device=device)
        streamed = score_streaming(model, docs, 0, chunk_len=512, batch_size=3, device=device)
    assert streamed.tokens == full.tokens == 3000 + 1700 + 513 + 64
    # bf16 rounds differently chunk by chunk; the summed NLL still agrees closely
    rel = 1e-4 if precision == "fp32" else 2e-3
    assert streamed.nll_sum == pytest.approx(full.nll_sum, rel=rel)
