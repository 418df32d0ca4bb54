"""The lanes scan's backward with its sums on the tensor cores (Gluon, mma.sync): an experiment
beside the Gluon backward (selective_scan_gluon_bwd.py), same inputs, same saved states, same
gradients and partials.

Why: the Gluon backward spends about half its 26 instructions a (state, step) on sums, not on
the recurrence: over a channel's 16 states (C h for dz, g B for du, g a h A for ddelta) and over
the program's 16 channels (the dB and dC terms, through shared memory). Each of them is a
product of a (16 channels, 16 states) tile of a step with a vector, which one warp-wide mma
(m16n8k16, bf16 in, fp32 out) computes: a (16, 16) tile a step times a (16, 8) matrix whose
column t holds step t's vector and whose other columns are zero, so that the chunk's 8 steps
accumulate into the 8 columns of one (16, 8) result.

- The tiles live in the mma's operand layout: lane 4 g + c holds channels g and g + 8 and
  states 2c, 2c + 1, 2c + 8, 2c + 9 of a (16 channels, 16 states) tile; the recurrence is
  elementwise, so any layout serves it.
- The sums over states take a step's tile as the A operand (states along k); the sums over
  channels its transpose (channels along k: a register shuffle, convert_layout).
- The operands are the tile's values rounded to bf16 (each product summed in fp32): the
  terms of a sum carry bf16's rounding (2^-9 relative), as B, C, u and delta in a bf16 model
  already do; the recurrence itself stays fp32.

Contract as the Gluon backward's (N = 16, K = 8, D a multiple of 16, fp16 saved states in the
(B, L / K, D, N) layout, no y written), partials (B, D / 16, 32, L). Gluon kernels cannot run
under TRITON_INTERPRET=1: tested on the GPU against the Triton kernel.
"""
from __future__ import annotations

from mambalab.ops.triton import config_from_env
from mambalab.ops.triton.selective_scan_fwd import sigmoid, softplus
from mambalab.ops.triton.selective_scan_gluon_bwd import supported  # noqa: F401 same contract

try:  # Triton >= 3.5
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.ampere import mma_v2
except ImportError:  # pragma: no cover - depends on the installed Triton
    gluon = None
    gl = None
    mma_v2 = None

# decay_again: compute each step's decay again in the reverse pass (_decay_again), rather than
# letting the compiler keep the forward pass's
CONFIG = {"pipe": True, "maxnreg": None, "decay_again": True}
config_from_env(CONFIG, "MAMBALAB_MMA_BWD_CONFIG")


def available() -> bool:
    return gluon is not None and mma_v2 is not None


if gluon is not None and mma_v2 is not None:

    @gluon.jit
    def _loads(u_t, dt_t, dy_t, z_t, b_t, c_t, st_t, doc_t, c, dim,
               HAS_Z: gl.constexpr, HAS_DOCS: gl.constexpr):
        """Chunk c's raw loads: u, delta, dy, z (16 channels, 8 steps), B and C (16 states,
        8 steps; as the mma's B operand), the saved state (16, 16), document starts."""
        t = c * 8
        z = gl.load(z_t + t) if HAS_Z else gl.load(u_t + t)
        doc = gl.load(doc_t + t) if HAS_DOCS else gl.load(u_t + t)
        return (gl.load(u_t + t), gl.load(dt_t + t), gl.load(dy_t + t), z, gl.load(b_t + t),
                gl.load(c_t + t), gl.load(st_t + c * dim * 16), doc)

    @gluon.jit
    def _transposed(x):
        """A (16, 16) bf16 tile in the A operand's layout -> its transpose in that layout: one
        movmatrix (a warp's 8 x 8 transpose in registers) per 8 x 8 block, which leaves the
        two off-diagonal blocks in each other's places; swapping them back is a renaming of a
        thread's registers (no instruction). Triton's convert_layout took 4 shuffles and 8
        byte permutes a tile; this, 4 MOVM."""
        y = gl.inline_asm_elementwise("movmatrix.sync.aligned.m8n8.trans.b16 $0, $1;", "=r,r",
                                      [x], dtype=gl.bfloat16, is_pure=True, pack=2)
        y = gl.permute(gl.reshape(y, [2, 8, 2, 8]), [2, 1, 0, 3])
        return gl.convert_layout(gl.reshape(y, [16, 16]), x.type.layout)

    @gluon.jit
    def _masked(w, m):
        """w (bf16 pairs) where m != 0, else 0: one select a register (gl.where took a select
        and a byte permute an element)."""
        return gl.inline_asm_elementwise(
            "{ .reg .pred p; setp.ne.s32 p, $2, 0; selp.b32 $0, $1, 0, p; }", "=r,r,r,r",
            [w, m], dtype=gl.bfloat16, is_pure=True, pack=2)

    @gluon.jit
    def _decay_again(dt, A2, keep, HAS_DOCS: gl.constexpr):
        """exp2(dt A2 (+ keep)) as the forward pass computed it, in inline PTX that the compiler
        cannot match with that pass's: else it keeps the pass's 64 decays live in registers
        across the chunk (spills at 255) instead of computing them again."""
        if HAS_DOCS:
            return gl.inline_asm_elementwise(
                "{ .reg .f32 t; fma.rn.f32 t, $1, $2, $3; ex2.approx.ftz.f32 $0, t; }",
                "=r,r,r,r", [dt, A2, keep], dtype=gl.float32, is_pure=True, pack=1)
        return gl.inline_asm_elementwise(
            "{ .reg .f32 t; mul.rn.f32 t, $1, $2; ex2.approx.ftz.f32 $0, t; }",
            "=r,r,r", [dt, A2], dtype=gl.float32, is_pure=True, pack=1)

    @gluon.jit
    def _col(sm, j: gl.constexpr, LA: gl.constexpr):
        """Step j's per-channel values as a (16, 1) column, from a (8 steps, 16) shared tile."""
        return sm.slice(j, 1, dim=0).permute([1, 0]).load(LA)

    @gluon.jit
    def _row(sm, j: gl.constexpr, LA: gl.constexpr):
        """Step j's per-state values as a (1, 16) row, from a (8 steps, 16) shared tile."""
        return sm.slice(j, 1, dim=0).load(LA)

    @gluon.jit
    def _mma_bwd_kernel(
        u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, pc_ptr, z_ptr, doc_ptr, states_ptr, dy_ptr,
        dlast_ptr, du_ptr, ddt_ptr, dz_ptr, dbc_ptr, dA_ptr, dpc_ptr, dh0_ptr, segG_ptr,
        segP_ptr,
        dim, seqlen, n_chunks, seg_chunks, n_segs, seg_blocks, n_blocks,
        su_b, su_d, sdt_b, sdt_d, sz_b, sz_d, sB_b, sB_n, sC_b, sC_n, sdoc_b, sdy_b, sdy_d,
        so_b, so_d,
        HAS_D: gl.constexpr, HAS_Z: gl.constexpr, HAS_BIAS: gl.constexpr,
        SOFTPLUS: gl.constexpr, HAS_DOCS: gl.constexpr, HAS_DLAST: gl.constexpr,
        SEG: gl.constexpr, PIPE: gl.constexpr, AGAIN: gl.constexpr,
    ):
        K: gl.constexpr = 8
        N: gl.constexpr = 16
        MMA: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[1, 1],
                                                      instr_shape=[16, 8])
        # (16 channels, 16 states) tiles, the A operand's layout
        LA: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=MMA, k_width=2)
        # (16, 8 steps) matrices of a chunk's vectors, the B operand's layout
        LB: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=MMA, k_width=2)
        PLAIN: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])

        pid_d = gl.program_id(0)
        b = gl.program_id(1).to(gl.int64)
        s = 0
        if SEG:
            s = gl.program_id(2)
        # (16 channels, 16 states) coordinates
        ch1 = gl.arange(0, 16, layout=gl.SliceLayout(1, LA))
        st1 = gl.arange(0, 16, layout=gl.SliceLayout(0, LA))
        ch2 = gl.expand_dims(pid_d * 16 + ch1, 1)                 # (16, 1)
        st2 = gl.expand_dims(st1, 0)                              # (1, 16)
        dn2 = (b * dim + ch2) * N + st2                           # (16, 16)
        A2 = gl.load(A_ptr + ch2 * N + st2) * 1.4426950408889634
        if HAS_DLAST:
            g = gl.load(dlast_ptr + dn2)
        else:
            g = gl.zeros([16, 16], gl.float32, LA)
        if SEG:  # what enters from the carry blocks after this segment, last first
            for si in range(0, n_blocks - (s + 1) * seg_blocks):
                sp = ((b * n_blocks + n_blocks - 1 - si) * dim + ch2) * N + st2
                g = gl.load(segG_ptr + sp) + gl.load(segP_ptr + sp) * g
        dA_acc = gl.zeros([16, 16], gl.float32, LA)

        # (16 channels, 8 steps) tiles in the mma's result layout (lane 4 g + c: channels g,
        # g + 8, steps 2c, 2c + 1): the chunk's per-channel inputs and its outputs
        mr = gl.arange(0, 16, layout=gl.SliceLayout(1, MMA))
        mk = gl.arange(0, 8, layout=gl.SliceLayout(0, MMA))
        mch = gl.expand_dims(pid_d * 16 + mr, 1).to(gl.int64)    # (16, 1)
        mk2 = gl.expand_dims(mk, 0)                               # (1, 8)
        u_t = u_ptr + b * su_b + mch * su_d + mk2
        dt_t = dt_ptr + b * sdt_b + mch * sdt_d + mk2
        z_t = z_ptr + b * sz_b + mch * sz_d + mk2
        dy_t = dy_ptr + b * sdy_b + mch * sdy_d + mk2
        doc_t = doc_ptr + b * sdoc_b + mk2 + 0 * mch
        o_t = b * so_b + mch * so_d + mk2
        # B and C (16 states, 8 steps) in the B operand's layout
        bn = gl.expand_dims(gl.arange(0, 16, layout=gl.SliceLayout(1, LB)), 1).to(gl.int64)
        bk = gl.expand_dims(gl.arange(0, 8, layout=gl.SliceLayout(0, LB)), 0)
        b_t = B_ptr + b * sB_b + bn * sB_n + bk
        c_t = C_ptr + b * sC_b + bn * sC_n + bk
        st_t = states_ptr + (b * n_chunks * dim + ch2) * N + st2   # + c * dim * N
        # the partials (B, D / 16, 32, L): row n of dB, row 16 + n of dC; (16 states, 8 steps)
        # in the result layout
        dbc_t = dbc_ptr + ((b * (dim // 16) + pid_d) * 32 + gl.expand_dims(mr, 1).to(gl.int64)
                           ) * seqlen + mk2
        colb = bk  # a step's column in the B operand's layout: its mask

        # per step: delta, delta u, dout and the document mask per channel; B, C per state
        sm_dt = gl.allocate_shared_memory(gl.float32, [K, 16], PLAIN)
        sm_dtu = gl.allocate_shared_memory(gl.float32, [K, 16], PLAIN)
        sm_dout = gl.allocate_shared_memory(gl.float32, [K, 16], PLAIN)
        sm_keep = gl.allocate_shared_memory(gl.float32, [K, 16], PLAIN)
        sm_B = gl.allocate_shared_memory(gl.float32, [K, 16], PLAIN)
        sm_C = gl.allocate_shared_memory(gl.float32, [K, 16], PLAIN)
        # the chunk's outputs' other factors (u, the softplus' derivative, dz's gate factor),
        # kept here rather than in registers across the chunk
        sm_u = gl.allocate_shared_memory(gl.float32, [K, 16], PLAIN)
        sm_sdt = gl.allocate_shared_memory(gl.float32, [K, 16], PLAIN)
        sm_zf = gl.allocate_shared_memory(gl.float32, [K, 16], PLAIN)

        Dv = gl.zeros([16, 1], gl.float32, MMA)
        bias = gl.zeros([16, 1], gl.float32, MMA)
        if HAS_D:
            Dv = gl.load(pc_ptr + mch * 2)
        if HAS_BIAS:
            bias = gl.load(pc_ptr + mch * 2 + 1)
        dD_acc = gl.zeros([16, 1], gl.float32, MMA)
        dbias_acc = gl.zeros([16, 1], gl.float32, MMA)
        ones = gl.full([16, 8], 1.0, gl.bfloat16, LB)
        zi = gl.zeros([16, 8], gl.int32, LB)

        c_lo = 0
        c_hi = n_chunks
        if SEG:
            c_lo = s * seg_chunks
            c_hi = gl.minimum(c_lo + seg_chunks, n_chunks)
        if PIPE:
            nxt = _loads(u_t, dt_t, dy_t, z_t, b_t, c_t, st_t, doc_t, c_hi - 1, dim, HAS_Z,
                         HAS_DOCS)
        for i in range(c_hi - c_lo):
            c = c_hi - 1 - i
            t = c * K
            if PIPE:
                cur = nxt
                nxt = _loads(u_t, dt_t, dy_t, z_t, b_t, c_t, st_t, doc_t,
                             gl.maximum(c - 1, c_lo), dim, HAS_Z, HAS_DOCS)
            else:
                cur = _loads(u_t, dt_t, dy_t, z_t, b_t, c_t, st_t, doc_t, c, dim, HAS_Z,
                             HAS_DOCS)
            # the chunk's per-channel values on (16, 8) tiles: 4 a thread, none twice
            u_k = cur[0].to(gl.float32)
            dtp = cur[1].to(gl.float32)
            dy_k = cur[2].to(gl.float32)
            if HAS_BIAS:
                dtp = dtp + bias
            if SOFTPLUS:
                dt_k = softplus(dtp)
                sm_sdt.store(gl.permute(sigmoid(dtp), [1, 0]))
            else:
                dt_k = dtp
            if HAS_Z:
                z_k = cur[3].to(gl.float32)
                sz = sigmoid(z_k)
                dout = dy_k * z_k * sz
                sm_zf.store(gl.permute(dy_k * sz * (1.0 + z_k * (1.0 - sz)), [1, 0]))
            else:
                dout = dy_k
            sm_u.store(gl.permute(u_k, [1, 0]))
            dtu_k = dt_k * u_k
            dD_acc += gl.sum(dout * u_k, axis=1, keep_dims=True)
            sm_dt.store(gl.permute(dt_k, [1, 0]))
            sm_dtu.store(gl.permute(dtu_k, [1, 0]))
            sm_dout.store(gl.permute(dout, [1, 0]))
            if HAS_DOCS:  # log2 of the decay's factor: -inf where a document starts
                sm_keep.store(gl.permute(gl.where(cur[7] != 0, float("-inf"), 0.0), [1, 0]))
            Bk = cur[4].to(gl.bfloat16)
            Ck = cur[5].to(gl.bfloat16)
            sm_B.store(gl.permute(Bk.to(gl.float32), [1, 0]))
            sm_C.store(gl.permute(Ck.to(gl.float32), [1, 0]))
            # the chunk's vectors as B operands: (16 channels, 8 steps) of delta u and dout
            Wdtu = gl.convert_layout(dtu_k.to(gl.bfloat16), LB)
            Wdout = gl.convert_layout(dout.to(gl.bfloat16), LB)
            h0c = cur[6].to(gl.float32)

            # h over the chunk from the saved state, all K steps live
            hs = ()
            hp = h0c
            for j in gl.static_range(K):
                dtj = _col(sm_dt, j, LA)
                if HAS_DOCS:
                    a = gl.exp2(dtj * A2 + _col(sm_keep, j, LA))
                else:
                    a = gl.exp2(dtj * A2)
                hp = a * hp + _col(sm_dtu, j, LA) * _row(sm_B, j, LA)
                hs = hs + (hp,)

            gB = gl.zeros([16, 8], gl.float32, MMA)     # sum over states of g B, per step
            yp = gl.zeros([16, 8], gl.float32, MMA)     # of C h
            gq = gl.zeros([16, 8], gl.float32, MMA)     # of g a h A (log2 units)
            dB = gl.zeros([16, 8], gl.float32, MMA)     # sum over channels of g delta u
            dC = gl.zeros([16, 8], gl.float32, MMA)     # of h dout
            for jj in gl.static_range(K):
                if K - 1 - jj > 0:
                    hprev = hs[K - 2 - jj]
                else:
                    hprev = h0c
                hj = hs[K - 1 - jj]
                dtj = _col(sm_dt, K - 1 - jj, LA)
                gv = g + _row(sm_C, K - 1 - jj, LA) * _col(sm_dout, K - 1 - jj, LA)
                sel = (colb == K - 1 - jj).to(gl.int32) + zi
                gvb = gv.to(gl.bfloat16)
                hb = hj.to(gl.bfloat16)
                gB = mma_v2(gvb, _masked(Bk, sel), gB)
                yp = mma_v2(hb, _masked(Ck, sel), yp)
                dB = mma_v2(_transposed(gvb), _masked(Wdtu, sel), dB)
                dC = mma_v2(_transposed(hb), _masked(Wdout, sel), dC)
                if AGAIN:
                    a = _decay_again(dtj, A2, _col(sm_keep, K - 1 - jj, LA) if HAS_DOCS else dtj,
                                     HAS_DOCS)
                elif HAS_DOCS:
                    a = gl.exp2(dtj * A2 + _col(sm_keep, K - 1 - jj, LA))
                else:
                    a = gl.exp2(dtj * A2)
                g = a * gv
                gah = g * hprev
                dA_acc += gah * dtj
                gq = mma_v2((gah * A2).to(gl.bfloat16), _masked(ones, sel), gq)

            # the chunk's outputs, (16, 8) tiles
            dt_k = sm_dt.permute([1, 0]).load(MMA)
            u_k = sm_u.permute([1, 0]).load(MMA)
            du_k = dt_k * gB
            if HAS_D:
                du_k += Dv * sm_dout.permute([1, 0]).load(MMA)
            ddt_k = gq * 0.6931471805599453 + u_k * gB
            if SOFTPLUS:
                ddt_k = ddt_k * sm_sdt.permute([1, 0]).load(MMA)
            dbias_acc += gl.sum(ddt_k, axis=1, keep_dims=True)
            gl.store(du_ptr + o_t + t, du_k.to(du_ptr.dtype.element_ty))
            gl.store(ddt_ptr + o_t + t, ddt_k.to(ddt_ptr.dtype.element_ty))
            if HAS_Z:
                y_k = yp
                if HAS_D:
                    y_k += Dv * u_k
                gl.store(dz_ptr + o_t + t,
                         (y_k * sm_zf.permute([1, 0]).load(MMA)).to(dz_ptr.dtype.element_ty))
            gl.store(dbc_t + t, dB.to(dbc_ptr.dtype.element_ty))
            gl.store(dbc_t + (16 * seqlen + t), dC.to(dbc_ptr.dtype.element_ty))

        if SEG:
            dsn = ((b * n_segs + s) * dim + ch2) * N + st2
            gl.store(dA_ptr + dsn, dA_acc)
            if s == 0:
                gl.store(dh0_ptr + dn2, g)
            dpc = ((b * n_segs + s) * dim + mch) * 2
        else:
            gl.store(dh0_ptr + dn2, g)
            gl.store(dA_ptr + dn2, dA_acc)
            dpc = (b * dim + mch) * 2
        gl.store(dpc_ptr + dpc, dD_acc)
        gl.store(dpc_ptr + dpc + 1, dbias_acc)


def launch(*, dy, u, delta, A, B, C, pc, z, doc_starts, states, dlast_state, du, ddelta, dz,
           dbc, dA, dpc, dh0, segG, segP, has_d: bool, has_bias: bool, delta_softplus: bool,
           n_chunks: int, seg_chunks: int, segments: int, seg_blocks: int,
           n_blocks: int) -> None:
    """One launch over the batch rows of its tensors, as selective_scan_gluon_bwd.launch."""
    batch, dim, seqlen = u.shape
    zz = z if z is not None else u
    docs = doc_starts if doc_starts is not None else u
    _mma_bwd_kernel[(dim // 16, batch, segments)](
        u, delta, A, B, C, pc, zz, docs, states, dy,
        dlast_state if dlast_state is not None else A,
        du, ddelta, dz, dbc, dA, dpc, dh0, segG, segP,
        dim, seqlen, n_chunks, seg_chunks, segments, seg_blocks, n_blocks,
        u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), zz.stride(0), zz.stride(1),
        B.stride(0), B.stride(1), C.stride(0), C.stride(1),
        docs.stride(0) if doc_starts is not None else 0, dy.stride(0), dy.stride(1),
        du.stride(0), du.stride(1),
        HAS_D=has_d, HAS_Z=z is not None, HAS_BIAS=has_bias, SOFTPLUS=delta_softplus,
        HAS_DOCS=doc_starts is not None, HAS_DLAST=dlast_state is not None,
        SEG=segments > 1, PIPE=bool(CONFIG["pipe"]), AGAIN=bool(CONFIG["decay_again"]),
        num_warps=1,
        **({"maxnreg": int(CONFIG["maxnreg"])} if CONFIG["maxnreg"] else {}),
    )
