"""The Mamba-1 language model, parameter for parameter as mamba_ssm's MambaLMHeadModel."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from mambalab.models.config import NORM_EPS, MambaConfig
from mambalab.models.init import init_mamba_lm_
from mambalab.models.mixer import MambaMixer, stateful_impl
from mambalab.models.state import MambaState
from mambalab.ops.cross_entropy import fused_linear_cross_entropy, resolve_cross_entropy
from mambalab.ops.dispatch import (AUTO_TRITON_MIXER_MIN_ROWS, auto_mixer, resolve_kernels,
                                   unavailable_reason)
from mambalab.ops.rms_norm import rms_norm


@dataclass
class MambaLMOutput:
    loss: torch.Tensor | None = None      # scalar, or (B, L) fp32 for reduction="none"
    logits: torch.Tensor | None = None    # (B, L, V) when no targets were given


class RMSNorm(nn.Module):
    """Holds the weight (named as mamba_ssm's); the computation is ``mambalab.ops.rms_norm``."""

    def __init__(self, d_model: int, eps: float = NORM_EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))


class Block(nn.Module):
    """residual += hidden; hidden = mixer(norm(residual)): mamba_ssm's Block, fused add + norm."""

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.mixer = MambaMixer(config.d_model, config.d_inner, config.d_state, config.d_conv,
                                config.dt_rank_value)
        self.norm = RMSNorm(config.d_model)

    def forward(self, hidden, residual, kernels, doc_starts=None, conv_state=None, ssm_state=None):
        hidden, residual = rms_norm(hidden, self.norm.weight, self.norm.eps, residual=residual,
                                    prenorm=True, residual_in_fp32=self.residual_in_fp32,
                                    impl=kernels["rms_norm"])
        return self.mixer(hidden, kernels, doc_starts, conv_state, ssm_state), residual


class MambaBackbone(nn.Module):
    def __init__(self, config: MambaConfig):
        super().__init__()
        self.embedding = nn.Embedding(config.padded_vocab_size, config.d_model)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm_f = RMSNorm(config.d_model)


class MambaLM(nn.Module):
    """Embedding -> n_layer x Block -> RMSNorm -> lm_head (tied to the embedding by default)."""

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.config = config
        self.backbone = MambaBackbone(config)
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)
        init_mamba_lm_(self, n_layer=config.n_layer)
        if config.tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight
        self.gradient_checkpointing = config.gradient_checkpointing
        self._kernels_by_device: dict[str, dict[str, str]] = {}

    # -- what the rest of mambalab calls -------------------------------------------------------
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())                 # tied weights once

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        self.gradient_checkpointing = enabled

    def kernels(self, device: torch.device | str | None = None) -> dict[str, str]:
        """The implementation of each op on ``device`` (default: where the weights are)."""
        device = torch.device(device) if device is not None else self.lm_head.weight.device
        # Resolved once per device and kept on the instance: a plain dict lookup in forward,
        # which torch.compile traces without a graph break.
        key = str(device)
        if key not in self._kernels_by_device:
            self._kernels_by_device[key] = resolve_kernels(self.config.kernels, device)
        return dict(self._kernels_by_device[key])

    def kernel_report(self, device: torch.device | str | None = None) -> dict[str, str]:
        """Op -> implementation used, plus the cross-entropy path and the carried-state path."""
        device = torch.device(device) if device is not None else self.lm_head.weight.device
        report = self.kernels(device)
        report["cross_entropy"] = resolve_cross_entropy(device, "mean")
        report["mixer"] = ("fused mamba_inner" if report["mamba_inner"] != "reference"
                           else "composed ops")
        if (self.config.kernels == "auto"
                and auto_mixer(report, 1 << 30, 1, device)["mamba_inner"] != report["mamba_inner"]):
            rows = AUTO_TRITON_MIXER_MIN_ROWS
            report["mixer"] += (f" (cuda below {rows} scan rows, triton from batch "
                                f"{-(-rows // self.config.d_inner)} up)")
        report["stateful_scan"] = stateful_impl("selective_scan", report["selective_scan"], device)
        report["decode_step"] = ("mamba_ssm (causal_conv1d_update, selective_state_update)"
                                 if device.type == "cuda" and unavailable_reason(
                                     "mamba_inner", "cuda", device) is None else "torch")
        return report

    def allocate_state(self, batch_size: int, device: torch.device | str | None = None,
                       dtype: torch.dtype | None = None) -> MambaState:
        weight = self.lm_head.weight
        device = device if device is not None else weight.device
        dtype = dtype if dtype is not None else weight.dtype
        cfg = self.config
        return MambaState(
            conv_states=[torch.zeros(batch_size, cfg.d_inner, cfg.d_conv, device=device,
                                     dtype=dtype) for _ in range(cfg.n_layer)],
            ssm_states=[torch.zeros(batch_size, cfg.d_inner, cfg.d_state, device=device,
                                    dtype=torch.float32) for _ in range(cfg.n_layer)])

    # -- computation ---------------------------------------------------------------------------
    def hidden_states(self, input_ids: torch.Tensor, doc_starts: torch.Tensor | None = None,
                      state: MambaState | None = None) -> torch.Tensor:
        """input_ids (B, L) -> final normed hidden states (B, L, d_model)."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (B, L), got shape {tuple(input_ids.shape)}")
        if doc_starts is not None and doc_starts.shape != input_ids.shape:
            raise ValueError(f"doc_starts must have input_ids' shape {tuple(input_ids.shape)}, "
                             f"got {tuple(doc_starts.shape)}")
        if state is not None and state.batch_size != input_ids.shape[0]:
            raise ValueError(f"state holds {state.batch_size} rows, input_ids {input_ids.shape[0]}")
        kernels = self.kernels(input_ids.device)
        if doc_starts is not None and state is None and kernels["mamba_inner"] == "cuda":
            if self.config.kernels != "auto":
                raise ValueError(
                    "doc_starts needs kernels that reset state at document starts, and "
                    "model.kernels=cuda means mamba_ssm's kernels, which cannot. Use "
                    "model.kernels=auto, triton or reference, or data.doc_boundaries=false")
            # auto: the mixer's ops take the kernels that reset at document starts (Triton where
            # it runs), as a carried state does
            kernels = {op: stateful_impl(op, impl, input_ids.device)
                       for op, impl in kernels.items()}
        elif self.config.kernels == "auto" and state is None:
            # large batches: the Triton mixer is the faster one (dispatch.auto_mixer)
            kernels = auto_mixer(kernels, input_ids.shape[0], self.config.d_inner,
                                 input_ids.device)
        hidden = self.backbone.embedding(input_ids)                      # (B, L, d)
        residual = None
        ckpt = (self.gradient_checkpointing and self.training and torch.is_grad_enabled()
                and state is None)  # recomputing a block would update a carried state twice
        for i, layer in enumerate(self.backbone.layers):
            states = (None, None) if state is None else (state.conv_states[i], state.ssm_states[i])
            if ckpt:
                hidden, residual = checkpoint(layer, hidden, residual, kernels, doc_starts,
                                              *states, use_reentrant=False)
            else:
                hidden, residual = layer(hidden, residual, kernels, doc_starts, *states)
        if state is not None:
            state.seqlen_offset += input_ids.shape[1]
        norm_f = self.backbone.norm_f
        return rms_norm(hidden, norm_f.weight, norm_f.eps, residual=residual, prenorm=False,
                        residual_in_fp32=self.config.residual_in_fp32, impl=kernels["rms_norm"])

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None,
                doc_starts: torch.Tensor | None = None, state: MambaState | None = None,
                reduction: str = "mean") -> MambaLMOutput:
        hidden = self.hidden_states(input_ids, doc_starts, state)        # (B, L, d)
        if targets is None:
            return MambaLMOutput(logits=self.lm_head(hidden))            # (B, L, V)
        if targets.shape != input_ids.shape:
            raise ValueError(f"targets must have input_ids' shape {tuple(input_ids.shape)}, "
                             f"got {tuple(targets.shape)}")
        batch, seq_len, d_model = hidden.shape
        loss = fused_linear_cross_entropy(hidden.reshape(batch * seq_len, d_model),
                                          self.lm_head.weight, targets.reshape(-1),
                                          reduction=reduction)
        if reduction == "none":
            loss = loss.view(batch, seq_len)
        return MambaLMOutput(loss=loss)

    @torch.no_grad()
    def step(self, token_ids: torch.Tensor, state: MambaState) -> torch.Tensor:
        """token_ids (B,) -> logits (B, V) of the next token; ``state`` advanced in place."""
        hidden = self.backbone.embedding(token_ids)                      # (B, d)
        residual = None
        kernels = self.kernels(token_ids.device)
        impl = kernels["rms_norm"]
        # mamba_ssm's decoding kernels come with the cuda install (same packages as mamba_inner).
        fused = token_ids.device.type == "cuda" and (
            unavailable_reason("mamba_inner", "cuda", token_ids.device) is None)
        for i, layer in enumerate(self.backbone.layers):
            hidden, residual = rms_norm(hidden, layer.norm.weight, layer.norm.eps,
                                        residual=residual, prenorm=True,
                                        residual_in_fp32=self.config.residual_in_fp32, impl=impl)
            hidden = layer.mixer.step(hidden, state.conv_states[i], state.ssm_states[i],
                                      fused=fused)
        norm_f = self.backbone.norm_f
        hidden = rms_norm(hidden, norm_f.weight, norm_f.eps, residual=residual, prenorm=False,
                          residual_in_fp32=self.config.residual_in_fp32, impl=impl)
        state.seqlen_offset += 1
        return self.lm_head(hidden)                                      # (B, V)
