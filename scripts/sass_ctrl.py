"""Decode the control bits of sm_90 SASS (stall cycles, yield, the write and read scoreboards an
instruction sets, the scoreboards it waits on) for the kernel `scripts/sass_count.py` last
compiled (/tmp/k.cubin, /tmp/k.sass), over an offset range:

    python3 scripts/sass_ctrl.py 0x1900 0x1a80    # needs pyelftools (pip install pyelftools)

Each line: offset, stall count, Wn (sets write scoreboard n: its result is waited on through
n), Rn (read scoreboard: its source registers are read late, as stores' are), wait[...] (the
scoreboards it waits for), the instruction. A warp has six scoreboards; one that a global load
sets and a later exponential or shared-memory load sets too makes every wait on it wait for the
global load: how the twentieth session found why the scan kernels' chunk loads, issued a chunk
ahead, were waited on within the chunk (docs/kernels/selective_scan.md). Bit layout (Volta to
Hopper): bits 105-108 stall, 109 yield, 110-112 write scoreboard, 113-115 read scoreboard,
116-121 wait mask (7: none).
"""
from __future__ import annotations

import re
import sys


def main() -> int:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    try:
        from elftools.elf.elffile import ELFFile
    except ImportError as e:
        raise SystemExit("sass_ctrl.py reads the cubin with pyelftools: "
                         "pip install pyelftools") from e
    with open("/tmp/k.cubin", "rb") as f:
        text = [s for s in ELFFile(f).iter_sections() if s.name.startswith(".text.")][0].data()
    sass = {}
    with open("/tmp/k.sass") as f:
        for line in f:
            m = re.search(r"/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
            if m:
                sass[int(m.group(1), 16)] = m.group(2).strip()
    lo, hi = int(sys.argv[1], 16), int(sys.argv[2], 16)
    for off in range(lo, min(hi, len(text) - 16) + 1, 16):
        ctrl = int.from_bytes(text[off:off + 16], "little") >> 105
        stall, wb, rb, wait = ctrl & 0xF, (ctrl >> 5) & 7, (ctrl >> 8) & 7, (ctrl >> 11) & 0x3F
        waits = "".join(str(i) for i in range(6) if wait >> i & 1)
        print(f"{off:05x} s{stall:2d} {'' if wb == 7 else f'W{wb}':3s} "
              f"{'' if rb == 7 else f'R{rb}':3s} wait[{waits:6s}] {sass.get(off, '?')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
