"""Is the Hugging Face hub there? Asked once, in seconds, so that an offline machine fails at once.

The hub client retries a dead network for half a minute or more per file before it looks in its
local cache; datasets, tokenizers and model downloads all ask here first and, when the hub cannot
be reached, read the local cache only (which fails at once with our message when it is empty).
"""
from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

_TRUE = {"1", "true", "yes", "on"}


def offline_by_env() -> bool:
    """The user switched the hub off (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE, HF_DATASETS_OFFLINE)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"))


@functools.cache
def _reachable(host: str, port: int, timeout_s: float) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """A TCP connection to the hub endpoint within a few seconds (remembered for the process).
    Behind a proxy a direct connection says nothing, so the client is left to try."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return _reachable(endpoint.hostname or "huggingface.co", endpoint.port or 443, timeout_s)


def local_files_only() -> bool:
    """Read only the local cache: offline by choice, or because the hub cannot be reached."""
    return offline_by_env() or not hub_reachable()


def short_hub_timeouts() -> None:
    """huggingface_hub reads its timeouts at import; lower them so a dead network fails in seconds."""
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "20")
    try:
        from huggingface_hub import constants

        constants.HF_HUB_ETAG_TIMEOUT = min(int(constants.HF_HUB_ETAG_TIMEOUT), 10)
        constants.HF_HUB_DOWNLOAD_TIMEOUT = min(int(constants.HF_HUB_DOWNLOAD_TIMEOUT), 20)
    except Exception:  # an older/newer hub library without these knobs: keep its defaults
        pass
