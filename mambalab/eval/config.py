"""The typed schema behind conf/evaluate.yaml: an unknown or mistyped key fails at compose time."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class EvaluateConfig:
    ckpt: str = MISSING               # run dir, checkpoint dir, HF/mamba_ssm folder, or hub id
    which: str = "latest"             # a run directory's checkpoint: latest | best
    split: str = "validation"         # validation | test
    mode: Any = "streaming"           # chunked | strided | streaming, or a list of them
    seq_len: Optional[int] = None     # window (chunked, strided) / chunk (streaming); data.seq_len
    stride: Optional[int] = None      # strided: default seq_len // 2
    batch_size: Optional[int] = None  # sequences (windows or documents) per forward; data.batch_size
    max_documents: Optional[int] = None  # per-document modes: the first N documents only
    max_batches: Optional[int] = None    # chunked mode and tasks: the first N batches only
    eval_lengths: Optional[list[int]] = None  # tasks: lengths to stream; default data.eval_lengths
    chunk_len: Optional[int] = None   # tasks: streaming chunk; default min(length, 16384)
    kernels: str = "auto"             # auto | triton | cuda | reference
    precision: str = "bf16"           # bf16 (autocast on CUDA) | fp32
    device: Optional[str] = None      # default: cuda if available, else cpu
    warmup: bool = True               # CUDA: run each mode once on a few documents, untimed
    out: Optional[str] = None         # folder for metrics.json / samples.jsonl; default: the run's
    samples: int = 0                  # continue the starts of this many documents of the split
    prompts: list[str] = field(default_factory=list)  # ... or these texts
    prompt_tokens: int = 32
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    seed: int = 0
    baseline: Optional[str] = None    # a second model (path or hub id), scored on the same texts
    baseline_which: str = "latest"
    baseline_tokenizer: Any = None    # tokenizer config for a baseline that carries none
    data: Any = None                  # conf/data option; default: the run's
    tokenizer: Any = None             # conf/tokenizer option; default: the run's / the folder's


@dataclass
class ExportConfig:
    ckpt: str = MISSING               # run dir, checkpoint dir or model folder
    out: str = MISSING                # the HF folder to write
    which: str = "latest"             # a run directory's checkpoint: latest | best
    tokenizer: Any = None             # default: the run's tokenizer
    dtype: str = "float32"            # float32 | bfloat16 | float16: the saved weights' dtype
    verify: bool = True               # load the folder back with transformers, compare logits


def register_eval_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="evaluate_schema", node=EvaluateConfig)
    store.store(name="export_schema", node=ExportConfig)
