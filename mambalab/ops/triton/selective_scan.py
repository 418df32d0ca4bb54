"""Triton selective scan for Mamba-1, forward and backward (design and timings:
docs/kernels/selective_scan.md).

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t          (h reset to 0 where a document starts)
    y_t = (sum_n C_t[n] h_t[n] + D * u_t) * silu(z_t)
    delta = softplus(delta + delta_bias) when delta_softplus

Shapes: u, delta, z (B, D, L), any strides (a transposed view of a (B, L, 2D) projection works);
A (D, N) fp32; B, C (B, N, L); D, delta_bias (D,) fp32; initial_state (B, D, N) fp32; doc_starts
(B, L) bool. The state is fp32; inputs bf16, fp16 or fp32; y has u's dtype.

Entry points:
- ``selective_scan_triton(...)`` -> y or (y, last_state): autograd-aware; gradients for u, delta, A,
  B, C, D, z, delta_bias and initial_state (and through last_state).
- ``selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
  doc_starts, return_last_state, save_states=True, y_out=None)`` -> (y, last_state | None,
  states): the raw forward, no autograd. ``states`` (B, n_chunks, D, N) fp32 holds h at the start
  of every chunk; keep it (or recompute it by calling the forward again) for the backward.
  ``y_out``: a (B, D, L) buffer with unit stride along L to write y into (default: a new
  contiguous one).
- ``selective_scan_bwd(dy, u, delta, A, B, C, D, z, delta_bias, delta_softplus, doc_starts, states,
  dlast_state=None, du_out=None, ddelta_out=None, dz_out=None, y_out=None, dB_out=None,
  dC_out=None)`` -> dict with du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dinitial_state (None
  for an absent input). du, ddelta, dz are written into the given buffers (one layout, unit
  stride along L), else new contiguous (B, D, L) ones, in their input's dtype; dB, dC come back
  in B's and C's dtype, in ``dB_out`` and ``dC_out`` when given.
The fused mixer (``mamba_inner_triton``) calls the two raw functions inside its own autograd
Function, with buffers that are views of its (D, B*L) matrices. ``CONFIG`` holds the
implementation: "lanes" (the default: one thread per (batch, channel); where its contract does
not hold, ``lanes_ok``, the tile kernels run), "tile" or "step", and each one's sizes. With the
lanes (and step) kernels the mixer keeps the forward's states and the backward gives y back
(``bwd_writes_y``); with the tile kernels it drops ``states`` and reruns ``selective_scan_fwd``
in its backward. ``keep_states``: the autograd Function keeps the tile kernels' chunk states
rather than rerunning the forward (faster, but 403 MB a layer at B=8, L=2048, D=1536; off by
default; the lanes kernels' states, 201 MB, are kept whenever a backward can follow).
"""
from __future__ import annotations

import torch

from mambalab.ops.triton import config_from_env, lanes_states, unavailable_reason
from mambalab.ops.triton.selective_scan_bwd import grad_buffers, scan_bwd_launch
from mambalab.ops.triton.selective_scan_fwd import scan_fwd_launch
from mambalab.ops.triton.selective_scan_lanes_bwd import lanes_bwd_launch
from mambalab.ops.triton.selective_scan_lanes_fwd import lanes_fwd_launch
from mambalab.ops.triton.selective_scan_step_bwd import step_bwd_launch
from mambalab.ops.triton.selective_scan_step_fwd import step_fwd_launch

# impl: "tile" (selective_scan_fwd.py / _bwd.py: a (N_IN, BLOCK_T, BLOCK_D, N_OUT) tile scanned
# along time) or "step" (selective_scan_step_*.py: one time step per tile, all N states of a
# channel in one thread, states every step_state_every steps). The step kernels issue fewer
# instructions per element than the tile kernels (offline SASS) but measured 2.1x slower on an
# H200, neither more warps (time segments) nor their fixed layouts closing the gap
# (docs/kernels/selective_scan.md), so "tile" is the default.
# "tile" keys: block_t must be the same in forward and backward (the saved states are per chunk).
# n_in: states per thread (the rest of N spread over lanes); block_d should be a multiple of
# 32 // (N / n_in) * warps so that no warp splits the time axis. keep_states: the autograd
# Function keeps the chunk states (B, L / block_t, D, N) fp32 for the backward instead of rerunning
# the forward there: 0.4 ms faster per layer at B=8, L=2048, D=1536, but 8x the bytes of a bf16 u
# at block_t = 4 (403 MB per layer), so off by default.
# "step" keys: the forward saves h every step_state_every steps ((B, L / 16, N, D) fp32, 100 MB per
# layer at the shape above, so the autograd Function and the fused mixer keep them); the backward
# recomputes the chunk states inside each such block into an L2-sized scratch. Backward tiles
# (N_IN, D_IN, N_B, D_LANES, N_OUT): n_batch batches and d_lanes channels share a warp's lanes,
# the states sit in registers (n_in 1: on the last axis, where Triton's layouts keep them).
# step_seg_len: time steps per segment scanned in parallel (None: one; "auto": step_warps_per_sm
# warps per SM); segments did not make the step kernels faster on an H200 (still 2.1x slower than "tile",
# docs/kernels/selective_scan.md), so the warp count is not their limit.
# "lanes" keys (selective_scan_lanes_*.py: one thread per (batch, channel), its N <= 16 states in
# registers, K = lanes_chunk steps unrolled per chunk, B and C broadcast by warp shuffles):
# lanes_warps channels-of-32 per program. lanes_pipeline: the forward issues each chunk's loads
# (u, dt, z, B/C) a chunk ahead and holds them in registers: Nsight Compute on the H200 had shown
# the first use of a chunk's loads as its largest single stall (13% of the samples); with it the
# forward took 0.593 ms against 0.949 at B=16 (0.442 against 0.867 at B=8), as the mixer runs it
# (scripts/bench_scan.py --impl lanes-variants, fifth session; an L1 prefetch a few chunks ahead,
# tried before, was slower). lanes_bwd_pipeline: the same in the backward, 0 none, 1 the forward's
# inputs (2.230 against 2.454 ms at B=16; no extra spills offline), 2 also dy and the saved state
# (8.9 ms: ten times the spills). (The backward a half chunk at a time, K / 2 steps of states
# live, measured slower, 3.0 against 2.2 ms at B=16, and was removed; so was the backward in
# state passes, 2 or 4 passes of 8 or 4 states, 2.51-4.07 against 2.26 ms at B=16, sixth
# session, docs/kernels/selective_scan.md.) lanes_bwd_wave_warps_per_sm: the backward's warps
# one SM holds (8 at its 255 registers); a batch beyond one wave of the device is launched in
# equal parts of at most 6 warps an SM (selective_scan_lanes_bwd.batch_parts, which has the
# measurements: at 32 x 2048 the training step went from 279.0 to 262.2 ms); None: one launch.
# The forward saves the states channel-last, (B, L / K, N, D), so that each state's store is one
# line per warp.
# lanes_bwd_segments: a batch too small to fill the device runs the backward in time segments
# (1: never; an int; "auto": as many as keep 6 warps an SM, each of at least 16 chunks;
# selective_scan_lanes_bwd.time_segments), after a light pass that computes what each segment
# passes to the one before it (selective_scan_lanes_carry.py). lanes_fwd_segments: the same for
# the forward (the state each segment starts from; "auto" aims at 8 warps an SM). Measured:
# docs/kernels/selective_scan.md, twelfth session.
# The default since 2026-12-01: on an H200 the mixer's scan (forward, then the backward that also
# gives y back) took 2.08 ms at B=8 and 2.82 at B=16 (fifth session), against 2.55 and 4.53 for
# "tile" (docs/kernels/selective_scan.md). Shapes outside the lanes kernels' contract (N > 16,
# channels not a multiple of 32 * lanes_warps, L not a multiple of lanes_chunk, a stride along
# time that is not 1, B and C of two dtypes), and fp32 inputs unless lanes_fp32, take the tile
# kernels.
# lanes_states: the dtype of the chunk states the forward keeps for the backward, "float16" (the
# default since the eighth session: half the bytes, (D, N) a chunk stored as vectors, and a
# fallback to fp32 when one overflows; lanes_states.py) or "float32".
# lanes_dbc_16bit: the backward's per-warp dB/dC partials in B's dtype when it is 16-bit (half
# the bytes written and summed; dB and dC are returned in that dtype anyway).
# Measured together on an H200 (training Mamba-130M, 32 x 2048, mambalab alone, one process
# each, scripts/gpu/s9.sh ab2): 272.5k tokens/s and 33.1 GiB against 264.5k / 264.0k and 42.3
# for fp32 states and fp32 partials. fp16 states in the (N, D) layout were slower (260.9k) and
# fp32 states in (D, N) too (253.4k); 4-step chunks slower still (240.1k fp16, 236.6k fp32).
# lanes_bwd_gluon: the backward in Gluon (selective_scan_gluon_bwd.py: two threads a channel, the
# chunk's per-channel values, outputs and dB/dC sums in shared memory) where its contract holds
# on a CUDA device; elsewhere, and under TRITON_INTERPRET=1, the Triton kernel.
# lanes_fwd_maxnreg: ptxas's register cap for the forward: "auto" (168 where the launch needs no
# more waves than at ptxas's own 128: 13% faster at B=32 on an H200, 2% at B=8), None, or an int
# (selective_scan_lanes_fwd.fwd_maxnreg). Measured and removed (twentieth session): the forward
# in Gluon, one thread a channel with B and C from shared memory (1,019 instructions a chunk
# against 1,173, but 0.390-0.397 against 0.373 ms at B=8, 0.885 against 0.882 at B=32); its
# loads two chunks ahead (0.435 / 0.934 ms).
# lanes_fp32: whether fp32 inputs take the lanes kernels too (off: on the H200 the tile kernels
# were faster for them, 2.78 against 4.43 ms at B=8 with the first lanes version; the bf16
# inputs of mixed-precision training are what the lanes kernels are for).
# Measured on the H200 and removed (nineteenth session, docs/kernels/selective_scan.md): some
# decays by a polynomial on the FMA pipe instead of MUFU ex2 (B=8 slower, B=32 4% faster), and
# two threads a channel of N / 2 states each (slower at B=8 and 32, with or without segments).
CONFIG = {"impl": "lanes", "lanes_chunk": 8, "lanes_warps": 1, "lanes_pipeline": True,
          "lanes_bwd_pipeline": 1, "lanes_bwd_wave_warps_per_sm": 8, "lanes_bwd_segments": "auto",
          "lanes_fwd_segments": "auto",
          "lanes_fp32": False, "lanes_states": "float16", "lanes_dbc_16bit": True,
          "lanes_bwd_gluon": True, "lanes_fwd_maxnreg": "auto",
          "block_t": 4, "fwd_n_in": 8, "fwd_block_d": 16, "fwd_warps": 1,
          "bwd_n_in": 4, "bwd_block_d": 8, "bwd_warps": 1, "keep_states": False,
          "step_state_every": 16, "step_fwd_block_t": 4, "step_fwd_n_in": 16,
          "step_fwd_block_d": 32, "step_fwd_warps": 1, "step_bwd_block_t": 1,
          "step_bwd_n_in": 1, "step_bwd_d_in": 1, "step_bwd_n_batch": 2, "step_bwd_d_lanes": 16,
          "step_bwd_warps": 1, "step_seg_len": None, "step_warps_per_sm": 16}


def _config_from_env() -> None:
    """MAMBALAB_SCAN_CONFIG='{"impl": "step", ...}' overrides CONFIG keys (benchmarks, A/B runs)."""
    config_from_env(CONFIG, "MAMBALAB_SCAN_CONFIG")


_config_from_env()


def step_seg_len(batch: int, dim: int, seqlen: int, device: torch.device) -> int:
    """Time steps per segment for the step kernels. They hold one (batch, channel) per thread,
    B * D / 32 warps in all (384 at B=8, D=1536 on 132 SMs); splitting time into segments scanned
    in parallel (after a summary pass that carries the state, or the gradient, across segments)
    multiplies the warps, which turned out not to be their limit. "auto" aims at
    CONFIG["step_warps_per_sm"] warps per SM, in power-of-two segment counts; None (the default:
    segments measured slower on an H200) is one segment."""
    every = CONFIG["step_state_every"]
    if CONFIG["step_seg_len"] is None:
        return seqlen
    if CONFIG["step_seg_len"] != "auto":
        return max(int(CONFIG["step_seg_len"]), every)
    sms = (torch.cuda.get_device_properties(device).multi_processor_count
           if device.type == "cuda" else 1)
    warps = max(batch * dim // 32, 1)
    want = sms * CONFIG["step_warps_per_sm"]
    n_segs = 1
    while warps * n_segs < want and n_segs * 2 * every <= seqlen:
        n_segs *= 2
    return -(-seqlen // (n_segs * every)) * every


def lanes_states_dtype(device: torch.device = torch.device("cpu")) -> torch.dtype:
    """The dtype of the lanes forward's saved chunk states (CONFIG["lanes_states"]; fp32 on a
    device where fp16 states have overflowed: lanes_states.py)."""
    return lanes_states.dtype(CONFIG["lanes_states"], device)


def lanes_ok(u, delta, B, C, z) -> bool:
    """Whether the lanes kernels take this call (CONFIG["impl"] == "lanes" and the shapes and
    strides fit their contract); forward and backward decide alike from the same inputs."""
    if CONFIG["impl"] != "lanes":
        return False
    batch, dim, seqlen = u.shape
    dstate = B.shape[1]
    unit_l = all(t is None or t.stride(2) == 1 for t in (u, delta, B, C, z))
    if not CONFIG["lanes_fp32"] and any(t is not None and t.element_size() > 2
                                        for t in (u, delta, B, C, z)):
        return False
    return (dstate <= 16 and dim % (32 * CONFIG["lanes_warps"]) == 0
            and seqlen % CONFIG["lanes_chunk"] == 0 and unit_l and B.dtype == C.dtype)


def _check(u, delta, A, B, C, D, z, delta_bias, initial_state, doc_starts) -> None:
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, dim, seqlen), got shape {tuple(u.shape)}")
    batch, dim, seqlen = u.shape
    if seqlen == 0:
        raise ValueError("the selective scan needs seqlen >= 1; got an empty sequence")
    reason = unavailable_reason(u.device)
    if reason is not None:
        raise RuntimeError(f"selective_scan_triton cannot run on {u.device}: {reason}")
    if delta.shape != u.shape or (z is not None and z.shape != u.shape):
        raise ValueError(f"delta and z must have u's shape {tuple(u.shape)}, got "
                         f"{tuple(delta.shape)} and {None if z is None else tuple(z.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must be (dim={dim}, dstate), got {tuple(A.shape)}")
    dstate = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.shape != (batch, dstate, seqlen):
            raise ValueError(f"{name} must be (batch, dstate, seqlen) = {(batch, dstate, seqlen)}, "
                             f"got {tuple(t.shape)}; pass a (B, 1, N, L) group as .squeeze(1)")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (dim,):
            raise ValueError(f"{name} must be ({dim},), got {tuple(t.shape)}")
    if initial_state is not None and initial_state.shape != (batch, dim, dstate):
        raise ValueError(f"initial_state must be {(batch, dim, dstate)}, "
                         f"got {tuple(initial_state.shape)}")
    if doc_starts is not None and doc_starts.shape != (batch, seqlen):
        raise ValueError(f"doc_starts must be (batch, seqlen) = {(batch, seqlen)}, "
                         f"got {tuple(doc_starts.shape)}")
    tensors = [t for t in (u, delta, A, B, C, D, z, delta_bias, initial_state, doc_starts)
               if t is not None]
    if any(t.device != u.device for t in tensors):
        raise ValueError("all selective-scan inputs must be on one device; move them with .to(u.device)")


def _prep(A, D, delta_bias, initial_state, doc_starts):
    """Small per-channel tensors go in as contiguous fp32; doc_starts as uint8 (B, L)."""
    f32 = lambda t: None if t is None else t.detach().to(torch.float32).contiguous()  # noqa: E731
    docs = None if doc_starts is None else doc_starts.to(torch.uint8)
    return f32(A), f32(D), f32(delta_bias), f32(initial_state), docs


def selective_scan_fwd(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=True,
                       initial_state=None, doc_starts=None, return_last_state=False,
                       save_states=True, y_out=None):
    """Raw forward: (y, last_state | None, states | None). See the module docstring."""
    _check(u, delta, A, B, C, D, z, delta_bias, initial_state, doc_starts)
    A, D, delta_bias, initial_state, doc_starts = _prep(A, D, delta_bias, initial_state, doc_starts)
    if lanes_ok(u, delta, B, C, z):
        if y_out is not None and y_out.stride(2) != 1:
            raise ValueError(f"y_out must have unit stride along L, got strides {y_out.stride()}")
        return lanes_fwd_launch(
            u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias,
            delta_softplus=delta_softplus, initial_state=initial_state, doc_starts=doc_starts,
            save_states=save_states, return_last_state=return_last_state,
            chunk=CONFIG["lanes_chunk"], num_warps=CONFIG["lanes_warps"],
            pipeline=CONFIG["lanes_pipeline"], y_out=y_out,
            states_dtype=lanes_states_dtype(u.device), segments=CONFIG["lanes_fwd_segments"],
            maxnreg=CONFIG["lanes_fwd_maxnreg"])
    if CONFIG["impl"] == "step":  # reads any layout one step at a time: channel-last is best
        return step_fwd_launch(
            u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias,
            delta_softplus=delta_softplus, initial_state=initial_state, doc_starts=doc_starts,
            save_states=save_states, return_last_state=return_last_state,
            state_every=CONFIG["step_state_every"], block_d=CONFIG["step_fwd_block_d"],
            block_t=CONFIG["step_fwd_block_t"], n_in=CONFIG["step_fwd_n_in"],
            num_warps=CONFIG["step_fwd_warps"], y_out=y_out,
            seg_len=step_seg_len(u.shape[0], u.shape[1], u.shape[2], u.device))
    # Time-strided views (a transposed (B, L, D) projection) ran the forward at 1.0 ms against
    # 0.4 ms contiguous on an H100; a copy costs ~0.035 ms per tensor, so make them contiguous.
    u, delta, z = (t.contiguous() if t is not None and t.stride(-1) != 1 else t
                   for t in (u, delta, z))
    return scan_fwd_launch(
        u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias,
        delta_softplus=delta_softplus, initial_state=initial_state, doc_starts=doc_starts,
        save_states=save_states, return_last_state=return_last_state,
        block_d=CONFIG["fwd_block_d"], block_t=CONFIG["block_t"], n_in=CONFIG["fwd_n_in"],
        num_warps=CONFIG["fwd_warps"], y_out=y_out)


def selective_scan_bwd(dy, u, delta, A, B, C, D=None, z=None, delta_bias=None,
                       delta_softplus=True, doc_starts=None, states=None, dlast_state=None,
                       du_out=None, ddelta_out=None, dz_out=None, y_out=None, dB_out=None,
                       dC_out=None):
    """Raw backward: a dict of gradients. See the module docstring. ``y_out`` (step and lanes
    kernels only, see ``bwd_writes_y``): also write the forward's y there, as the backward
    recomputes it. ``dB_out``, ``dC_out``: (B, N, L) buffers with unit stride along L for dB and
    dC (the lanes kernels write them directly; the others copy)."""
    for name, t in (("dB_out", dB_out), ("dC_out", dC_out)):
        if t is not None and (t.shape != B.shape or (t.shape[2] > 1 and t.stride(2) != 1)):
            raise ValueError(f"{name} must be (B, N, L) = {tuple(B.shape)} with unit stride "
                             f"along L, got {tuple(t.shape)} {t.stride()}")
    if y_out is not None and not bwd_writes_y(u, delta, B, C, z):
        raise ValueError("y_out needs the step or lanes kernels (the tile backward does not "
                         "compute y)")
    if states is None:
        raise ValueError("selective_scan_bwd needs the states from selective_scan_fwd(save_states=True)")
    A32, D32, bias32, _, docs = _prep(A, D, delta_bias, None, doc_starts)
    if dlast_state is not None:
        dlast_state = dlast_state.to(torch.float32).contiguous()
    if lanes_ok(u, delta, B, C, z):
        dy = dy if dy.stride(2) == 1 else dy.contiguous()
        du, ddt, dz = grad_buffers(u, delta, z, du_out, ddelta_out, dz_out,
                                   lambda dtype: torch.empty_like(
                                       u, dtype=dtype, memory_format=torch.contiguous_format),
                                   unit_stride_l=True)
        grads = lanes_bwd_launch(
            dy=dy, u=u, delta=delta, A=A32, B=B, C=C, D=D32, z=z, delta_bias=bias32,
            delta_softplus=delta_softplus, doc_starts=docs, states=states,
            dlast_state=dlast_state, chunk=CONFIG["lanes_chunk"],
            num_warps=CONFIG["lanes_warps"], du=du, ddelta=ddt, dz=dz,
            pipeline=CONFIG["lanes_bwd_pipeline"], y_out=y_out,
            wave_warps_per_sm=CONFIG["lanes_bwd_wave_warps_per_sm"],
            partials_16bit=bool(CONFIG["lanes_dbc_16bit"]), dB_out=dB_out, dC_out=dC_out,
            segments=CONFIG["lanes_bwd_segments"], use_gluon=bool(CONFIG["lanes_bwd_gluon"]))
    elif CONFIG["impl"] == "step":
        grads = step_bwd_launch(
            dy=dy, u=u, delta=delta, A=A32, B=B, C=C, D=D32, z=z, delta_bias=bias32,
            delta_softplus=delta_softplus, doc_starts=docs, states=states,
            dlast_state=dlast_state, state_every=CONFIG["step_state_every"],
            block_t=CONFIG["step_bwd_block_t"], n_in=CONFIG["step_bwd_n_in"],
            d_in=CONFIG["step_bwd_d_in"], n_batch=CONFIG["step_bwd_n_batch"],
            d_lanes=CONFIG["step_bwd_d_lanes"], num_warps=CONFIG["step_bwd_warps"],
            du_out=du_out, ddelta_out=ddelta_out, dz_out=dz_out, y_out=y_out,
            seg_len=step_seg_len(u.shape[0], u.shape[1], u.shape[2], u.device))
    else:
        grads = scan_bwd_launch(
            dy=dy, u=u, delta=delta, A=A32, B=B, C=C, D=D32, z=z, delta_bias=bias32,
            delta_softplus=delta_softplus, doc_starts=docs, states=states, dlast_state=dlast_state,
            block_d=CONFIG["bwd_block_d"], block_t=CONFIG["block_t"], n_in=CONFIG["bwd_n_in"],
            num_warps=CONFIG["bwd_warps"], du_out=du_out, ddelta_out=ddelta_out,
            dz_out=dz_out)
    for key, buf, like in (("dB", dB_out, B), ("dC", dC_out, C)):
        if buf is None:
            grads[key] = grads[key].to(like.dtype)
        elif grads[key] is not buf:
            grads[key] = buf.copy_(grads[key])
    grads["dA"] = grads["dA"].to(A.dtype)
    if D is not None:
        grads["dD"] = grads["dD"].to(D.dtype)
    if delta_bias is not None:
        grads["ddelta_bias"] = grads["ddelta_bias"].to(delta_bias.dtype)
    return grads


def bwd_writes_y(u=None, delta=None, B=None, C=None, z=None) -> bool:
    """Whether selective_scan_bwd can also give back the forward's y (``y_out``) for these
    inputs: the step and lanes kernels recompute it anyway, so a caller that needs y in its
    backward (the fused mixer, for out_proj's weight gradient) keeps the forward's states (h
    every step_state_every steps, or every lanes_chunk steps) instead of rerunning it. The lanes
    answer depends on the shapes (lanes_ok), so pass the scan's inputs."""
    if CONFIG["impl"] == "lanes":
        return u is not None and lanes_ok(u, delta, B, C, z)
    return CONFIG["impl"] == "step"


class SelectiveScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, initial_state, doc_starts,
                delta_softplus, return_last_state):
        # the step and lanes kernels: keep the states (h every step_state_every or lanes_chunk
        # steps) rather than rerun the forward in the backward (0.7 ms a layer for lanes at B=8)
        keep = (CONFIG["keep_states"] or CONFIG["impl"] == "step"
                or (lanes_ok(u, delta, B, C, z) and any(ctx.needs_input_grad)))
        y, last, states = selective_scan_fwd(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, doc_starts,
            return_last_state=return_last_state, save_states=keep)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, initial_state, doc_starts,
                              states)
        ctx.delta_softplus = delta_softplus
        if return_last_state:
            return y, last
        return y

    @staticmethod
    def backward(ctx, dy, *rest):
        u, delta, A, B, C, D, z, delta_bias, initial_state, doc_starts, states = ctx.saved_tensors
        dlast = rest[0] if rest else None
        if states is None:  # rerun the forward for the chunk states (memory-lean mode)
            _, _, states = selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias,
                                              ctx.delta_softplus, initial_state, doc_starts)
        g = selective_scan_bwd(dy, u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus,
                               doc_starts, states, dlast)
        dh0 = g["dinitial_state"].to(initial_state.dtype) if initial_state is not None else None
        return (g["du"], g["ddelta"], g["dA"], g["dB"], g["dC"], g["dD"], g["dz"],
                g["ddelta_bias"], dh0, None, None, None)


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                          delta_softplus=True, initial_state=None, doc_starts=None,
                          return_last_state=False):
    """y (B, D, L), or (y, last_state (B, D, N) fp32) with return_last_state. See the module
    docstring for the recurrence and the shapes."""
    return SelectiveScanFn.apply(u, delta, A, B, C, D, z, delta_bias, initial_state, doc_starts,
                                 delta_softplus, return_last_state)
