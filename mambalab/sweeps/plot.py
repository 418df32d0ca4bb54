"""`summary.png`: each job's validation loss against tokens, and the final loss against each swept
value (one panel per swept key)."""
from __future__ import annotations

import math
from pathlib import Path

from mambalab.sweeps.results import JobResult


def _as_float(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def write_plot(jobs: list[JobResult], swept: list[str], path: Path, title: str) -> None:
    # Agg: the summary is written from sweeps on headless machines and from worker processes.
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    panels = 1 + len(swept)
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5), squeeze=False)
    curves = axes[0][0]
    for job in jobs:
        if not job.val_curve:
            continue
        tokens, losses = zip(*job.val_curve)
        label = " ".join(f"{k}={job.override_values().get(k, '-')}" for k in swept) or job.name
        curves.plot(tokens, losses, marker="o", markersize=3, linestyle="-" if job.ok else "--",
                    label=label if job.ok else f"{label} ({job.status})")
    curves.set_xlabel("tokens")
    curves.set_ylabel("validation loss")
    curves.set_title("validation loss")
    curves.grid(alpha=0.3)
    if curves.get_legend_handles_labels()[0]:
        curves.legend(fontsize="small")

    for ax, key in zip(axes[0][1:], swept):
        points = [(job.override_values().get(key, ""), job.final_val_loss, job.ok) for job in jobs]
        numeric = all(_as_float(v) is not None for v, _, _ in points)
        if numeric:
            xs = [_as_float(v) for v, _, _ in points]
            # Learning rates and batch sizes span decades: a log axis shows them evenly.
            if min(xs) > 0 and max(xs) / min(xs) >= 10:
                ax.set_xscale("log")
        else:
            labels = sorted({v for v, _, _ in points})
            xs = [labels.index(v) for v, _, _ in points]
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        done = [(x, loss) for x, (_, loss, ok) in zip(xs, points) if ok and loss is not None]
        if done:
            ax.scatter(*zip(*done), color="tab:blue", label="completed", zorder=3)
        # A failed job has no meaningful final loss: mark where it sits on the swept axis.
        failed = [x for x, (_, _, ok) in zip(xs, points) if not ok]
        if failed:
            for x in failed:
                ax.axvline(x, color="tab:red", alpha=0.4, linestyle=":")
            ax.plot([], [], color="tab:red", linestyle=":", label="did not complete")
        ax.set_xlabel(key)
        ax.set_ylabel("final validation loss")
        ax.set_title(f"final loss vs {key}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")

    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
