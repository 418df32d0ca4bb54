"""Data the tests write: WikiText-formatted lines and small text files (imported by the tests)."""
from __future__ import annotations

from pathlib import Path

WIKITEXT_LINES = [
    " \n",
    " = Alpha Article = \n",
    " \n",
    " Alpha is the first letter . It has a body @-@ text . \n",
    " \n",
    " = = History = = \n",
    " \n",
    " The history of alpha . \n",
    " \n",
    " = = = Early = = = \n",
    " Early times . \n",
    " \n",
    " = Beta = \n",
    " \n",
    " Beta follows alpha . \n",
    " \n",
]


def write_docs(folder: Path, n: int, prefix: str = "doc") -> list[str]:
    """n small text files, one document each; returns their texts in file (sorted) order."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = []
    for i in range(n):
        text = f"{prefix} {i}: " + " ".join(f"w{i}_{j}" for j in range(5 + i % 7)) + "\n"
        (folder / f"{prefix}_{i:03d}.txt").write_text(text)
        texts.append(text)
    return texts
