"""Start-up checks between the data and the model."""
from __future__ import annotations


def check_vocab(model_vocab_size: int, data) -> None:
    """Refuse a model whose vocabulary cannot hold every id the data produces.

    `data.vocab_size` is the tokenizer's (text) or the task's (synthetic); a model padded above it
    is fine, one below it would index out of its embedding.
    """
    needed = int(data.vocab_size)
    if int(model_vocab_size) < needed:
        source = getattr(getattr(data, "tokenizer", None), "name", None) or getattr(data, "task", "data")
        raise ValueError(
            f"the model's vocabulary ({model_vocab_size} ids) is smaller than the data's "
            f"({needed} ids, from {source}): set model.vocab_size=auto (or >= {needed}), or use a "
            f"tokenizer that matches the model")
