"""What each time segment of the lanes scan passes to its neighbour: the backward's gradient
carry (to the segment before) and the forward's state (to the segment after).

The lanes backward gives each thread one (batch, channel) and walks its chunks from last to
first, so at a small batch it runs few warps: B=8, D=1536 is 384 warps for 132 SMs, under one a
scheduler, and the kernel waits on its own latencies. Cut into S time segments run in parallel
(selective_scan_lanes_bwd.py, ``segments``), each segment needs the gradient that enters it from
the segments after it, g_in(s) = dL/dh at its last step. The backward is linear in that carry:

    g_in(s) = G_{s+1} + P_{s+1} g_in(s + 1),        g_in(S - 1) = dL/dh_T (or 0)

where, for segment s, G_s is what the segment passes back to the step before it when nothing
enters it (its own outputs' part of dL/dh_{start - 1}) and P_s = prod over its steps of a_t =
exp2(A log2 e * sum of dt) (0 if a document starts inside it). The same holds for any run of
steps, so this kernel computes G and P for blocks of ``blk_chunks`` chunks, finer than the
segments, in parallel (at B=8 the segments alone would leave it as short of warps as the
backward), and each backward program folds in the blocks after its segment, last first (a few
FMAs per state and block). Per state and step: a shuffle of C_n, one exp2 and three FP32
operations, against the ~27 instructions of the backward's own step (offline count:
docs/kernels/selective_scan.md, twelfth session), reading only dt, z, dy, C and the document
starts. Segment 0's blocks are not computed: nothing before it needs them.

The forward is the mirror image (selective_scan_lanes_fwd.py): the state entering segment s is
h_in(s) = H_k + P_k h_in over the blocks k before it, first block first, from the initial state,
where H_k is block k's last state from a zero start (per state and step: a shuffle of B_n, one
exp2 and three FP32 operations, against ~9 for the forward's own step) and P_k as above; the
last segment's blocks are not computed.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from mambalab.ops.triton.lanes import load_raw, load_raw_masked, raw_steps, shfl_idx
from mambalab.ops.triton.selective_scan_fwd import sigmoid, softplus


@functools.lru_cache(maxsize=None)
def sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def time_segments(batch: int, warps_per_row: int, n_chunks: int, sms: int | None,
                  warps_per_sm: int | None, min_chunks: int = 16, most: int = 16) -> int:
    """How many time segments a lanes kernel runs in parallel: as many as keep
    the launch within ``warps_per_sm`` warps an SM, each of at least ``min_chunks`` chunks, at
    most ``most``; 1 (none) off CUDA, when warps_per_sm is None, or when the batch alone fills
    the device (batch_parts then). B=8, D=1536 on 132 SMs at 6 an SM: 2."""
    if sms is None or warps_per_sm is None:
        return 1
    return max(1, min(sms * warps_per_sm // (batch * warps_per_row), n_chunks // min_chunks,
                      most))


def resolve_segments(segments: int | str, batch: int, warps_per_row: int, n_chunks: int,
                     device: torch.device, warps_per_sm: int, key: str) -> int:
    """The segment count a launch runs: ``segments`` (CONFIG[key]: "auto", time_segments at
    ``warps_per_sm``, or a positive int) capped at the chunks, then counted again in whole
    carry blocks (segment_chunks), so that none is empty."""
    if segments == "auto":
        segments = time_segments(batch, warps_per_row, n_chunks,
                                 sm_count(device) if device.type == "cuda" else None,
                                 warps_per_sm)
    elif isinstance(segments, bool) or not isinstance(segments, int) or segments < 1:
        raise ValueError(f"selective_scan CONFIG[{key!r}] must be \"auto\" or a positive integer, "
                         f"got {segments!r} (set it with MAMBALAB_SCAN_CONFIG='{{\"{key}\": "
                         "\"auto\"}')")
    segments = min(segments, n_chunks)
    return -(-n_chunks // segment_chunks(n_chunks, segments)[0])


# chunks a carry block holds (at least this many, unless a segment is shorter): 16 of 8 steps,
# so that at B=8, L=2048 the carry kernel runs 8 x 48 warps for each of 16 blocks; a segment
# holds at most BLOCKS_PER_SEGMENT blocks (longer blocks beyond), so that the fold a segment's
# program runs before its chunks, over the blocks of every segment before or after it, stays
# under 16 x 15 steps at any length (at L = 1M: blocks of 512 chunks, not 8,192 blocks)
CARRY_BLOCK_CHUNKS = 16
BLOCKS_PER_SEGMENT = 16


def segment_chunks(n_chunks: int, segments: int,
                   blk_most: int | None = None) -> tuple[int, int]:
    """(chunks a segment, chunks a carry block): blocks of ``blk_most`` (CARRY_BLOCK_CHUNKS)
    chunks, or 1 / BLOCKS_PER_SEGMENT of a segment where that is more, or the whole segment
    where it is less; segments of whole blocks, all equal but the last (so the segments may be
    fewer than asked: the launchers recount them)."""
    blk_most = CARRY_BLOCK_CHUNKS if blk_most is None else blk_most
    seg_chunks = -(-n_chunks // segments)
    blk = min(seg_chunks, max(blk_most, -(-seg_chunks // BLOCKS_PER_SEGMENT)))
    return -(-seg_chunks // blk) * blk, blk


@triton.jit
def _carry_start(A_ptr, pc_ptr, d, HAS_BIAS: tl.constexpr, N: tl.constexpr, BD: tl.constexpr):
    """What both carry kernels start a block with: A log2 e and the zero carry (N (BD,) tensors
    each), the dt bias, and the block's sum of dt and its 'no document starts' factor."""
    A2 = ()
    carry = ()
    for n in tl.static_range(N):
        A2 = A2 + (tl.load(A_ptr + d * N + n) * 1.4426950408889634,)
        carry = carry + (tl.zeros([BD], dtype=tl.float32),)
    zero = tl.zeros([BD], dtype=tl.float32)
    bias = zero
    if HAS_BIAS:
        bias = tl.load(pc_ptr + d * 2 + 1)
    return A2, carry, bias, zero, zero + 1.0


@triton.jit
def _delta(dt, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """One step's delta, as the scan kernels take it: dt plus the bias, through softplus."""
    if HAS_BIAS:
        dt += bias
    if SOFTPLUS:
        dt = softplus(dt)
    return dt


@triton.jit
def _carry_store(carry_ptr, P_ptr, off, carry, A2, dt_sum, alive, N: tl.constexpr):
    """A block's carry and its decay product, prod a_t = exp2(A log2 e sum dt), 0 where a
    document starts inside the block."""
    for n in tl.static_range(N):
        tl.store(carry_ptr + off + n, carry[n])
        tl.store(P_ptr + off + n, tl.exp2(A2[n] * dt_sum) * alive)


@triton.jit
def _lanes_carry_kernel(
    dt_ptr, A_ptr, C_ptr, pc_ptr, z_ptr, doc_ptr, dy_ptr, segG_ptr, segP_ptr,
    dim, n_chunks, blk_chunks, blk0, n_blocks,
    sdt_b, sdt_d, sz_b, sz_d, sC_b, sC_n, sdoc_b, sdy_b, sdy_d,
    HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_DOCS: tl.constexpr, N: tl.constexpr, BD: tl.constexpr, K: tl.constexpr,
):
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    k = tl.program_id(2) + blk0  # the block: chunks [k * blk_chunks, ...)
    d = pid_d * BD + tl.arange(0, BD)  # (BD,): one channel per thread
    lane = tl.arange(0, BD) % 32
    A2, g, bias, dt_sum, alive = _carry_start(A_ptr, pc_ptr, d, HAS_BIAS, N, BD)

    dcol = d[:, None].to(tl.int64)
    dt_row = dt_ptr + b * sdt_b + dcol * sdt_d
    z_row = z_ptr + b * sz_b + dcol * sz_d
    dy_row = dy_ptr + b * sdy_b + dcol * sdy_d
    doc_row = doc_ptr + b * sdoc_b + dcol * 0
    ln = lane[:, None].to(tl.int64)
    c_row = C_ptr + b * sC_b + (ln % 16) * sC_n  # lanes n and 16 + n: C_n (zeros past N)
    c_lo = k * blk_chunks
    c_hi = tl.minimum(c_lo + blk_chunks, n_chunks)
    for i in range(c_hi - c_lo):
        t = (c_hi - 1 - i) * K
        dts = raw_steps(load_raw(dt_row, t, K), BD, K)
        dys = raw_steps(load_raw(dy_row, t, K), BD, K)
        cs = raw_steps(load_raw_masked(c_row, t, (ln % 16) < N, K), BD, K)
        if HAS_Z:
            zs = raw_steps(load_raw(z_row, t, K), BD, K)
        if HAS_DOCS:
            docs = raw_steps(load_raw(doc_row, t, K), BD, K)
        for jj in tl.static_range(K):  # last step first, as the backward (step K - 1 - jj,
            # written out: Triton 3.6 does not keep a name assigned here constexpr)
            dtj = _delta(dts[K - 1 - jj], bias, HAS_BIAS, SOFTPLUS)
            dout = dys[K - 1 - jj]
            if HAS_Z:
                dout = dout * zs[K - 1 - jj] * sigmoid(zs[K - 1 - jj])
            gn = ()
            for n in tl.static_range(N):
                a = tl.exp2(dtj * A2[n])
                if HAS_DOCS:
                    a = tl.where(docs[K - 1 - jj] != 0, 0.0, a)
                gn = gn + (a * (g[n] + shfl_idx(cs[K - 1 - jj], n, BD) * dout),)
            g = gn
            dt_sum += dtj
            if HAS_DOCS:
                alive = tl.where(docs[K - 1 - jj] != 0, 0.0, alive)
    _carry_store(segG_ptr, segP_ptr, ((b * n_blocks + k) * dim + d) * N, g, A2, dt_sum, alive, N)


def lanes_carry_launch(*, dy: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                       C: torch.Tensor, pc: torch.Tensor, z: torch.Tensor | None,
                       has_bias: bool, delta_softplus: bool, doc_starts: torch.Tensor | None,
                       chunk: int, blk_chunks: int, blk0: int,
                       num_warps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, P), each (B, n_blocks, D, N) fp32 for blocks of ``blk_chunks`` chunks, filled from
    block ``blk0`` on (the rows before are never read). Same contract as the lanes backward;
    ``pc``: lanes_fwd.per_channel."""
    batch, dim, seqlen = delta.shape
    dstate = A.shape[1]
    n_blocks = -(-(seqlen // chunk) // blk_chunks)
    segG = torch.empty((batch, n_blocks, dim, dstate), device=delta.device, dtype=torch.float32)
    segP = torch.empty_like(segG)
    zz = z if z is not None else delta
    docs = doc_starts if doc_starts is not None else delta
    bd = 32 * num_warps
    _lanes_carry_kernel[(dim // bd, batch, n_blocks - blk0)](
        delta, A, C, pc, zz, docs, dy, segG, segP,
        dim, seqlen // chunk, blk_chunks, blk0, n_blocks,
        delta.stride(0), delta.stride(1), zz.stride(0), zz.stride(1), C.stride(0), C.stride(1),
        docs.stride(0) if doc_starts is not None else 0, dy.stride(0), dy.stride(1),
        HAS_Z=z is not None, HAS_BIAS=has_bias, SOFTPLUS=delta_softplus,
        HAS_DOCS=doc_starts is not None, N=dstate, BD=bd, K=chunk, num_warps=num_warps,
    )
    return segG, segP


@triton.jit
def _lanes_fwd_carry_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, pc_ptr, doc_ptr, segH_ptr, segP_ptr,
    dim, n_chunks, blk_chunks, n_blocks,
    su_b, su_d, sdt_b, sdt_d, sB_b, sB_n, sdoc_b,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_DOCS: tl.constexpr, N: tl.constexpr,
    BD: tl.constexpr, K: tl.constexpr,
):
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    k = tl.program_id(2)  # the block: chunks [k * blk_chunks, ...)
    d = pid_d * BD + tl.arange(0, BD)  # (BD,): one channel per thread
    lane = tl.arange(0, BD) % 32
    A2, h, bias, dt_sum, alive = _carry_start(A_ptr, pc_ptr, d, HAS_BIAS, N, BD)

    dcol = d[:, None].to(tl.int64)
    u_row = u_ptr + b * su_b + dcol * su_d
    dt_row = dt_ptr + b * sdt_b + dcol * sdt_d
    doc_row = doc_ptr + b * sdoc_b + dcol * 0
    ln = lane[:, None].to(tl.int64)
    b_row = B_ptr + b * sB_b + (ln % 16) * sB_n  # lanes n and 16 + n: B_n (zeros past N)
    c_lo = k * blk_chunks
    c_hi = tl.minimum(c_lo + blk_chunks, n_chunks)
    for c in range(c_lo, c_hi):
        t = c * K
        us = raw_steps(load_raw(u_row, t, K), BD, K)
        dts = raw_steps(load_raw(dt_row, t, K), BD, K)
        bs = raw_steps(load_raw_masked(b_row, t, (ln % 16) < N, K), BD, K)
        if HAS_DOCS:
            docs = raw_steps(load_raw(doc_row, t, K), BD, K)
        for j in tl.static_range(K):
            dtj = _delta(dts[j], bias, HAS_BIAS, SOFTPLUS)
            dtu = dtj * us[j]
            hn = ()
            for n in tl.static_range(N):
                a = tl.exp2(dtj * A2[n])
                if HAS_DOCS:
                    a = tl.where(docs[j] != 0, 0.0, a)
                hn = hn + (a * h[n] + dtu * shfl_idx(bs[j], n, BD),)
            h = hn
            dt_sum += dtj
            if HAS_DOCS:
                alive = tl.where(docs[j] != 0, 0.0, alive)
    _carry_store(segH_ptr, segP_ptr, ((b * n_blocks + k) * dim + d) * N, h, A2, dt_sum, alive, N)


def lanes_fwd_carry_launch(*, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                           B: torch.Tensor, pc: torch.Tensor, has_bias: bool,
                           delta_softplus: bool, doc_starts: torch.Tensor | None, chunk: int,
                           blk_chunks: int, n_needed: int,
                           num_warps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, P), each (B, n_blocks, D, N) fp32 for blocks of ``blk_chunks`` chunks, filled for the
    first ``n_needed`` blocks (the segments but the last). Same contract as the lanes forward."""
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    n_blocks = -(-(seqlen // chunk) // blk_chunks)
    segH = torch.empty((batch, n_blocks, dim, dstate), device=u.device, dtype=torch.float32)
    segP = torch.empty_like(segH)
    docs = doc_starts if doc_starts is not None else u
    bd = 32 * num_warps
    _lanes_fwd_carry_kernel[(dim // bd, batch, n_needed)](
        u, delta, A, B, pc, docs, segH, segP,
        dim, seqlen // chunk, blk_chunks, n_blocks,
        u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), B.stride(0), B.stride(1),
        docs.stride(0) if doc_starts is not None else 0,
        HAS_BIAS=has_bias, SOFTPLUS=delta_softplus, HAS_DOCS=doc_starts is not None, N=dstate,
        BD=bd, K=chunk, num_warps=num_warps,
    )
    return segH, segP
