"""Warp-lane helpers for the "lanes" selective scan (selective_scan_lanes_*.py).

Those kernels use only 1-D (BD,) tensors for their per-channel values (lane i of warp w holds
channel 32 w + i, one element per thread) and (BD, K) tiles whose K time steps sit in one thread's
registers. So the exact lane of every value is known, and two things Triton does not offer can be
written as inline PTX on the 1-D tensors: broadcasting lane n's value to its whole warp
(``shfl_idx``) and exchanging with lane i ^ m (``shfl_xor``). Under TRITON_INTERPRET=1 (the CPU
tests: no inline PTX) the same exchanges are done with reshapes, so the tests run the kernels'
algorithm, lane for lane.

``split_steps`` / ``join_steps`` turn a (BD, K) tile (one vector load or store per lane, K
consecutive steps) into K (BD,) tensors in time order and back: in-register moves, no shuffles.
The rows causal conv (causal_conv1d_rows.py) uses the same loads and stores.
"""
from __future__ import annotations

import os

import triton
import triton.language as tl

# The interpreter cannot run inline PTX.
FAST_SHFL: tl.constexpr = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") != "1")


@triton.jit
def shfl_idx(x, SRC: tl.constexpr, BD: tl.constexpr, PURE: tl.constexpr = True):
    """Every lane of each warp gets lane SRC's value of x (BD,) fp32. PURE=False keeps the
    compiler from merging equal shuffles: the lanes backward shuffles B_n both in its
    recomputation and in its reverse pass, and merged, the K x N values would have to stay live
    between the two (its measured kernels use PURE=False; offline it spilled a little less)."""
    if FAST_SHFL:
        src = tl.full([BD], SRC, tl.int32)
        return tl.inline_asm_elementwise("shfl.sync.idx.b32 $0, $1, $2, 0x1f, -1;", "=r,r,r",
                                         [x, src], dtype=tl.float32, is_pure=PURE, pack=1)
    else:
        xr = tl.reshape(x, (BD // 32, 32))
        v = tl.sum(tl.where(tl.arange(0, 32)[None, :] == SRC, xr, 0.0), axis=1)  # (warps,)
        return tl.reshape(tl.broadcast_to(v[:, None], (BD // 32, 32)), (BD,))


@triton.jit
def shfl_xor(x, M: tl.constexpr, BD: tl.constexpr):
    """Lane i gets lane (i ^ M)'s value of x (BD,) fp32; M a power of two below 32."""
    if FAST_SHFL:
        m = tl.full([BD], M, tl.int32)
        return tl.inline_asm_elementwise("shfl.sync.bfly.b32 $0, $1, $2, 0x1f, -1;", "=r,r,r",
                                         [x, m], dtype=tl.float32, is_pure=True, pack=1)
    else:
        return tl.reshape(tl.flip(tl.reshape(x, (BD // (2 * M), 2, M)), 1), (BD,))


@triton.jit
def _level(vals, M: tl.constexpr, HALF: tl.constexpr, lane, BD: tl.constexpr):
    # One level of the reduce-scatter: a lane whose bit M is 0 keeps the lower half of the
    # values, gives the upper half to lane i ^ M and adds what comes back; the other lane the
    # reverse. Kept value i then stands for index i + HALF * bit.
    bit = (lane // M) % 2
    out = ()
    for i in tl.static_range(HALF):
        keep = tl.where(bit != 0, vals[i + HALF], vals[i])
        send = tl.where(bit != 0, vals[i], vals[i + HALF])
        out = out + (keep + shfl_xor(send, M, BD),)
    return out


@triton.jit
def first_level_pair(lo, hi, lane, BD: tl.constexpr):
    """A warp's reduce-scatter of 32 values (lane i ends with the sum of value i over the 32
    lanes of its warp) takes 31 exchanges, 16 + 8 + 4 + 2 + 1, where a butterfly all-reduce of
    each value would take 160. This is its first level for one pair (value i, value i + 16) =
    (lo, hi), done as soon as the pair exists, so that 16 values, not 32, wait for the rest."""
    up = (lane // 16) % 2
    keep = tl.where(up != 0, hi, lo)
    send = tl.where(up != 0, lo, hi)
    return keep + shfl_xor(send, 16, BD)


@triton.jit
def reduce_scatter_rest(v, lane, BD: tl.constexpr):
    """The reduce-scatter after its first level: 16 values (first_level_pair's) -> one, lane i
    holding value i's sum (i < 16: the first of each pair, else the second)."""
    v = _level(v, 8, 8, lane, BD)
    v = _level(v, 4, 4, lane, BD)
    v = _level(v, 2, 2, lane, BD)
    v = _level(v, 1, 1, lane, BD)
    return v[0]


@triton.jit
def split_steps(x, BD: tl.constexpr, K: tl.constexpr):
    """(BD, K) -> tuple of K (BD,) tensors, step 0 first (K = 2, 4 or 8)."""
    e, o = tl.split(tl.reshape(x, (BD, K // 2, 2)))  # even, odd steps
    if K == 2:
        return (e, o)
    elif K == 4:
        t0, t2 = tl.split(e)
        t1, t3 = tl.split(o)
        return (t0, t1, t2, t3)
    else:
        ee, eo = tl.split(tl.reshape(e, (BD, 2, 2)))  # (0, 4), (2, 6)
        oe, oo = tl.split(tl.reshape(o, (BD, 2, 2)))  # (1, 5), (3, 7)
        t0, t4 = tl.split(ee)
        t2, t6 = tl.split(eo)
        t1, t5 = tl.split(oe)
        t3, t7 = tl.split(oo)
        return (t0, t1, t2, t3, t4, t5, t6, t7)


@triton.jit
def join_steps(ts, BD: tl.constexpr, K: tl.constexpr):
    """Tuple of K (BD,) tensors, step 0 first -> (BD, K); the inverse of split_steps."""
    if K == 2:
        return tl.join(ts[0], ts[1])
    elif K == 4:
        e = tl.join(ts[0], ts[2])
        o = tl.join(ts[1], ts[3])
        return tl.reshape(tl.join(e, o), (BD, 4))
    else:
        ee = tl.join(ts[0], ts[4])
        eo = tl.join(ts[2], ts[6])
        oe = tl.join(ts[1], ts[5])
        oo = tl.join(ts[3], ts[7])
        e = tl.reshape(tl.join(ee, eo), (BD, 4))
        o = tl.reshape(tl.join(oe, oo), (BD, 4))
        return tl.reshape(tl.join(e, o), (BD, 8))


@triton.jit
def load_raw(base, t, K: tl.constexpr):
    """K steps from time t of each lane's row (base: (BD, 1) pointers, unit stride along time) as
    they are in memory: a tuple of one (BD, K) tile, or of two (BD, K / 2) when K steps exceed 16
    bytes (so that the vector lies along time in one thread and the lanes stay on channels; a
    wider tile would be split over two lanes). Issued a chunk before ``raw_steps`` converts it,
    the load's latency hides behind that chunk's work."""
    BITS: tl.constexpr = base.dtype.element_ty.primitive_bitwidth
    if K * BITS <= 128:
        return (tl.load(base + t + tl.arange(0, K)[None, :]),)
    else:
        H: tl.constexpr = K // 2
        return (tl.load(base + t + tl.arange(0, H)[None, :]),
                tl.load(base + (t + H) + tl.arange(0, H)[None, :]))


@triton.jit
def load_raw_masked(base, t, mask, K: tl.constexpr):
    """load_raw with a (BD, 1) mask: zeros where it is False."""
    BITS: tl.constexpr = base.dtype.element_ty.primitive_bitwidth
    if K * BITS <= 128:
        return (tl.load(base + t + tl.arange(0, K)[None, :], mask=mask, other=0.0),)
    else:
        H: tl.constexpr = K // 2
        return (tl.load(base + t + tl.arange(0, H)[None, :], mask=mask, other=0.0),
                tl.load(base + (t + H) + tl.arange(0, H)[None, :], mask=mask, other=0.0))


@triton.jit
def raw_steps(raw, BD: tl.constexpr, K: tl.constexpr):
    """load_raw's tiles -> K fp32 (BD,) tensors, step 0 first."""
    BITS: tl.constexpr = raw[0].dtype.primitive_bitwidth
    if K * BITS <= 128:
        return split_steps(raw[0].to(tl.float32), BD, K)
    else:
        H: tl.constexpr = K // 2
        return (split_steps(raw[0].to(tl.float32), BD, H)
                + split_steps(raw[1].to(tl.float32), BD, H))


@triton.jit
def take(ts, I: tl.constexpr, n: tl.constexpr):
    """ts[I : I + n] of a tuple (slicing a tuple is not Triton syntax)."""
    out = ()
    for j in tl.static_range(n):
        out = out + (ts[I + j],)
    return out


@triton.jit
def store_steps(base, t, ts, BD: tl.constexpr, K: tl.constexpr):
    """Store K (BD,) tensors (step 0 first) at time t of each lane's row, in base's dtype; at
    most 16 bytes per store, as in load_raw."""
    ty: tl.constexpr = base.dtype.element_ty
    BITS: tl.constexpr = ty.primitive_bitwidth
    if K * BITS <= 128:
        tl.store(base + t + tl.arange(0, K)[None, :], join_steps(ts, BD, K).to(ty))
    else:
        H: tl.constexpr = K // 2
        tl.store(base + t + tl.arange(0, H)[None, :],
                 join_steps(take(ts, 0, H), BD, H).to(ty))
        tl.store(base + (t + H) + tl.arange(0, H)[None, :],
                 join_steps(take(ts, H, H), BD, H).to(ty))


@triton.jit
def store_vec(base, ts, BD: tl.constexpr, N: tl.constexpr):
    """Store N (BD,) tensors at base + 0 .. N - 1 of each lane's row (base: (BD, 1) pointers), in
    base's dtype, as 16-byte vectors (N a multiple of the elements in 16 bytes: 4 fp32, 8 fp16):
    N / 4 or N / 8 stores a thread, not N."""
    ty: tl.constexpr = base.dtype.element_ty
    E: tl.constexpr = 128 // ty.primitive_bitwidth
    for g in tl.static_range(N // E):
        tile = join_steps(take(ts, g * E, E), BD, E).to(ty)
        tl.store(base + g * E + tl.arange(0, E)[None, :], tile)
