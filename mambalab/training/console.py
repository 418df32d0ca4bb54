"""The resolved config, printed as a rich tree at start-up (rank 0)."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree

# Printed first, in this order; any other top-level key follows.
ORDER = ("name", "seed", "trainer", "model", "data", "tokenizer", "optimizer", "scheduler", "logger")


def print_config_tree(cfg: DictConfig) -> None:
    tree = Tree("[bold]config", guide_style="dim")
    keys = [k for k in ORDER if k in cfg] + [k for k in cfg if k not in ORDER]
    for key in keys:
        node = cfg[key] if not OmegaConf.is_missing(cfg, key) else "???"
        branch = tree.add(f"[bold cyan]{key}")
        if isinstance(node, DictConfig):
            try:
                text = OmegaConf.to_yaml(node, resolve=True)
            except Exception:  # an unresolvable interpolation: show it as written
                text = OmegaConf.to_yaml(node)
            branch.add(Syntax(text.rstrip(), "yaml", theme="ansi_dark", background_color="default"))
        else:
            branch.add(str(node))
    Console(soft_wrap=True).print(tree)
