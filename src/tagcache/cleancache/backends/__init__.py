"""Cleancache backends, one per module, found by name through :data:`BACKENDS`."""

from __future__ import annotations

from tagcache.cleancache.backends.tagstore import TagStorageBackend

BACKENDS = {"cleancache": TagStorageBackend}

__all__ = ["BACKENDS", "TagStorageBackend"]
