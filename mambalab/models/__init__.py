"""The Mamba-1 language model: a pure nn.Module, its decoding, and checkpoint import/export."""
from __future__ import annotations

from mambalab.models.build import build_mamba_lm
from mambalab.models.checkpoint import save_model
from mambalab.models.config import MambaConfig
from mambalab.models.export import export_hf
from mambalab.models.generate import generate
from mambalab.models.lm import MambaLM, MambaLMOutput
from mambalab.models.pretrained import load_pretrained
from mambalab.models.state import MambaState

__all__ = ["MambaConfig", "MambaLM", "MambaLMOutput", "MambaState", "build_mamba_lm",
           "export_hf", "generate", "load_pretrained", "save_model"]
