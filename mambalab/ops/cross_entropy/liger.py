"""liger-kernel's fused linear cross-entropy (Triton, CUDA only) with explicit dtypes."""
from __future__ import annotations

import functools
import inspect

import torch

from mambalab.ops.cross_entropy.config import CONFIG


@functools.cache
def liger_unavailable_reason() -> str | None:
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss  # noqa: F401
    except Exception as exc:
        return f"liger-kernel does not import ({type(exc).__name__}: {exc}); pip install liger-kernel"
    return None


@functools.cache
def _function_params() -> tuple[tuple[str, object], ...] | None:
    """(name, default) of LigerFusedLinearCrossEntropyFunction.forward's arguments after ctx, or
    None where they are not the ones this module knows (then the loss module is used)."""
    from liger_kernel.ops.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyFunction

    params = list(inspect.signature(LigerFusedLinearCrossEntropyFunction.forward).parameters.values())
    names = [p.name for p in params[1:]]
    if names[:3] != ["_input", "weight", "target"] or not {"ignore_index", "reduction"} <= set(names):
        return None
    return tuple((p.name, p.default) for p in params[1:])


def _liger_loss(hidden, weight, targets, kwargs: dict) -> torch.Tensor:
    """liger's autograd Function with ``kwargs`` matched to its arguments by name (apply takes
    them by position), CONFIG's chunk_mem_const among them where it has that argument."""
    from liger_kernel.ops.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyFunction
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    params = _function_params()
    if params is None or (kwargs.get("accum_dtype") is not None
                          and "accum_dtype" not in dict(params)):
        return LigerFusedLinearCrossEntropyLoss(**kwargs)(weight, hidden, targets)
    values = dict(kwargs, _input=hidden, weight=weight, target=targets,
                  chunk_mem_const=int(CONFIG["chunk_mem_const"]))
    args = []
    for name, default in params:
        if name not in values and default is inspect.Parameter.empty:
            raise RuntimeError(f"liger-kernel's fused linear cross-entropy wants an argument "
                               f"{name!r} that mambalab does not know; pin liger-kernel<=0.8.5")
        args.append(values.get(name, default))
    out = LigerFusedLinearCrossEntropyFunction.apply(*args)
    return out[0] if isinstance(out, tuple) else out


def liger_linear_cross_entropy(hidden, weight, targets, reduction="mean", ignore_index=-100):
    """Same contract as chunked_linear_cross_entropy for reduction mean|sum, on CUDA tensors."""
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    if reduction not in ("mean", "sum"):
        raise ValueError(f"the liger path supports reduction mean|sum, got {reduction!r}")
    # Liger's Function is not autocast-aware: cast both operands to the autocast dtype here and
    # run it with autocast off, so its matmuls see one dtype (it upcasts to fp32 for softmax).
    if torch.is_autocast_enabled("cuda"):
        dtype = torch.get_autocast_dtype("cuda")
        hidden, weight = hidden.to(dtype), weight.to(dtype)
    elif hidden.dtype != weight.dtype:
        hidden = hidden.to(weight.dtype)
    kwargs = dict(ignore_index=ignore_index, reduction=reduction)
    if "accum_dtype" in inspect.signature(LigerFusedLinearCrossEntropyLoss).parameters:
        # Sum the weight gradient over row chunks in fp32, not in the bf16 of the operands.
        kwargs["accum_dtype"] = torch.float32
    with torch.autocast("cuda", enabled=False):
        return _liger_loss(hidden.contiguous(), weight, targets.contiguous(), kwargs).float()
