"""The benchmark app: composes conf/bench.yaml, trains a tiny model with the reference kernels on
the CPU, skips what is not installed with the reason, profiles, and writes the JSON report."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

CONF = str(Path(__file__).resolve().parents[1] / "conf")

TINY = ["bench.d_model=32", "bench.n_layer=2", "bench.vocab_size=256", "bench.seq_len=16",
        "bench.batch_sizes=[2]", "bench.steps=2", "bench.warmup_steps=1", "bench.device=cpu",
        "bench.mixed_precision=no", "bench.kernels=[reference]", "bench.print_tables=false"]


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="bench", overrides=overrides)


def test_bench_tiny_writes_report(tmp_path):
    from mambalab.training.typecheck import validate_targets

    out = tmp_path / "bench.json"
    cfg = _compose(TINY + ["bench.implementations=[mambalab,mamba_ssm]", "bench.profile=true",
                           "bench.profile_steps=1", f"bench.out={out}"])
    validate_targets(cfg)
    result = instantiate(cfg.bench)
    report = json.loads(out.read_text())
    assert set(report) >= {"config", "environment", "training", "best", "params", "profile"}
    assert report["config"]["seq_len"] == 16 and report["environment"]["device"] == "cpu"

    rows = {r["implementation"]: r for r in report["training"]}
    ours = rows["mambalab[reference]"]
    assert ours["status"] == "ok", ours
    assert ours["tokens_per_s"] > 0 and ours["step_ms"] > 0 and len(ours["step_ms_all"]) == 2
    assert ours["tokens_per_step"] == 32 and ours["best"] is True
    # on a CPU host and device are one: no separate issue time, no host-bound verdict
    assert ours["host_ms"] is None and ours["host_bound"] is None
    assert ours["mfu"] == pytest.approx(6 * ours["params"] * ours["tokens_per_s"] / 989.4e12)
    assert 4.0 < ours["first_loss"] < 7.0  # ln(256) = 5.5 for a fresh model on random tokens
    if rows["mamba_ssm"]["status"] == "skipped":  # not installed here: the row says why
        assert "mamba_ssm" in rows["mamba_ssm"]["reason"]
    assert report["best"]["mambalab[reference]"]["batch_size"] == 2

    prof = report["profile"]
    assert prof["status"] == "ok" and prof["implementation"] == "mambalab[reference]"
    assert prof["groups"] and abs(sum(g["share"] for g in prof["groups"]) - 1.0) < 1e-6
    assert result["training"][0]["implementation"] == "mambalab[reference]"

    from mambalab.benchmarks.markdown import report_markdown

    text = report_markdown(report)  # what docs/performance.md is filled from
    assert "| mambalab[reference] (best) | 2x16 |" in text and "### Profile" in text


def test_reference_skipped_above_its_token_limit(tmp_path):
    cfg = _compose(TINY + ["bench.implementations=[mambalab]", "bench.reference_max_tokens=16",
                           f"bench.out={tmp_path / 'b.json'}"])
    row = instantiate(cfg.bench)["training"][0]
    assert row["status"] == "skipped" and "reference_max_tokens=16" in row["reason"]


def test_unknown_implementation_names_the_choices(tmp_path):
    cfg = _compose(TINY + ["bench.implementations=[mamba2]", f"bench.out={tmp_path / 'b.json'}"])
    with pytest.raises(Exception, match="unknown 'mamba2'"):  # hydra wraps the ValueError
        instantiate(cfg.bench)


def test_bad_sizes_are_named_before_anything_runs(tmp_path):
    out = tmp_path / "b.json"
    cfg = _compose(TINY + ["bench.seq_len=1", "bench.n_layer=0", f"bench.out={out}"])
    with pytest.raises(Exception, match=r"bench.seq_len=1 \(at least 2\), bench.n_layer=0"):
        instantiate(cfg.bench)
    assert not out.exists()   # nothing was measured, so no report


def test_unwritable_report_names_the_path_and_leaves_no_temporary(tmp_path, monkeypatch):
    from mambalab.benchmarks import report
    from mambalab.training import run_dir

    blocker = tmp_path / "file"
    blocker.write_text("")   # a file where the report's folder should be
    where = r"cannot write the benchmark report .*file/b.json.*bench.out"
    with pytest.raises(OSError, match=where):
        report.write_json({"a": 1}, str(blocker / "b.json"))

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    full = tmp_path / "full"
    full.mkdir()
    monkeypatch.setattr(run_dir.os, "fsync", no_space)   # the disk fills as the file is written
    with pytest.raises(OSError, match="No space left on device; point bench.out"):
        report.write_json({"a": 1}, str(full / "b.json"))
    assert list(full.iterdir()) == []   # the temporary file was removed


def test_markdown_names_a_missing_or_broken_report(tmp_path):
    from mambalab.benchmarks.markdown import main

    with pytest.raises(SystemExit, match="cannot read .*nope.json.*bench.out"):
        main([str(tmp_path / "nope.json")])
    cut = tmp_path / "cut.json"
    cut.write_text('{"config": {')
    with pytest.raises(SystemExit, match="cut.json is not a benchmark report"):
        main([str(cut)])
    other = tmp_path / "other.json"
    other.write_text("[1, 2]")
    with pytest.raises(SystemExit, match="other.json is JSON but not a benchmark report"):
        main([str(other)])


def test_kernel_groups():
    from mambalab.benchmarks.profile import kernel_group

    assert kernel_group("_scan_bwd_kernel") == "scan bwd"
    assert kernel_group("_lanes_bwd_kernel") == "scan bwd"
    assert kernel_group("_gluon_bwd_kernel") == "scan bwd"   # the Gluon scan backward
    assert kernel_group("_lanes_fwd_kernel") == "scan fwd"
    assert kernel_group("void selective_scan_fwd_kernel<...>") == "scan fwd"
    assert kernel_group("sm90_xmma_gemm_bf16bf16_bf16f32") == "matmuls"
    assert kernel_group("_rms_fwd_kernel") == "norm"
    assert kernel_group("_conv_bwd_kernel") == "conv"
    assert kernel_group("_conv_rows_fwd_kernel") == "conv"  # the rows kernels
    assert kernel_group("_conv_time_bwd_kernel") == "conv"  # the time kernels
    assert kernel_group("_fused_linear_cross_entropy_kernel") == "loss"
    assert kernel_group("_cross_entropy_rows_kernel") == "loss"  # mambalab's fused loss
    assert kernel_group("void at::native::(anonymous)::multi_tensor_apply_kernel<FusedAdam>") \
        == "optimizer"
    assert kernel_group("elementwise_kernel") == "other"


@pytest.mark.gpu
def test_bench_gpu_smoke(tmp_path):
    """Every part of the benchmark on the GPU at a small size: Triton and CUDA kernels, the other
    implementations where installed, the op timings and the profile's kernel groups."""
    out = tmp_path / "bench.json"
    cfg = _compose(["bench.d_model=128", "bench.n_layer=2", "bench.vocab_size=1024",
                    "bench.seq_len=256", "bench.batch_sizes=[2]", "bench.steps=3",
                    "bench.warmup_steps=2", "bench.kernels=[triton,cuda]", "bench.ops=true",
                    "bench.ops_batch=2", "bench.ops_seq_len=256", "bench.ops_d_inner=256",
                    "bench.ops_dt_rank=8", "bench.ce_tokens=512", "bench.ops_reps=3",
                    "bench.profile=true", "bench.print_tables=false", f"bench.out={out}"])
    report = instantiate(cfg.bench)
    rows = {r["implementation"]: r for r in report["training"]}
    ours = rows["mambalab[triton]"]
    assert ours["status"] == "ok", ours
    assert ours["peak_mem_gib"] > 0 and ours["kernels"]["mamba_inner"] == "triton"
    for row in rows.values():
        assert row["status"] in ("ok", "skipped"), row  # nothing may fail at this size
    # a step's host issue time is measured beside its device time, and the row gets a verdict
    assert 0 < ours["host_ms"] and isinstance(ours["host_bound"], bool), ours
    ops = {(r["op"], r["implementation"]): r for r in report["ops"]}
    for op in ("selective_scan", "causal_conv1d", "rms_norm+residual", "mamba_inner (mixer)"):
        assert ops[(op, "triton")]["status"] == "ok", ops[(op, "triton")]
        assert ops[(op, "triton")]["fwd_bwd_ms"] > 0 and ops[(op, "triton")]["host_ms"] > 0
    assert ops[("linear+cross_entropy", "liger (fused)")]["status"] == "ok"
    assert ops[("linear+cross_entropy", "triton (fused, mambalab)")]["status"] == "ok"
    groups = {g["group"] for g in report["profile"]["groups"]}
    assert {"scan fwd", "scan bwd", "matmuls"} <= groups, groups


def test_time_device_on_cpu_is_the_wall_time():
    """Off CUDA the ops table's device and host times are both one call's wall time."""
    from mambalab.benchmarks.timing import time_device

    dev, host = time_device(lambda: time.sleep(0.002), torch.device("cpu"), 1, 3)
    assert dev == host and 2.0 <= dev < 100.0


def test_host_issue_time_is_one_call_with_the_device_idle():
    from mambalab.benchmarks.timing import host_issue_ms

    calls = []
    ms = host_issue_ms(lambda: (calls.append(1), time.sleep(0.003)), torch.device("cpu"), reps=3)
    assert len(calls) == 3 and 3.0 <= ms < 100.0


def test_host_bound_rows_are_marked_in_both_tables():
    """A row whose steps take the host about as long to issue as the device to run is marked
    host-bound on the console and in the Markdown; one with the device the bound is not."""
    from mambalab.benchmarks.markdown import training_markdown
    from mambalab.benchmarks.report import training_note
    from mambalab.benchmarks.train_bench import is_host_bound

    assert is_host_bound(None, 60.0) is None
    assert is_host_bound(58.0, 61.4) is True       # 8 x 2048 eager on an H200: the host's pace
    assert is_host_bound(60.0, 203.6) is False     # 32 x 2048: the device's
    base = {"status": "ok", "seq_len": 2048, "tokens_per_s": 1.0, "mfu": 0.1,
            "mfu_measured_peak": 0.1, "peak_mem_gib": 11.9}
    host = dict(base, implementation="mambalab[triton]", batch_size=8, step_ms=61.4,
                host_ms=58.0, host_bound=True, best=False)
    device = dict(base, implementation="mambalab[triton]", batch_size=32, step_ms=203.6,
                  host_ms=60.0, host_bound=False, best=True)
    assert training_note(host) == "host-bound" and training_note(device) == "best"
    assert training_note(dict(host, best=True)) == "best, host-bound"
    text = training_markdown({"config": {"peak_tflops": 989.4, "measured_peak_tflops": 790.0},
                              "training": [host, device]})
    lines = text.splitlines()
    assert "| step ms | host ms |" in lines[0] and lines[0].count("|") == lines[1].count("|")
    assert lines[2].endswith("| 61.4 | 58.0 | 11.9 | - | host-bound |")
    assert lines[3].endswith("| 203.6 | 60.0 | 11.9 | - |  |")


def test_graph_rows_on_a_cpu_say_why_they_are_skipped(tmp_path):
    cfg = _compose(TINY + ["bench.implementations=[mambalab]", "bench.cuda_graphs=[false,true]",
                           f"bench.out={tmp_path / 'b.json'}"])
    rows = [(r["implementation"], r["status"], r.get("reason")) for r in instantiate(cfg.bench)["training"]]
    assert rows == [("mambalab[reference]", "ok", None),
                    ("mambalab[reference]+graphs", "skipped", "CUDA graphs need a CUDA device")]
    from hydra.errors import InstantiationException

    with pytest.raises(InstantiationException, match="bench.cuda_graphs=.*a non-empty list of true/false"):
        instantiate(_compose(TINY + ["bench.cuda_graphs=[sometimes]"]).bench)


def test_a_run_cut_off_keeps_what_it_measured(tmp_path, monkeypatch):
    """The report is on disk after every training row, marked partial: a run stopped by a time
    limit or a crash at its second configuration still has its first (and says so)."""
    from mambalab.benchmarks import runner
    from mambalab.benchmarks.markdown import report_markdown

    real = runner.bench_training
    calls = []

    def second_one_dies(impl, batch, *args):
        calls.append(batch)
        if len(calls) == 2:
            raise RuntimeError("the machine went away")
        return real(impl, batch, *args)

    monkeypatch.setattr(runner, "bench_training", second_one_dies)
    out = tmp_path / "bench.json"
    cfg = _compose(TINY + ["bench.implementations=[mambalab]", "bench.batch_sizes=[1,2]",
                           f"bench.out={out}"])
    with pytest.raises(Exception, match="went away"):  # hydra wraps the RuntimeError
        instantiate(cfg.bench)
    report = json.loads(out.read_text())
    assert report["partial"] == "training"
    [row] = report["training"]
    assert row["batch_size"] == 1 and row["status"] == "ok" and row["tokens_per_s"] > 0
    assert row["best"] is True  # marked among the rows measured so far
    assert "**Partial report**: the run stopped during its training part" in report_markdown(report)

    monkeypatch.setattr(runner, "bench_training", real)  # a whole run: no mark left
    instantiate(cfg.bench)
    report = json.loads(out.read_text())
    assert "partial" not in report and len(report["training"]) == 2
