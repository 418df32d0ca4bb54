"""The training implementations the benchmark compares, each with the reason it cannot run here.

mambalab's MambaLM through its public builder (one row per ``kernels`` choice), mamba_ssm's
MambaLMHeadModel, and transformers' MambaForCausalLM with and without gradient checkpointing.
Each returns a model and a loss function of (model, input_ids, targets); nothing is imported
until the implementation is asked for, so a missing package only skips its own row.
"""
from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMPLEMENTATIONS = ("mambalab", "mamba_ssm", "hf", "hf_checkpointing")
# "auto": what model.kernels=auto resolves to per op on this device (a mix of the others)
KERNELS = ("auto", "triton", "cuda", "reference")


@dataclass
class ModelSize:
    d_model: int
    n_layer: int
    vocab_size: int
    d_state: int = 16


@dataclass
class TrainImpl:
    name: str                                   # the row's label, e.g. "mambalab[triton]"
    build: Callable[[], torch.nn.Module]        # a fresh fp32 model on the CPU
    loss: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    skip_reason: str | None = None              # set: not run, the row says why
    slow: bool = False                          # only at or below reference_max_tokens per step
    cuda_graph: bool = False                    # timed as one captured CUDA graph per step


def graph_variants(impls: list[TrainImpl], cuda_graphs: list[bool],
                   device: torch.device) -> list[TrainImpl]:
    """Each implementation once per ``bench.cuda_graphs`` entry, in that order: as it is (False)
    and as a replayed CUDA graph of its whole step (True: the name gets "+graphs")."""
    out = []
    for impl in impls:
        for graphed in cuda_graphs:
            if not graphed:
                out.append(impl)
                continue
            reason = impl.skip_reason or (None if device.type == "cuda"
                                          else "CUDA graphs need a CUDA device")
            out.append(dataclasses.replace(impl, name=impl.name + "+graphs", cuda_graph=True,
                                           skip_reason=reason))
    return out


def _import_reason(module: str, attr: str) -> str | None:
    try:
        if getattr(importlib.import_module(module), attr) is None:
            return f"{module}.{attr} is None (built without its CUDA extension)"
    except Exception as exc:  # a broken CUDA build raises OSError/RuntimeError too
        return f"{module}.{attr} does not import ({type(exc).__name__}: {exc})"
    return None


def _mambalab(size: ModelSize, kernels: str, device: torch.device) -> TrainImpl:
    from mambalab.models import build_mamba_lm

    name = f"mambalab[{kernels}]"
    reason = None
    try:
        from mambalab.ops.dispatch import resolve_kernels

        resolve_kernels(kernels, device)
    except Exception as exc:  # the resolver says why (not installed, no GPU, ...)
        reason = str(exc)

    def build() -> torch.nn.Module:
        return build_mamba_lm(d_model=size.d_model, n_layer=size.n_layer,
                              vocab_size=size.vocab_size, d_state=size.d_state, kernels=kernels)

    def loss(model, input_ids, targets):
        return model(input_ids, targets=targets).loss

    # auto on a CPU resolves to the reference: as slow, so the same token limit applies
    slow = kernels == "reference" or (kernels == "auto" and device.type != "cuda")
    return TrainImpl(name, build, loss, reason, slow=slow)


def _mamba_ssm(size: ModelSize, device: torch.device) -> TrainImpl:
    reason = _import_reason("mamba_ssm.models.mixer_seq_simple", "MambaLMHeadModel")
    if reason is None and device.type != "cuda":
        reason = "mamba_ssm's kernels run on CUDA only"

    def build() -> torch.nn.Module:
        from mamba_ssm.models.config_mamba import MambaConfig
        from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

        config = MambaConfig(d_model=size.d_model, n_layer=size.n_layer,
                             vocab_size=size.vocab_size, ssm_cfg={"d_state": size.d_state},
                             rms_norm=True, residual_in_fp32=True, fused_add_norm=True,
                             pad_vocab_size_multiple=8, tie_embeddings=True)
        return MambaLMHeadModel(config)

    def loss(model, input_ids, targets):
        # mamba_ssm returns bf16 logits under autocast; cross_entropy upcasts them to fp32
        logits = model(input_ids).logits                             # (B, L, V)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))

    return TrainImpl("mamba_ssm", build, loss, reason)


def _hf(size: ModelSize, device: torch.device, checkpointing: bool) -> TrainImpl:
    reason = _import_reason("transformers", "MambaForCausalLM")
    fast = _import_reason("mamba_ssm.ops.selective_scan_interface", "mamba_inner_fn")
    # Without mamba_ssm's kernels, HF runs its pure-PyTorch scan: ~200 tokens/s at this size.
    slow = fast is not None or device.type != "cuda"

    def build() -> torch.nn.Module:
        from transformers import MambaConfig, MambaForCausalLM

        config = MambaConfig(vocab_size=size.vocab_size, hidden_size=size.d_model,
                             num_hidden_layers=size.n_layer, state_size=size.d_state, expand=2,
                             conv_kernel=4, residual_in_fp32=True, tie_word_embeddings=True,
                             use_cache=False)
        model = MambaForCausalLM(config)
        if checkpointing:  # the seed's setting; transformers 5 renamed the method
            enable = getattr(model, "activation_checkpointing_enable", None) or \
                model.gradient_checkpointing_enable
            enable()
        return model

    def loss(model, input_ids, targets):
        # HF's own loss path (what a transformers user runs): it shifts the labels itself and
        # upcasts the logits to fp32; input_ids stand in for the labels.
        return model(input_ids=input_ids, labels=input_ids, use_cache=False).loss

    name = "hf+checkpointing" if checkpointing else "hf"
    return TrainImpl(name, build, loss, reason, slow=slow)


def training_implementations(names: list[str], kernels: list[str], size: ModelSize,
                             device: torch.device) -> list[TrainImpl]:
    """The requested implementations, in order; unknown names fail with the valid ones."""
    out: list[TrainImpl] = []
    for name in names:
        if name == "mambalab":
            for k in kernels:
                if k not in KERNELS:
                    raise ValueError(f"bench.kernels: unknown {k!r}; choose from {KERNELS}")
                out.append(_mambalab(size, k, device))
        elif name == "mamba_ssm":
            out.append(_mamba_ssm(size, device))
        elif name in ("hf", "hf_checkpointing"):
            out.append(_hf(size, device, checkpointing=name == "hf_checkpointing"))
        else:
            raise ValueError(f"bench.implementations: unknown {name!r}; choose from "
                             f"{IMPLEMENTATIONS}")
    return out
