"""Every trace reader test gets a private trace cache directory."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    cache = tmp_path / "trace-cache"
    monkeypatch.setenv("TAGCACHE_CACHE_DIR", str(cache))
    return cache
