"""One line per training row of a `python -m mambalab.bench` JSON (the GPU call scripts' logs)."""
import json
import sys

for r in json.load(open(sys.argv[1]))["training"]:
    print(f"  {r['implementation']:18s} {r['batch_size']:3d}x{r['seq_len']} {r.get('status')}"
          f" {r.get('tokens_per_s') or 0:>10,.0f} tok/s {r.get('step_ms') or 0:7.1f} ms"
          f" {r.get('peak_mem_gib') or 0:5.1f} GiB")
