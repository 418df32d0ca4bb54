"""The typed configuration of a Mamba-1 language model (mamba_ssm's MambaConfig, typed)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# mamba_ssm and HF both use eps 1e-5 for every RMSNorm of Mamba-1.
NORM_EPS = 1e-5
KERNEL_CHOICES = ("auto", "triton", "cuda", "reference")


@dataclass
class MambaConfig:
    d_model: int
    n_layer: int
    vocab_size: int                       # the tokenizer's; the embedding is padded up (below)
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | str = "auto"           # "auto" = ceil(d_model / 16)
    rms_norm: bool = True
    residual_in_fp32: bool = True
    pad_vocab_size_multiple: int = 8
    tie_embeddings: bool = True
    kernels: str = "auto"                 # auto | triton | cuda | reference
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layer", "vocab_size", "d_state", "d_conv", "expand",
                     "pad_vocab_size_multiple"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model.{name} must be a positive int, got {value!r}")
        if self.dt_rank != "auto" and (not isinstance(self.dt_rank, int) or self.dt_rank < 1):
            raise ValueError(f"model.dt_rank must be 'auto' or a positive int, got {self.dt_rank!r}")
        if self.kernels not in KERNEL_CHOICES:
            raise ValueError(f"model.kernels must be one of {KERNEL_CHOICES}, got {self.kernels!r}")
        if not self.rms_norm:
            raise ValueError("model.rms_norm=false (LayerNorm) is not supported: mambalab builds "
                             "RMSNorm, as every released Mamba-1 checkpoint uses; set rms_norm=true")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def dt_rank_value(self) -> int:
        return math.ceil(self.d_model / 16) if self.dt_rank == "auto" else int(self.dt_rank)

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_size_multiple
        return (self.vocab_size + m - 1) // m * m

    def to_dict(self) -> dict:
        return asdict(self)
