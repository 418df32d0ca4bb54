"""2 ** x on the FMA pipe: a polynomial instead of the MUFU unit's ex2, for the scan's decays.

Why: on an H100/H200 the MUFU unit's ex2 runs at 16 lanes a clock an SM, an eighth of the
FFMA rate, and Nsight Compute counts it in the MIO queue with shuffles and shared-memory
traffic. The lanes scan's forward issues 16 ex2 and 32 shuffles a step a warp; if that queue, not
instruction issue, is its limit, computing some exponentials with FFMAs moves work to a pipe
with room (docs/kernels/selective_scan.md, eighteenth session, has the model and what would
decide it). Reference: ``torch.exp2`` (tested under TRITON_INTERPRET=1 and on the GPU,
tests/ops/test_triton_fast_math.py).

exp2_poly(x) = 2 ** round(x) * p(x - round(x)), p a degree-5 polynomial fitted to 2 ** f on
[-1/2, 1/2] for relative error (largest 1.9e-7 evaluated in fp32; MUFU's ex2.approx: about
2 ** -22, 2.4e-7). The rounding adds and subtracts 1.5 * 2 ** 23, which leaves round(x) in the
sum's low mantissa bits, and the power of two is added to p's exponent field as an integer:
about 11 FMA-pipe and integer instructions (sm_90 SASS: FFMA 5, FADD 3, FMNMX 2, LEA), no MUFU.
x is clamped to [-125, 126] so that the exponent stays in the normal range: 2 ** -125 (1e-38)
stands for any smaller decay, which is 0 to the scan, and about 2 ** 126 for a growth past fp32's
range (where ex2 gives inf).
"""
from __future__ import annotations

import triton
import triton.language as tl

# p(f) = 1 + f (C1 + f (C2 + f (C3 + f (C4 + f C5)))), fitted by reweighted least squares toward
# the smallest largest relative error on [-1/2, 1/2], p(0) = 1 exactly
C1 = tl.constexpr(0.6931470036506653)
C2 = tl.constexpr(0.24022242426872253)
C3 = tl.constexpr(0.05550733581185341)
C4 = tl.constexpr(0.009671512991189957)
C5 = tl.constexpr(0.001326472731307149)
# 1.5 * 2 ** 23: x + ROUND holds round(x) in its low mantissa bits, either sign
ROUND = tl.constexpr(12582912.0)


@triton.jit
def exp2_poly(x):
    """2 ** x in fp32 without the MUFU unit (the module docstring); x fp32, any shape."""
    x = tl.minimum(tl.maximum(x, -125.0), 126.0)
    j = x + ROUND
    f = x - (j - ROUND)   # in [-1/2, 1/2]
    p = C5 * f + C4
    p = p * f + C3
    p = p * f + C2
    p = p * f + C1
    p = p * f + 1.0
    # j's bits are 0x4B400000 + round(x): shifted by 23 only round(x) << 23 remains (mod 2 ** 32)
    e = j.to(tl.int32, bitcast=True) << 23
    return (p.to(tl.int32, bitcast=True) + e).to(tl.float32, bitcast=True)
