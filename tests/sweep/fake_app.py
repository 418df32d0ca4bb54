"""A stand-in for the train task with the same run-directory contract and none of the training:
lets the launcher, callback and summary tests run in a second per job.

`fail=true` makes the job record `failed` (as the train task does for an exception); `sleep_s`
keeps a job running so that concurrency and GPU assignment can be observed; `touch_cuda=true`
allocates on the job's cuda:0 and records that GPU's UUID (which physical GPU the job used).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import hydra
import import_probe
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="fake_conf", config_name="fake")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    start = time.time()
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpu_uuid = None
    if cfg.touch_cuda:
        import torch
        torch.ones(1 << 20, device="cuda").sum().item()   # holds a context on the GPU meanwhile
        gpu_uuid = str(torch.cuda.get_device_properties(0).uuid)
    (run_dir / "summary.json").write_text(json.dumps({"status": "running"}))
    time.sleep(float(cfg.sleep_s))
    tokens_per_step = 64
    with (run_dir / "metrics.jsonl").open("w") as f:
        for step in range(1, int(cfg.steps) + 1):
            # A made-up loss curve that depends on lr, so the plot and the table have something
            # to order.
            loss = 5.0 - math.log1p(step * float(cfg.optimizer.lr) * 1e3)
            f.write(json.dumps({"step": step, "split": "train", "loss": loss,
                                "tokens": step * tokens_per_step, "tok_per_s": 1000.0}) + "\n")
            f.write(json.dumps({"step": step, "split": "val", "loss": loss + 0.1,
                                "ppl": math.exp(loss + 0.1), "tokens": step * tokens_per_step})
                    + "\n")
    summary = {"status": "failed" if cfg.fail else "completed", "step": int(cfg.steps),
               "tokens": int(cfg.steps) * tokens_per_step, "tok_per_s": 1000.0,
               "wall_time_s": time.time() - start, "cuda_visible_devices": devices,
               "gpu_uuid": gpu_uuid,
               "cuda_visible_devices_at_import": import_probe.CUDA_VISIBLE_DEVICES_AT_IMPORT,
               "pid": os.getpid(), "start": start, "end": time.time()}
    if cfg.fail:
        summary["error"] = "Traceback (most recent call last):\nValueError: Invalid learning rate"
    else:
        summary["final"] = {"val": {"loss": loss + 0.1, "ppl": math.exp(loss + 0.1)}}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    # As the train task: the final validation loss, None for a failed job (see sweeps/objective.py).
    return None if cfg.fail else loss + 0.1


if __name__ == "__main__":
    main()
