"""The lanes backward's dB/dC partials summed over the warps, straight into the callers' buffers.

The lanes backward (selective_scan_lanes_bwd.py) leaves, per warp of 32 channels, the sums over
its channels of dB (lanes 0 .. 15) and dC (lanes 16 .. 31): partials (B, D / 32, 32, L), bf16 or
fp32. dB and dC are their sums over the D / 32 warps. ``part.sum(1)`` followed by copies into the
mixer's x_dbl gradient (an (R + 2N, B*L) matrix whose rows dB and dC are) took three kernels a
layer; here one program sums a (32, BLOCK_L) tile over the warps in fp32 and stores its dB and
dC rows in the outputs' dtype and layout (any strides; unit stride along L keeps the stores
coalesced). Reference: ``part.float().sum(1)`` (tests/ops/test_triton_dbc_sum.py).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from mambalab.ops.triton import config_from_env

# block_l: time steps a program; warps per program. Each program reads D / 32 tiles of
# 32 x block_l partials (8 KB in bf16 at 128). scripts/bench_dbc.py on an H200 (eleventh
# session), B=32, ms: 128 / 8 warps 0.060, 64 / 4 0.061, 128 / 4 0.102, 256 / 4 0.173,
# 256 / 8 0.097; torch's sum and the two copies it replaces 0.077 (B=16: 0.043 against 0.047).
CONFIG = {"block_l": 128, "warps": 8}
# MAMBALAB_DBC_CONFIG='{"block_l": 64}' (JSON) overrides CONFIG keys for a process.
config_from_env(CONFIG, "MAMBALAB_DBC_CONFIG")


@triton.jit
def _dbc_sum_kernel(part_ptr, db_ptr, dc_ptr, n_warps, L, N,
                    sdb_b, sdb_n, sdc_b, sdc_n,
                    BLOCK_L: tl.constexpr):
    pid_l = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    r = tl.arange(0, 32)[:, None]                       # the partial's row: dB_r, dC_(r - 16)
    t = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)[None, :]
    ok_t = t < L
    src = part_ptr + (b * n_warps * 32 + r) * L + t     # warp 0's tile
    acc = tl.zeros([32, BLOCK_L], dtype=tl.float32)
    for w in range(n_warps):
        acc += tl.load(src + w * 32 * L, mask=ok_t, other=0.0).to(tl.float32)
    n = r % 16
    ok = ok_t & (n < N)
    is_b = r < 16
    dst_b = db_ptr + b * sdb_b + n * sdb_n + t
    dst_c = dc_ptr + b * sdc_b + n * sdc_n + t
    tl.store(dst_b, acc.to(db_ptr.dtype.element_ty), mask=ok & is_b)
    tl.store(dst_c, acc.to(dc_ptr.dtype.element_ty), mask=ok & (r >= 16))


def dbc_sum(part: torch.Tensor, n_state: int, dB: torch.Tensor, dC: torch.Tensor) -> None:
    """part (B, W, 32, L) contiguous -> dB[b, n, t] = sum_w part[b, w, n, t] and
    dC[b, n, t] = sum_w part[b, w, 16 + n, t], for n < n_state; dB, dC (B, N, L) with unit
    stride along L, written in their dtype."""
    batch, n_warps, rows, seqlen = part.shape
    if rows != 32 or not part.is_contiguous() or n_state > 16:
        raise ValueError(f"dbc_sum: part must be contiguous (B, W, 32, L) and N <= 16, got "
                         f"{tuple(part.shape)}, N={n_state}")
    for name, t in (("dB", dB), ("dC", dC)):
        if tuple(t.shape) != (batch, n_state, seqlen) or (seqlen > 1 and t.stride(2) != 1):
            raise ValueError(f"dbc_sum: {name} must be (B, N, L) = {(batch, n_state, seqlen)} "
                             f"with unit stride along L, got {tuple(t.shape)} {t.stride()}")
    block_l = min(int(CONFIG["block_l"]), triton.next_power_of_2(seqlen))
    grid = (triton.cdiv(seqlen, block_l), batch)
    _dbc_sum_kernel[grid](part, dB, dC, n_warps, seqlen, n_state,
                          dB.stride(0), dB.stride(1), dC.stride(0), dC.stride(1),
                          BLOCK_L=block_l, num_warps=int(CONFIG["warps"]))
