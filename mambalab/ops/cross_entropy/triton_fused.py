"""Fused linear cross-entropy on mambalab's own Triton row kernel: no (N, V) logits at once, and
no wait for the device.

Same scheme as liger-kernel's (which mambalab used before, and which stays selectable): rows in
chunks; per chunk one matmul makes the 16-bit logits, the row kernel
(mambalab/ops/triton/cross_entropy.py) turns them into per-row losses and overwrites them with
their gradient, and two more matmuls add the chunk's share of d hidden and d weight, so the
backward only scales what the forward computed. Two differences, both about time:

- The number of scored rows (for the mean) stays on the device: the kernel reads 1 / n from a
  tensor. liger takes it with ``.item()``, and its backward compares the upstream gradient with
  1.0 by ``torch.equal``: two waits a step for the device, which stop the host from queuing the
  next work ahead of the GPU (at 8 x 2048 the host's issue time is as long as the kernels', so
  there the step took their sum; docs/performance.md, ninth session).
- The row kernel keeps many rows in flight per SM; liger's reduces each block of a row across a
  32-warp program before loading the next.

The weight's gradient is summed over chunks in fp32 and returned in fp32 when the weight is fp32
(the model's master weights under autocast): the head is cast to the compute dtype inside, so its
gradient is not rounded to 16 bits on the way back.
"""
from __future__ import annotations

import torch

from mambalab.ops.cross_entropy.config import CONFIG


def _chunk_rows(n_rows: int, vocab: int, hidden: int) -> int:
    """Rows per chunk: the chunk's logits at most CONFIG["chunk_mem_const"] times its (rows x
    hidden) input, as liger sizes them (a power of two, at most n_rows)."""
    n_chunks = -(-vocab // (int(CONFIG["chunk_mem_const"]) * hidden))
    rows = 1 << max(0, (-(-n_rows // n_chunks) - 1).bit_length())
    return max(1, min(rows, n_rows))


class _TritonLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index: int, reduction: str,
                dtype: torch.dtype, grad_enabled: bool):
        from mambalab.ops.triton.cross_entropy import cross_entropy_rows_

        h = hidden.to(dtype).contiguous()
        w = weight.to(dtype)
        n_rows, d_model = h.shape
        vocab = w.shape[0]
        # needs_input_grad is True under no_grad too: without grad_enabled an evaluation would
        # pay for the two gradient matmuls and the gradient pass of every chunk
        grad_h_needed = grad_enabled and ctx.needs_input_grad[0]
        grad_w_needed = grad_enabled and ctx.needs_input_grad[1]
        grads = grad_h_needed or grad_w_needed
        scored = (targets != ignore_index).sum()
        if reduction == "mean":
            scale = 1.0 / scored.clamp(min=1).float()
        else:
            scale = torch.ones((), device=h.device, dtype=torch.float32)
        scale = scale.reshape(1)
        loss_rows = torch.empty(n_rows, device=h.device, dtype=torch.float32)
        grad_h = torch.empty_like(h) if grad_h_needed else None
        grad_w = torch.zeros(vocab, d_model, device=h.device, dtype=torch.float32) \
            if grad_w_needed else None
        chunk = _chunk_rows(n_rows, vocab, d_model)
        logits = torch.empty(min(chunk, n_rows), vocab, device=h.device, dtype=dtype)
        targets = targets.contiguous()
        for start in range(0, n_rows, chunk):
            end = min(start + chunk, n_rows)
            h_c, lg = h[start:end], logits[:end - start]
            torch.mm(h_c, w.t(), out=lg)
            cross_entropy_rows_(lg, targets[start:end], loss_rows[start:end],
                                scale if grads else None, ignore_index,
                                block=int(CONFIG["block"]), num_warps=int(CONFIG["warps"]))
            if grad_h is not None:
                torch.mm(lg, w, out=grad_h[start:end])
            if grad_w is not None:
                if h.device.type == "cuda":
                    torch.addmm(grad_w, lg.t(), h_c, out_dtype=torch.float32, out=grad_w)
                else:  # addmm's out_dtype is CUDA-only
                    grad_w += (lg.t() @ h_c).float()
        del logits
        loss = loss_rows.sum()
        if reduction == "mean":
            # 0 / 0 = nan when nothing is scored, as F.cross_entropy gives
            loss = loss / scored
        if grad_w is not None and weight.dtype != torch.float32:
            grad_w = grad_w.to(weight.dtype)
        if grad_h is not None and grad_h.dtype != hidden.dtype:
            grad_h = grad_h.to(hidden.dtype)
        ctx.save_for_backward(grad_h, grad_w)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        # scaled by the upstream gradient on the device (liger compares it with 1.0 first,
        # which waits for the device)
        if grad_h is not None:
            grad_h = grad_h * grad_out.to(grad_h.dtype)
        if grad_w is not None:
            grad_w = grad_w * grad_out.to(grad_w.dtype)
        return grad_h, grad_w, None, None, None, None, None


def triton_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                reduction: str = "mean", ignore_index: int = -100) -> torch.Tensor:
    """Cross-entropy of ``hidden @ weight.T`` (hidden (N, d), weight (V, d), targets (N,) int64)
    for reduction mean|sum, as an fp32 scalar. Computed in the autocast dtype under autocast,
    else in hidden's dtype (16- or 32-bit)."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"the triton loss supports reduction mean|sum, got {reduction!r}")
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
    else:
        dtype = hidden.dtype
    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"the triton loss computes in fp32, fp16 or bf16, not {dtype}; "
                         f"use impl='chunked'")
    with torch.autocast(device_type, enabled=False):
        return _TritonLinearCrossEntropy.apply(hidden, weight, targets, ignore_index, reduction,
                                               dtype, torch.is_grad_enabled())
