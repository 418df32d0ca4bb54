"""Kernel resolution: auto picks what runs, an explicit choice that cannot run says why and how."""
from __future__ import annotations

import pytest
import torch

from mambalab.ops import dispatch
from mambalab.ops.dispatch import AUTO_PREFERENCE, OPS, resolve_kernels, unavailable_reason


def test_auto_on_cpu_is_reference_for_every_op():
    assert resolve_kernels("auto", "cpu") == {op: "reference" for op in OPS}
    assert resolve_kernels("reference", "cpu") == {op: "reference" for op in OPS}
    assert set(AUTO_PREFERENCE) == set(OPS)
    assert all(set(order) == {"triton", "cuda", "reference"} and order[-1] == "reference"
               for order in AUTO_PREFERENCE.values())


def test_cuda_on_cpu_fails_with_reason_and_fix():
    with pytest.raises(ValueError, match=r"(?s)kernels=cuda cannot run on cpu.*CUDA devices.*Fix"):
        resolve_kernels("cuda", "cpu")


def test_unknown_choice_and_unknown_op_are_errors():
    with pytest.raises(ValueError, match="kernels='fast'"):
        resolve_kernels("fast", "cpu")
    with pytest.raises(ValueError, match="unknown op"):
        unavailable_reason("attention", "reference", "cpu")


def test_missing_mamba_ssm_names_the_install_command(monkeypatch):
    monkeypatch.setattr(dispatch, "_import_error", lambda m, a: f"{m}.{a} does not import")
    reason = dispatch._cuda_reason("selective_scan", torch.device("cuda", 0))
    assert "mamba_ssm" in reason and dispatch.INSTALL_KERNELS in reason


def test_triton_reason_when_a_kernel_module_is_missing(monkeypatch):
    import mambalab.ops.triton as triton_ops

    monkeypatch.setattr(triton_ops, "unavailable_reason", lambda device=None: None)
    monkeypatch.setitem(triton_ops._EXPORTS, "selective_scan_triton", "mambalab.ops.triton.nope")
    reason = dispatch._triton_reason("selective_scan", torch.device("cpu"))
    assert "selective_scan_triton is unavailable" in reason and "ModuleNotFoundError" in reason


def _auto_with(monkeypatch, runs: set[tuple[str, str]]) -> dict[str, str]:
    monkeypatch.setattr(dispatch, "unavailable_reason",
                        lambda op, impl, device: None if impl == "reference" or (op, impl) in runs
                        else "no")
    dispatch._resolve_cached.cache_clear()
    try:
        return dict(dispatch._resolve_cached("auto", torch.device("cuda", 0)))
    finally:
        dispatch._resolve_cached.cache_clear()


def test_auto_walks_the_preference_list_per_op(monkeypatch):
    """On CUDA, each op takes the first implementation of its AUTO_PREFERENCE that runs."""
    got = _auto_with(monkeypatch, {("selective_scan", "triton"), ("rms_norm", "cuda"),
                                   ("mamba_inner", "cuda")})
    assert got == {"selective_scan": "triton", "causal_conv1d": "reference",
                   "rms_norm": "cuda", "mamba_inner": "cuda"}


def test_auto_takes_the_measured_fastest_when_everything_runs(monkeypatch):
    """With mamba-ssm, causal-conv1d and Triton all present: mamba_ssm's scan, conv and mixer,
    mambalab's Triton RMSNorm (the faster of each pair on an H100, docs/performance.md)."""
    everything = {(op, impl) for op in OPS for impl in ("triton", "cuda")}
    assert _auto_with(monkeypatch, everything) == {
        "selective_scan": "cuda", "causal_conv1d": "cuda", "rms_norm": "triton",
        "mamba_inner": "cuda"}
    # without the CUDA packages, Triton everywhere
    triton_only = {(op, "triton") for op in OPS}
    assert _auto_with(monkeypatch, triton_only) == {op: "triton" for op in OPS}


def test_auto_mixer_takes_triton_for_many_rows(monkeypatch):
    """auto keeps mamba_ssm's mixer for small batches and takes the Triton one from
    AUTO_TRITON_MIXER_MIN_ROWS scan rows (batch x d_inner), where the lanes scan is faster."""
    monkeypatch.setattr(dispatch, "unavailable_reason", lambda op, impl, device: None)
    kernels = {"selective_scan": "cuda", "causal_conv1d": "cuda", "rms_norm": "triton",
               "mamba_inner": "cuda"}
    rows = dispatch.AUTO_TRITON_MIXER_MIN_ROWS
    assert dispatch.auto_mixer(kernels, rows // 1536 - 1, 1536, "cuda") == kernels  # 7 x 1536
    big = dispatch.auto_mixer(kernels, rows // 1536, 1536, "cuda")           # 8 x 1536
    assert big == dict(kernels, mamba_inner="triton") and kernels["mamba_inner"] == "cuda"
    # no Triton where it would run: mamba_ssm's mixer stays
    monkeypatch.setattr(dispatch, "unavailable_reason",
                        lambda op, impl, device: "no triton" if impl == "triton" else None)
    assert dispatch.auto_mixer(kernels, 64, 1536, "cuda") == kernels
    # a mixer already on Triton or the reference is left alone
    ref = dict(kernels, mamba_inner="reference")
    assert dispatch.auto_mixer(ref, 64, 1536, "cuda") == ref
