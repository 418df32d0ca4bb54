"""One line for a training run of the GPU call scripts: tokens/s per log interval (the first, with
compilation and warm-up, left out), peak memory, the last losses.
Usage: python3 scripts/gpu/run_summary.py RUN_DIR NAME EXIT_CODE"""
import json
import statistics
import sys
from pathlib import Path

d, name, rc = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
metrics = d / "metrics.jsonl"
rows = [json.loads(x) for x in metrics.read_text().splitlines()] if metrics.exists() else []
rows = [r for r in rows if r.get("split") == "train" and r.get("tok_per_s")]
tok = [r["tok_per_s"] for r in rows[1:]]
mem = max((r.get("mem_gib") or 0) for r in rows) if rows else 0
print(f"  {name:24s} rc={rc} intervals={len(tok)} tok/s median {statistics.median(tok) if tok else 0:>9,.0f}"
      f" all {[round(t) for t in tok]} mem {mem:.1f} GiB"
      f" losses {[round(r['loss'], 4) for r in rows if 'loss' in r][-3:]}")
