"""Compile a step scan kernel for sm_90 without a GPU and count its SASS: the instruction mix of
its three largest loops, spills, layout conversions and the TTGIR's layouts (which is how the
step kernels' lanes-on-states layout was found; docs/kernels/selective_scan.md).

    python scripts/sass_count.py fwd|bwd|tile_fwd|tile_bwd|lanes_fwd|lanes_bwd|lanes_carry|lanes_fwd_carry|
        conv_rows_fwd|
        conv_rows_bwd|conv_time_fwd|conv_time_bwd|ce_rows [CONSTEXPR=VALUE ...] [warps=N]
        [maxnreg=N] [ptr:NAME=fp16 ...]

e.g. `python scripts/sass_count.py bwd N_IN=1 N_OUT=16 BLOCK_T=1`. Needs only triton (its
bundled ptxas and nvdisasm) and torch; use the GPU image's Triton version (3.6 in 2026-12) in a
side venv, since instruction counts change between versions. Writes /tmp/k.ttgir, /tmp/k.sass.
Arguments are typed as the mixer calls the kernels: bf16 activations, fp32 states and
parameters, unit stride along time (specialised), other strides divisible by 16."""
import re, subprocess, sys, os, collections
import triton
from triton.compiler import ASTSource
from triton.backends.compiler import GPUTarget
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
which = sys.argv[1]
over = dict(a.split("=") for a in sys.argv[2:])
if which == "fwd":
    from mambalab.ops.triton.selective_scan_step_fwd import _step_fwd_kernel as fn
    const = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, HAS_H0=False, HAS_DOCS=False,
                 SAVE_STATES=True, STORE_LAST=False, BLOCK_D=32, N_IN=16, N_OUT=1, BLOCK_T=4,
                 STATE_EVERY=16, EVEN=True)
    warps = 1
elif which == "tile_bwd":  # the default (tile) backward at CONFIG's tiles
    from mambalab.ops.triton.selective_scan_bwd import _scan_bwd_kernel as fn
    const = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, HAS_DOCS=False,
                 HAS_DLAST=False, BLOCK_D=8, N_IN=4, N_OUT=4, BLOCK_T=4)
    warps = 1
elif which == "lanes_fwd":
    from mambalab.ops.triton.selective_scan_lanes_fwd import _lanes_fwd_kernel as fn
    const = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, HAS_H0=False,
                 HAS_DOCS=False, SAVE_STATES=True, STORE_LAST=False, N=16, BD=32, K=8, PIPE=True,
                 ST_DN=False, WATCH=False, SEG=False)
    warps = 1
elif which == "lanes_bwd":
    from mambalab.ops.triton.selective_scan_lanes_bwd import _lanes_bwd_kernel as fn
    const = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, HAS_DOCS=False,
                 HAS_DLAST=False, WRITE_Y=True, N=16, BD=32, K=8, PIPE=1, ST_DN=False, SEG=False)
    warps = 1
elif which == "lanes_carry":
    from mambalab.ops.triton.selective_scan_lanes_carry import _lanes_carry_kernel as fn
    const = dict(HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, HAS_DOCS=False, N=16, BD=32, K=8)
    warps = 1
elif which == "lanes_fwd_carry":
    from mambalab.ops.triton.selective_scan_lanes_carry import _lanes_fwd_carry_kernel as fn
    const = dict(HAS_BIAS=True, SOFTPLUS=True, HAS_DOCS=False, N=16, BD=32, K=8)
    warps = 1
elif which == "conv_rows_fwd":
    from mambalab.ops.triton.causal_conv1d_rows import _conv_rows_fwd_kernel as fn
    const = dict(W=4, SILU=True, HAS_DOC=False, BD=32, K=16)
    warps = 1
elif which == "conv_rows_bwd":
    from mambalab.ops.triton.causal_conv1d_rows import _conv_rows_bwd_kernel as fn
    const = dict(W=4, SILU=True, HAS_DOC=False, BD=32, K=16)
    warps = 1
elif which == "conv_time_fwd":
    from mambalab.ops.triton.causal_conv1d_time import _conv_time_fwd_kernel as fn
    const = dict(W=4, SILU=True, HAS_DOC=False, G=8, R=256, GPT=1)
    warps = 8
elif which == "conv_time_bwd":
    from mambalab.ops.triton.causal_conv1d_time import _conv_time_bwd_kernel as fn
    const = dict(W=4, SILU=True, HAS_DOC=False, G=8, R=256, GPT=1)
    warps = 8
elif which == "ce_rows":  # the loss's row kernel (cross_entropy.py), bf16 logits
    from mambalab.ops.triton.cross_entropy import _cross_entropy_rows_kernel as fn
    const = dict(HAS_GRAD=True, BLOCK=4096, GROUP=8, EVEN=True)
    warps = 8
elif which == "gluon_bwd":  # the Gluon lanes backward (selective_scan_gluon_bwd.py)
    from mambalab.ops.triton.selective_scan_gluon_bwd import _gluon_bwd_kernel as fn
    const = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, HAS_DOCS=False,
                 HAS_DLAST=False, SEG=False, PIPE=True, DEFER=True, SPLIT=True)
    warps = 1
elif which == "tile_fwd":
    from mambalab.ops.triton.selective_scan_fwd import _scan_fwd_kernel as fn
    const = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, HAS_H0=False,
                 HAS_DOCS=False, SAVE_STATES=True, STORE_LAST=False, BLOCK_D=16, N_IN=8, N_OUT=2,
                 BLOCK_T=4)
    warps = 1
else:
    from mambalab.ops.triton.selective_scan_step_bwd import _step_bwd_kernel as fn
    const = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, HAS_DOCS=False, HAS_DLAST=False,
                 WRITE_Y=True, N_IN=1, D_IN=1, N_B=4, D_LANES=8, N_OUT=16, BLOCK_T=1, STATE_EVERY=16,
                 EVEN=True)  # CONFIG's step_bwd_* defaults
    warps = 1
maxnreg = None
stages = None
ptr_types = {}
for k, v in over.items():
    if k == "warps":
        warps = int(v)
    elif k.startswith("ptr:"):  # ptr:states_ptr=fp16: another element type for one pointer
        ptr_types[k[4:]] = v
    elif k == "stages":  # Triton's num_stages (software pipelining of loops with dots)
        stages = int(v)
    elif k == "maxnreg":  # ptxas's register cap (Triton's maxnreg option): what would spill
        maxnreg = int(v)
    else:
        const[k] = int(v) if v.lstrip("-").isdigit() else (v == "True")
names = fn.arg_names
bf16 = {"u_ptr", "dt_ptr", "B_ptr", "C_ptr", "z_ptr", "y_ptr", "dy_ptr", "du_ptr", "ddt_ptr", "dz_ptr",
        "x_ptr", "out_ptr", "dout_ptr", "dx_ptr"}
sig, constexprs, attrs = {}, {}, {}
for i, n in enumerate(names):
    if n in const:
        sig[n] = "constexpr"; constexprs[(i,)] = const[n]
    elif n.endswith("_ptr"):
        sig[n] = "*bf16" if n in bf16 else ("*u8" if n == "doc_ptr" else
                                            "*i32" if n in ("seg_ptr", "flag_ptr") else
                                            "*i64" if n == "tgt_ptr" else "*fp32")
        if n in ptr_types:
            sig[n] = "*" + ptr_types[n]
        attrs[(i,)] = [["tt.divisibility", 16]]
    elif re.fullmatch(r"s\w+_l", n):
        sig[n] = "constexpr"; constexprs[(i,)] = 1
    elif n == "fzero":
        sig[n] = "fp32"
    else:
        sig[n] = "i32"
        # runtime 0 / 1 arguments are not specialised (do_not_specialize), nor are counts
        if n not in ("lane_zero", "n_chunks", "n_cols", "ignore_index", "n_tb", "seg_chunks", "n_segs", "seg_blocks", "batch",
                     "n_blocks", "blk_chunks", "blk0"):
            attrs[(i,)] = [["tt.divisibility", 16]]
if which.startswith("gluon"):  # Gluon kernels compile from their own AST source
    from triton.experimental.gluon._runtime import GluonASTSource
    source_cls = GluonASTSource
    sig.update({names[i[0]]: "constexpr" for i in constexprs})
    ptr16 = {"states_ptr", "dbc_ptr"}  # fp16 saved states and dB/dC partials
    sig.update({n: "*fp16" for n in ptr16 if n in sig and n not in ptr_types})
else:
    source_cls = ASTSource
k = triton.compile(source_cls(fn, sig, constexprs, attrs), target=GPUTarget("cuda", 90, 32),
                   options={"num_warps": warps, **({"maxnreg": maxnreg} if maxnreg else {}),
                            **({"num_stages": stages} if stages else {})})
open("/tmp/k.ttgir", "w").write(k.asm["ttgir"])
open("/tmp/k.cubin", "wb").write(k.asm["cubin"])
nvdisasm = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/nvdisasm")
sass = subprocess.run([nvdisasm, "-c", "/tmp/k.cubin"], capture_output=True, text=True).stdout
open("/tmp/k.sass", "w").write(sass)
all_lines = sass.splitlines()
addr = lambda l: int(re.search(r"/\*([0-9a-f]{4,6})\*/", l).group(1), 16)
ins = [(addr(l), (re.search(r"\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", l) or [None, "?"])[1], l)
       for l in all_lines if re.search(r"/\*[0-9a-f]{4,6}\*/\s+\S", l)]
labaddr = {}
for j, x in enumerate(all_lines):
    m = re.match(r"\s*(\.L_x_\d+):", x)
    if m:
        for y in all_lines[j + 1:]:
            if re.search(r"/\*[0-9a-f]{4,6}\*/", y):
                labaddr[m.group(1)] = addr(y); break
loops = []
for a, op, l in ins:
    if op.startswith("BRA"):
        t = re.search(r"(\.L_x_\d+)", l)
        if t and t.group(1) in labaddr and labaddr[t.group(1)] < a:
            loops.append((labaddr[t.group(1)], a))
open("/tmp/k.ptx", "w").write(k.asm["ptx"])
ptxas = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/ptxas")
info = subprocess.run([ptxas, "-arch=sm_90a", "-v", "-o", "/dev/null", "/tmp/k.ptx"]
                      + ([f"--maxrregcount={maxnreg}"] if maxnreg else []),
                      capture_output=True, text=True).stderr
regs = (re.search(r"Used (\d+) registers", info) or [None, "?"])[1]
print("regs", regs, "shared", k.metadata.shared, "spill (LDL/STL in whole kernel):",
      sum(op.startswith(("LDL", "STL")) for _, op, _ in ins), "total instr", len(ins))
for lo, hi in sorted(loops, key=lambda x: x[1] - x[0], reverse=True)[:3]:
    span = [op for a, op, _ in ins if lo <= a <= hi]
    c = collections.Counter(o.split(".")[0] for o in span)
    print(f"loop {lo:#x}-{hi:#x}: {len(span)} instr;", c.most_common(14))
print("layouts:", re.findall(r"#blocked\d* = #ttg.blocked<\{[^}]*\}>", open('/tmp/k.ttgir').read()))
print("convert_layout:", open('/tmp/k.ttgir').read().count("convert_layout"))
