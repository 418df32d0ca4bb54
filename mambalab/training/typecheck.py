"""Check every `_target_` node of a composed config against its target's signature, before any work.

An unknown key, a value of the wrong type or a missing (`???`) value is reported with the key's
full name (`model.d_modle`) and what the target expects, all problems at once.
"""
from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Union

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

_HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the fix."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _matches(value: Any, tp: Any) -> bool:
    """Whether a plain (container-converted) config value fits annotation `tp`; lenient on the
    unknowable (Any, unresolved string annotations, objects)."""
    if tp is inspect.Parameter.empty or tp is Any or isinstance(tp, str):
        return True
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(tp))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (str, bool):
        return isinstance(value, tp)
    if origin in (list, tuple, Iterable, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return len(args) != 1 or all(_matches(v, args[0]) for v in value)
    if origin in (dict, Mapping) or tp is dict:
        return isinstance(value, dict)
    if isinstance(tp, type):
        # A class-typed argument given in YAML (a path, a dict): only the obviously wrong is flagged.
        return not isinstance(value, (int, float, bool)) or issubclass(tp, (int, float, bool))
    return True


def _signature(target: Any) -> tuple[inspect.Signature, dict[str, Any]]:
    sig = inspect.signature(target)
    try:
        hints = typing.get_type_hints(target.__init__ if isinstance(target, type) else target)
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        hints = {}
    return sig, hints


def _check_node(node: DictConfig, path: str, provided: set[str], errors: list[str]) -> None:
    target_path = node.get("_target_")
    try:
        target = get_object(str(target_path))
    except Exception as exc:
        errors.append(f"{path}._target_={target_path!r}: cannot be imported ({exc})")
        return
    sig, hints = _signature(target)
    params = {n: p for n, p in sig.parameters.items() if p.kind not in (p.VAR_POSITIONAL,)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    partial = bool(node.get("_partial_", False))
    expected = ", ".join(n for n, p in params.items() if p.kind is not p.VAR_KEYWORD)
    for key in node.keys():
        key = str(key)
        if key in _HYDRA_KEYS:
            continue
        full = f"{path}.{key}" if path else key
        if key not in params and not takes_any:
            errors.append(f"{full}: unknown key for {target_path} (it takes: {expected})")
            continue
        if OmegaConf.is_missing(node, key):
            if key not in provided:
                errors.append(f"{full}: required value missing (???); set it, e.g. {full}=...")
            continue
        value = node[key]
        if key in provided and value == "auto":
            continue  # filled in by the entry point at run time (model.vocab_size: auto)
        if isinstance(value, (DictConfig, ListConfig)) and isinstance(value, DictConfig) and "_target_" in value:
            continue  # a nested object: checked on its own
        plain = OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value
        tp = hints.get(key, params[key].annotation if key in params else Any)
        if not _matches(plain, tp):
            errors.append(
                f"{full}={plain!r}: expected {_type_name(tp)} for {target_path}({key}=...)"
            )
    if not partial:
        for name, p in params.items():
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                if name not in node and name not in provided:
                    full = f"{path}.{name}" if path else name
                    errors.append(f"{full}: required by {target_path} but not set")


def validate_targets(cfg: DictConfig, provided: Mapping[str, Iterable[str]] | None = None) -> None:
    """Raise ConfigError listing every problem of every `_target_` node in `cfg`.

    provided: node path -> argument names the caller passes at instantiation (e.g.
    {"data": ["tokenizer"], "model": ["vocab_size"]}); they may be absent, `???` or `auto`.
    """
    provided_sets = {k: set(v) for k, v in (provided or {}).items()}
    errors: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, DictConfig):
            if "_target_" in node:
                _check_node(node, path, provided_sets.get(path, set()), errors)
            for key in node.keys():
                if path == "" and key == "hydra":
                    continue
                if not OmegaConf.is_missing(node, key):
                    walk(node._get_node(key), f"{path}.{key}" if path else str(key))
        elif isinstance(node, ListConfig):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")

    walk(cfg, "")
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
