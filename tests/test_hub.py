"""An unreachable hub is found out in seconds, and hub loads then fail at once with the fix."""
from __future__ import annotations

import time

import pytest

from mambalab import hub


@pytest.fixture
def dead_hub(monkeypatch):
    # Nothing listens on port 9 of loopback: the connection is refused at once.
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY",
                "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")
    hub._reachable.cache_clear()
    yield
    hub._reachable.cache_clear()


def test_offline_by_env_and_unreachable_hub_both_mean_local_files_only(dead_hub, monkeypatch):
    assert not hub.offline_by_env()
    assert not hub.hub_reachable(timeout_s=1.0)
    assert hub.local_files_only()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.offline_by_env() and hub.local_files_only()


def test_a_proxy_leaves_the_decision_to_the_client(dead_hub, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert hub.hub_reachable()


def test_tokenizer_from_an_unreachable_hub_fails_at_once_with_the_fix(dead_hub):
    from mambalab.data.tokenizers import HFTokenizer

    start = time.monotonic()
    with pytest.raises(RuntimeError, match="tokenizer.path="):
        HFTokenizer(name="mambalab-tests/no-such-tokenizer")
    assert time.monotonic() - start < 15  # the hub client alone retries for about a minute
