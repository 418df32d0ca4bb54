"""Sweeps: reading a multirun folder back, its summary (table, csv, png), the Hydra callback that
writes it when a multirun ends, and the GPU-aware launchers (registered through `hydra_plugins/`)."""
from mambalab.sweeps.results import JobResult, load_job, load_sweep, swept_keys
from mambalab.sweeps.summary import SweepSummary, summarize_sweep

__all__ = ["JobResult", "SweepSummary", "load_job", "load_sweep", "summarize_sweep", "swept_keys"]
