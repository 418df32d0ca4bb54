"""Digest of Nsight Compute's source page (per-instruction warp stall samples), as written by

    ncu -i REPORT.ncu-rep --page source --print-source sass --csv > src.csv
    python3 scripts/ncu_source_digest.py src.csv [TOP]

For each kernel in the CSV: its stall samples summed by reason, then the TOP instructions with
the most samples (index in the kernel's SASS, samples, instruction, its three largest reasons).
An instruction's index times 16 is its offset, which `scripts/sass_ctrl.py` decodes offline
(which scoreboard it waits on, and which instructions set that scoreboard). scripts/gpu/s20.sh
makes such CSVs (docs/kernels/selective_scan.md, twentieth session, reads one).
"""
from __future__ import annotations

import collections
import csv
import sys


def kernels(rows: list[list[str]]):
    """(name, header, instruction rows) for each kernel section of the CSV."""
    i = 0
    while i < len(rows):
        if rows[i] and rows[i][0] == "Kernel Name":
            name, hdr, j, body = rows[i][1], rows[i + 1], i + 2, []
            while j < len(rows) and not (rows[j] and rows[j][0] == "Kernel Name"):
                if len(rows[j]) == len(hdr):
                    body.append(rows[j])
                j += 1
            yield name, hdr, body
            i = j
        else:
            i += 1


def main() -> int:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    top_n = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    with open(sys.argv[1], newline="") as f:
        rows = list(csv.reader(f))
    for name, hdr, body in kernels(rows):
        col = {h: k for k, h in enumerate(hdr)}
        reasons = [h for h in hdr if h.startswith("stall_") and "Not Issued" not in h]
        total, per = collections.Counter(), []
        for k, r in enumerate(body):
            counts = {h: int(r[col[h]] or 0) for h in reasons}
            total.update(counts)
            per.append((int(r[col["Warp Stall Sampling (All Samples)"]] or 0), k,
                        r[col["Source"]].strip(), counts))
        samples = sum(p[0] for p in per)
        print(f"== {name}: {samples} samples, {len(body)} instructions")
        for h, v in total.most_common(10):
            print(f"   {h:24s} {v:8d} {100 * v / max(samples, 1):5.1f}%")
        print("   top instructions (index, samples, SASS, reasons):")
        for s, k, src, counts in sorted(per, reverse=True)[:top_n]:
            why = ", ".join(f"{h[6:]} {v}" for h, v in
                            sorted(counts.items(), key=lambda x: -x[1])[:3] if v)
            print(f"   {k:5d} {s:6d}  {src[:46]:46s} {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
