"""transformers' own MambaForCausalLM behind mambalab's model contract, to train and compare.

Initialisation is HF's, not mamba_ssm's: every nn.Linear (in_proj, x_proj) and the embedding are
drawn from N(0, initializer_range) (HF's default 0.1, which the seed used: a first loss of about
14.7 on the GPT-NeoX vocabulary, against 10.98 for mamba_ssm's init), conv1d and out_proj are
kaiming-uniform, conv bias 0, and out_proj is divided by sqrt(n_layer) only with
rescale_prenorm_residual=true (HF's default: false). dt_proj, A_log and D follow the paper.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from mambalab.models.lm import MambaLMOutput
from mambalab.ops.cross_entropy import fused_linear_cross_entropy, resolve_cross_entropy
from mambalab.ops.dispatch import _import_error


def hf_fast_path_reason(device: torch.device) -> str | None:
    """Why transformers' Mamba would take its slow PyTorch path on ``device`` (None: it won't)."""
    if device.type != "cuda":
        return f"the device is {device.type}"
    for module, attr in (("mamba_ssm.ops.selective_scan_interface", "mamba_inner_fn"),
                         ("causal_conv1d", "causal_conv1d_fn")):
        reason = _import_error(module, attr)
        if reason is not None:
            return reason
    return None


class HFMambaLM(nn.Module):
    """Holds ``transformers.MambaForCausalLM`` as ``.hf_model``; forward as ``MambaLM.forward``."""

    build_target = "mambalab.models.hf.build_hf_mamba_lm"

    def __init__(self, hf_model: nn.Module, build_kwargs: dict):
        super().__init__()
        self.hf_model = hf_model
        self._build_kwargs = dict(build_kwargs)
        self.vocab_size = build_kwargs["vocab_size"]

    def build_kwargs(self) -> dict:
        return dict(self._build_kwargs)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        # transformers 5 renamed gradient_* to activation_checkpointing_*; 4.x has only the former.
        hf = self.hf_model
        if enabled:
            if hasattr(hf, "activation_checkpointing_enable"):
                hf.activation_checkpointing_enable({"use_reentrant": False})
            else:
                hf.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False})
        elif self.gradient_checkpointing:
            (getattr(hf, "activation_checkpointing_disable", None)
             or hf.gradient_checkpointing_disable)()

    @property
    def gradient_checkpointing(self) -> bool:
        hf = self.hf_model
        name = ("is_activation_checkpointing" if hasattr(type(hf), "is_activation_checkpointing")
                else "is_gradient_checkpointing")
        return bool(getattr(hf, name))

    def kernel_report(self, device: torch.device | str | None = None) -> dict[str, str]:
        device = torch.device(device) if device is not None else self.hf_model.lm_head.weight.device
        reason = hf_fast_path_reason(device)
        mixer = "cuda (mamba_ssm kernels, via transformers)" if reason is None else (
            f"torch (HF slow path: {reason})")
        return {"hf_mixer": mixer, "cross_entropy": resolve_cross_entropy(device, "mean")}

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None,
                doc_starts: torch.Tensor | None = None, state=None,
                reduction: str = "mean") -> MambaLMOutput:
        if doc_starts is not None:
            raise ValueError("transformers' MambaForCausalLM cannot reset state at document "
                             "starts; use model=mamba_130m, or data.doc_boundaries=false")
        if state is not None:
            raise ValueError("HFMambaLM does not carry mambalab's MambaState; use a MambaLM "
                             "(model=mamba_130m) for streaming evaluation and generation")
        if targets is None:
            return MambaLMOutput(logits=self.hf_model(input_ids=input_ids, use_cache=False).logits)
        hidden = self.hf_model.backbone(input_ids=input_ids, use_cache=False).last_hidden_state
        batch, seq_len, d_model = hidden.shape                          # (B, L, d)
        loss = fused_linear_cross_entropy(hidden.reshape(batch * seq_len, d_model),
                                          self.hf_model.lm_head.weight, targets.reshape(-1),
                                          reduction=reduction)
        if reduction == "none":
            loss = loss.view(batch, seq_len)
        return MambaLMOutput(loss=loss)


def build_hf_mamba_lm(
    d_model: int = 768,
    n_layer: int = 24,
    vocab_size: int = 50280,
    d_state: int = 16,
    d_conv: int = 4,
    expand: int = 2,
    dt_rank: int | str = "auto",
    residual_in_fp32: bool = True,
    pad_vocab_size_multiple: int = 8,
    tie_embeddings: bool = True,
    initializer_range: float = 0.1,
    rescale_prenorm_residual: bool = False,
    use_mambapy: bool = False,
    gradient_checkpointing: bool = False,
    init_from: str | None = None,
) -> HFMambaLM:
    """An HF MambaForCausalLM (see the module docstring for its initialisation); ``init_from``
    loads an HF folder or hub id with ``from_pretrained`` (its config then wins)."""
    from transformers import MambaConfig as HFMambaConfig
    from transformers import MambaForCausalLM

    if vocab_size == "auto":
        raise ValueError("model.vocab_size=auto must be replaced by the entry point first")
    padded = (vocab_size + pad_vocab_size_multiple - 1) // pad_vocab_size_multiple
    padded *= pad_vocab_size_multiple
    kwargs = dict(d_model=d_model, n_layer=n_layer, vocab_size=vocab_size, d_state=d_state,
                  d_conv=d_conv, expand=expand, dt_rank=dt_rank,
                  residual_in_fp32=residual_in_fp32,
                  pad_vocab_size_multiple=pad_vocab_size_multiple, tie_embeddings=tie_embeddings,
                  initializer_range=initializer_range,
                  rescale_prenorm_residual=rescale_prenorm_residual, use_mambapy=use_mambapy,
                  gradient_checkpointing=gradient_checkpointing)
    if init_from is not None:
        from mambalab.models.pretrained import locate

        hf_model = MambaForCausalLM.from_pretrained(str(locate(init_from)))
    else:
        config = HFMambaConfig(hidden_size=d_model, num_hidden_layers=n_layer, vocab_size=padded,
                               state_size=d_state, conv_kernel=d_conv, expand=expand,
                               time_step_rank=dt_rank, residual_in_fp32=residual_in_fp32,
                               tie_word_embeddings=tie_embeddings, use_bias=False,
                               use_conv_bias=True, layer_norm_epsilon=1e-5,
                               initializer_range=initializer_range,
                               rescale_prenorm_residual=rescale_prenorm_residual,
                               use_mambapy=use_mambapy, use_cache=False)
        hf_model = MambaForCausalLM(config)
    model = HFMambaLM(hf_model, kwargs)
    model.set_gradient_checkpointing(gradient_checkpointing)
    return model
