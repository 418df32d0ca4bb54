"""The chunk states the lanes scan's forward saves for its backward (h at every K-th step): their
dtype and layout, and the watch on fp16's range.

fp32 (selective_scan.CONFIG["lanes_states"] = "float32"): (B, L / K, N, D), each state's values
of a warp's 32 channels one line.

fp16 ("float16", the default): half the bytes, which the forward writes and the backward reads
once per chunk (805 MB a layer at 32 x 2048 in fp32); the state is carried in fp32 and rounded
only where it is saved (2^-12 relative, against bf16 inputs' 2^-9). (B, L / K, D, N) when N fills
16-byte vectors, so that the forward stores a thread's states as 2 vectors, not N scalars;
(B, L / K, N, D) otherwise. With the dB/dC partials in bf16 as well, this trained Mamba-130M
1.6-3.1% faster at 32 x 2048 on an H200 and cut its peak memory from 42.3 to 33.1 GiB
(docs/performance.md, eighth session).

fp16 ends at 65504. A saved state beyond it becomes inf, and that step's gradients are not
finite (the trainer skips such a step). The forward kernel raises a flag on the device when that
happens; it is copied to the host without waiting (``watch``), and the next forward that asks
for the states' dtype (``dtype``) sees it, warns, and saves fp32 states from then on. So a model
whose states grow that large loses one step, not the run, and no step waits for the device.
"""
from __future__ import annotations

import warnings

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16}

_flags: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}  # device: (device, host)
_warned = False  # the fallback's warning, once a process


def layout_dn(dstate: int, dtype: torch.dtype) -> bool:
    """Whether the states are saved (D, N) a chunk: fp16 states whose N fills 16-byte vectors."""
    return dtype == torch.float16 and dstate % 8 == 0


def alloc(batch: int, n_chunks: int, dim: int, dstate: int, dtype: torch.dtype,
          device: torch.device) -> torch.Tensor:
    if dtype not in DTYPES.values():
        raise ValueError(f"the lanes scan saves its states in float32 or float16, not {dtype}")
    shape = ((batch, n_chunks, dim, dstate) if layout_dn(dstate, dtype)
             else (batch, n_chunks, dstate, dim))
    return torch.empty(shape, device=device, dtype=dtype)


def is_dn(states: torch.Tensor, batch: int, n_chunks: int, dim: int, dstate: int) -> bool:
    """The layout of saved ``states`` (alloc's); raises if they were saved for other sizes."""
    dn = layout_dn(dstate, states.dtype)
    want = (batch, n_chunks, dim, dstate) if dn else (batch, n_chunks, dstate, dim)
    if states.dtype not in DTYPES.values() or tuple(states.shape) != want:
        raise ValueError(f"states of shape {tuple(states.shape)} and dtype {states.dtype} were "
                         f"saved for another chunk or size; expected {want}")
    return dn


def overflow_flag(device: torch.device) -> torch.Tensor:
    """The int32 the forward kernel sets to 1 when a state it saves in fp16 exceeds 65504."""
    if device not in _flags:
        dev = torch.zeros(1, dtype=torch.int32, device=device)
        host = (torch.zeros(1, dtype=torch.int32, pin_memory=True) if device.type == "cuda"
                else dev)
        _flags[device] = (dev, host)
    return _flags[device][0]


def watch(device: torch.device) -> None:
    """After a forward launch: copy the flag to the host without waiting for the device."""
    dev, host = _flags[device]
    if host is not dev:
        host.copy_(dev, non_blocking=True)


def dtype(name: str, device: torch.device) -> torch.dtype:
    """The dtype to save states in on ``device`` for CONFIG["lanes_states"] = ``name``: fp32 once
    an fp16 state has overflowed there (warned once)."""
    if name not in DTYPES:
        raise ValueError(f"selective_scan CONFIG['lanes_states'] must be one of "
                         f"{sorted(DTYPES)}, got {name!r}")
    global _warned
    if name == "float16" and device in _flags and int(_flags[device][1][0]) != 0:
        if not _warned:
            warnings.warn("the selective scan's saved states exceeded fp16's range (65504): "
                          "the step that did it had non-finite gradients; states are saved in "
                          "fp32 from now on (set MAMBALAB_SCAN_CONFIG='{\"lanes_states\": "
                          "\"float32\"}' to start that way)", RuntimeWarning, stacklevel=3)
            _warned = True
        return torch.float32
    return DTYPES[name]
