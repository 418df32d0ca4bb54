"""build_mamba_lm: the Hydra ``_target_`` of conf/model/mamba_*.yaml."""
from __future__ import annotations

import torch

from mambalab.models.config import MambaConfig
from mambalab.models.lm import MambaLM
from mambalab.ops.dispatch import resolve_kernels


def check_kernels_runnable(kernels: str) -> None:
    """Fail at build, not at the first step, when an explicit kernel choice cannot run here.

    Models are built on the CPU and moved later, so the check targets the GPU when one is visible.
    """
    if kernels == "auto":
        return
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if kernels == "cuda" and device.type != "cuda":
        raise ValueError(
            "model.kernels=cuda needs a CUDA GPU, and torch sees none "
            f"(torch.cuda.is_available() is False; torch {torch.__version__}). Fix: use "
            "model.kernels=auto (picks what runs on this machine) or model.kernels=reference")
    resolve_kernels(kernels, device)


def build_mamba_lm(
    d_model: int,
    n_layer: int,
    vocab_size: int,
    d_state: int = 16,
    d_conv: int = 4,
    expand: int = 2,
    dt_rank: int | str = "auto",
    rms_norm: bool = True,
    residual_in_fp32: bool = True,
    pad_vocab_size_multiple: int = 8,
    tie_embeddings: bool = True,
    kernels: str = "auto",
    gradient_checkpointing: bool = False,
    init_from: str | None = None,
) -> MambaLM:
    """A freshly initialised Mamba LM, or, with ``init_from``, one holding those weights (an HF or
    mamba_ssm folder or hub id, or a mambalab checkpoint or run directory): its shapes must match."""
    if vocab_size == "auto":
        raise ValueError("model.vocab_size=auto must be replaced by the entry point with the data "
                         "module's vocab_size before the model is built")
    config = MambaConfig(d_model=d_model, n_layer=n_layer, vocab_size=vocab_size, d_state=d_state,
                         d_conv=d_conv, expand=expand, dt_rank=dt_rank, rms_norm=rms_norm,
                         residual_in_fp32=residual_in_fp32,
                         pad_vocab_size_multiple=pad_vocab_size_multiple,
                         tie_embeddings=tie_embeddings, kernels=kernels,
                         gradient_checkpointing=gradient_checkpointing)
    check_kernels_runnable(kernels)
    model = MambaLM(config)
    if init_from is not None:
        from mambalab.models.pretrained import load_weights_into

        load_weights_into(model, init_from)
    return model
