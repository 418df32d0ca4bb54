"""Compile a small Gluon kernel (explicit layouts and shared memory) for sm_90 without a GPU, to
show that a Gluon selective scan could be developed with offline SASS checks as the Triton
kernels were (scripts/sass_count.py): Triton's CPU interpreter does not run Gluon kernels, so
their correctness and timing need the GPU machine, but their registers, spills and instruction
mix do not. Run with the GPU image's Triton (3.6 in 2026-12) in a side venv:

    python scripts/gluon_compile_check.py     # prints the layouts, registers and SASS size
"""
import subprocess
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon._runtime import GluonASTSource


@gluon.jit
def _toy(x_ptr, y_ptr, N: gl.constexpr):
    # one thread owns 16 consecutive values (as a lanes-scan thread owns its 16 states), and the
    # values go through shared memory, which plain Triton does not let a kernel address
    layout: gl.constexpr = gl.BlockedLayout([16], [32], [1], [0])
    offs = gl.arange(0, N, layout=layout)
    x = gl.load(x_ptr + offs)
    smem = gl.allocate_shared_memory(gl.float32, [N], gl.SwizzledSharedLayout(1, 1, 1, [0]))
    smem.store(x * 2.0)
    gl.store(y_ptr + offs, smem.load(layout) + 1.0)


def main() -> None:
    src = GluonASTSource(_toy, {"x_ptr": "*fp32", "y_ptr": "*fp32", "N": "constexpr"}, {"N": 512})
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 1})
    print(next(line for line in compiled.asm["ttgir"].splitlines() if "#ttg.blocked" in line))
    bin_dir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as ptx:
        ptx.write(compiled.asm["ptx"])
        ptx.flush()
        info = subprocess.run([str(bin_dir / "ptxas"), "-arch=sm_90a", "-v", "-o", "/dev/null",
                               ptx.name], capture_output=True, text=True).stderr
    print("ptxas:", " ".join(line.strip() for line in info.splitlines() if "Used" in line))
    nvdisasm = bin_dir / "nvdisasm"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        sass = subprocess.run([str(nvdisasm), "-c", f.name], capture_output=True, text=True).stdout
    ops = [line for line in sass.splitlines() if line.strip().startswith("/*")]
    print("SASS instructions:", len(ops), "| shared-memory stores/loads:",
          sum("STS" in line for line in ops), "/", sum("LDS" in line for line in ops))


if __name__ == "__main__":
    main()
