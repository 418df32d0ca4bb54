"""Cross-entropy of a block of logit rows, with the gradient written over the logits in place.

The loss half of the fused linear cross-entropy (mambalab/ops/cross_entropy/triton_fused.py):
that driver makes a chunk of (rows, V) 16-bit logits with one matmul, this kernel turns each row
into its loss and overwrites it with d loss / d logits, and the driver's next matmuls take the
gradients of the hidden states and the head from it. Reference: F.cross_entropy (the tests).

Why not liger-kernel's kernel, which does the same job: it reduces each 32K-column block across
its whole 32-warp program (a barrier) before it loads the next, so a row's loads never overlap,
and it moved about 1.5 TB/s on an H200 (8.6 ms of a 32 x 2048 training step for 13 GB of logits
read and written; docs/performance.md, ninth session). Here the first pass keeps a running maximum
and sum per group of 8 columns (one 16-byte load a thread), so that no value crosses threads
until the row is done and the loads of one block do not wait for the sums of the last. The second
pass reads the row again and writes the gradient; with 32 warps a row (CONFIG in
mambalab/ops/cross_entropy/config.py) few enough rows are in flight that the row is still in L2.
Per element that is one read and one write of the 16-bit logits from memory, and about 2.1 exps
(the first pass's per group, the second's per element).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def _cross_entropy_rows_kernel(x_ptr, stride_x, tgt_ptr, loss_ptr, scale_ptr, n_cols,
                               ignore_index, HAS_GRAD: tl.constexpr, BLOCK: tl.constexpr,
                               GROUP: tl.constexpr, EVEN: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    target = tl.load(tgt_ptr + row)
    # (BLOCK // GROUP, GROUP) tiles: a thread holds whole groups (one 16-byte load each), so the
    # max and sum over a group are register operations. EVEN (the row stride and the vocabulary
    # multiples of GROUP): stride_x comes in groups and the mask is per group, so that Triton can
    # prove each group 16-byte aligned and wholly in or out, and vectorises the loads (50,280
    # columns is not a multiple of 16, the divisibility Triton specialises integers on: without
    # this, 16 scalar loads a thread and block)
    if EVEN:
        x_row = x_ptr + row * stride_x * GROUP
    else:
        x_row = x_ptr + row * stride_x
    offs = tl.arange(0, BLOCK // GROUP)[:, None] * GROUP + tl.arange(0, GROUP)[None, :]
    if EVEN:
        lim = tl.arange(0, BLOCK // GROUP)[:, None] * GROUP  # a group's first column, broadcast
    else:
        lim = offs
    if target == ignore_index:
        tl.store(loss_ptr + row, 0.0)
        if HAS_GRAD:
            for start in range(0, n_cols, BLOCK):
                cols = start + offs
                tl.store(x_row + cols, tl.zeros([BLOCK // GROUP, GROUP], tl.float32)
                         .to(x_ptr.dtype.element_ty), mask=start + lim < n_cols)
    else:
        x_target = tl.load(x_row + target).to(tl.float32)
        # pass 1: per group, the running max m (base-2 units) and sum s of 2^(x log2 e - m).
        # m starts at a finite floor, not -inf, so that a group with no column yet (masked: -inf)
        # rescales by 2^0 and adds 2^-inf = 0, with no inf - inf anywhere
        m = tl.full([BLOCK // GROUP], -3.0e38, tl.float32)
        s = tl.zeros([BLOCK // GROUP], tl.float32)
        for start in range(0, n_cols, BLOCK):
            cols = start + offs
            x = tl.load(x_row + cols, mask=start + lim < n_cols, other=float("-inf")).to(tl.float32)
            x = x * LOG2E
            m_new = tl.maximum(m, tl.max(x, axis=1))
            s = s * tl.exp2(m - m_new) + tl.sum(tl.exp2(x - m_new[:, None]), axis=1)
            m = m_new
        m_row = tl.max(m, axis=0)
        s_row = tl.sum(s * tl.exp2(m - m_row), axis=0)
        lse2 = m_row + tl.log2(s_row)  # log2 of sum exp(x)
        tl.store(loss_ptr + row, lse2 * LN2 - x_target)
        if HAS_GRAD:
            # pass 2: d loss / d x = (softmax(x) - onehot(target)) * scale, over the logits; the
            # onehot's -1 is put in after the loop, at one column (a compare per element cost
            # a quarter of the loop's instructions)
            scale = tl.load(scale_ptr)
            for start in range(0, n_cols, BLOCK):
                cols = start + offs
                mask = start + lim < n_cols
                x = tl.load(x_row + cols, mask=mask, other=0.0).to(tl.float32)
                g = tl.exp2(x * LOG2E - lse2) * scale
                tl.store(x_row + cols, g.to(x_ptr.dtype.element_ty), mask=mask)
            tl.debug_barrier()  # the block's stores first, then the target's over them
            g_target = (tl.exp2(x_target * LOG2E - lse2) - 1.0) * scale
            tl.store(x_row + target, g_target.to(x_ptr.dtype.element_ty))


def cross_entropy_rows_(logits: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor,
                        scale: torch.Tensor | None, ignore_index: int, block: int = 8192,
                        num_warps: int = 32) -> None:
    """logits (R, V), unit stride along V: each row's loss into ``loss`` (R,) fp32 (0 where the
    target is ``ignore_index``); with ``scale`` (a one-element fp32 tensor: 1 / the scored rows
    for a mean), the rows are overwritten with (softmax - onehot) * scale in their dtype (0 where
    ignored). Targets must lie in [0, V) or equal ignore_index (not checked: that would wait for
    the device)."""
    rows, n_cols = logits.shape
    if rows == 0:
        return
    if logits.stride(1) != 1:
        raise ValueError("cross_entropy_rows_: logits need unit stride along the vocabulary")
    group = 16 // logits.element_size()  # one 16-byte load a group
    block = max(group * 32 * num_warps, min(block, triton.next_power_of_2(n_cols)))
    even = n_cols % group == 0 and logits.stride(0) % group == 0 \
        and logits.data_ptr() % 16 == 0
    _cross_entropy_rows_kernel[(rows,)](
        logits, logits.stride(0) // group if even else logits.stride(0), targets, loss,
        scale if scale is not None else loss, n_cols, ignore_index, HAS_GRAD=scale is not None,
        BLOCK=block, GROUP=group, EVEN=even, num_warps=num_warps)
