"""Test helpers: tiny stand-ins with the MambaLM forward contract (whose NLL a test can compute
independently), the real text data module over written files, run directories, a tiny HF model."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from mambalab.data import ByteTokenizer, TextDataModule
from mambalab.models import build_mamba_lm, save_model


@dataclass
class Out:
    loss: torch.Tensor | None
    logits: torch.Tensor | None


def _loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str) -> Out:
    nll = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=-100,
                          reduction="none")  # (B, L), 0 where -100
    if reduction == "none":
        return Out(nll, None)
    if reduction == "sum":
        return Out(nll.sum(), None)
    return Out(nll.sum() / (targets != -100).sum(), None)


class BigramLM(nn.Module):
    """logits[t] = table[input_ids[t]]: the NLL of a token depends only on the token before it."""

    def __init__(self, vocab_size: int, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter(torch.randn(vocab_size, vocab_size, generator=gen) * 2)

    def allocate_state(self, batch_size: int, device=None, dtype=None) -> dict:
        return {}

    def forward(self, input_ids, targets=None, doc_starts=None, state=None, reduction="mean"):
        logits = self.table[input_ids]  # (B, L, V)
        return _loss(logits, targets, reduction) if targets is not None else Out(None, logits)

    def token_nll(self, prev: int, token: int) -> float:
        row = self.table[prev].detach().double()
        return float(torch.logsumexp(row, 0) - row[token])


class RecurrentState:
    def __init__(self, h: torch.Tensor) -> None:
        self.h = h  # (B, D)


class ToyRecurrentLM(nn.Module):
    """h_t = decay * h_{t-1} + emb(x_t); logits = head(tanh(h_t)): every token sees all before it."""

    def __init__(self, vocab_size: int, dim: int = 16, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(vocab_size, dim)
        self.decay = nn.Parameter(torch.rand(dim) * 0.5 + 0.45)
        self.head = nn.Linear(dim, vocab_size)

    def allocate_state(self, batch_size: int, device=None, dtype=None) -> RecurrentState:
        return RecurrentState(torch.zeros(batch_size, self.emb.embedding_dim, device=device))

    def forward(self, input_ids, targets=None, doc_starts=None, state=None, reduction="mean"):
        x = self.emb(input_ids)  # (B, L, D)
        h = state.h if state is not None else x.new_zeros(x.shape[0], x.shape[2])
        hs = []
        for t in range(x.shape[1]):
            if doc_starts is not None:
                h = h * (~doc_starts[:, t]).unsqueeze(-1).to(h.dtype)
            h = self.decay * h + x[:, t]
            hs.append(h)
        if state is not None:
            state.h.copy_(h)
        logits = self.head(torch.tanh(torch.stack(hs, 1)))  # (B, L, V)
        return _loss(logits, targets, reduction) if targets is not None else Out(None, logits)


def text_data(tmp_path: Path, texts: list[str], seq_len: int = 8, batch_size: int = 2,
              **kwargs) -> TextDataModule:
    """The real text data module over a file the test writes: one document per blank-line block,
    byte tokenizer (ids 0..255, end-of-text 256), cache under tmp_path; prepared."""
    path = tmp_path / "docs.txt"
    path.write_text("\n\n".join(texts) + "\n")
    data = TextDataModule(tokenizer=ByteTokenizer(), train_files=str(path),
                          validation_files=str(path), document_split="blank_line",
                          seq_len=seq_len, batch_size=batch_size, cache_dir=str(tmp_path / "cache"),
                          progress=False, pin_memory=False, **kwargs)
    data.prepare()
    return data


def make_run(root: Path, data: dict, tokenizer: dict | None, vocab_size: int,
             complete: bool = True) -> Path:
    """A run directory as the trainer leaves it: config.yaml, one step folder, the latest pointer."""
    config = {"data": data}
    if tokenizer is not None:
        config["tokenizer"] = tokenizer
    root.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(config), root / "config.yaml")
    step = root / "checkpoints" / "step_00000002"
    save_model(build_mamba_lm(d_model=16, n_layer=2, vocab_size=vocab_size, d_state=4,
                              kernels="reference"), step)
    if complete:
        (step / "COMPLETE").write_text("{}")
    (root / "checkpoints" / "latest").write_text("step_00000002\n")
    return root


def save_tiny_hf_model(folder: Path, texts: list[str]) -> tuple[object, object]:
    """An HF MambaForCausalLM with its own byte-level BPE tokenizer (trained on ``texts``)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import MambaConfig, MambaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    model = MambaForCausalLM(MambaConfig(vocab_size=len(tokenizer), hidden_size=16,
                                         num_hidden_layers=2, state_size=4, expand=2,
                                         eos_token_id=tokenizer.eos_token_id))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model.eval(), tokenizer
