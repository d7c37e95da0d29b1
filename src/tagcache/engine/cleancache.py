"""The cleancache frontend and the tag-storage backend as flat state (compiled engine).

STUB (being written): only the no-backend path exists yet. The page cache (engine/pagecache)
calls exactly these three hooks, as mm/filemap.py calls cleancache/frontend.py:

    cleancache_store_folio(cc, head, order, dirty)     reclaim evicts a folio
    cleancache_restore_folio(cc, head, nr) -> bool     a folio is read in: restored whole?
    cleancache_invalidate_range(cc, first, end)        write, truncate, inode eviction
    cleancache_cached(cc) -> int                       pages stored now (for the averages)

With no backend (``cc.kind == KIND_NONE``) each returns at once and counts nothing.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.experimental import structref

KIND_NONE, KIND_TAGSTORE = 0, 1


@structref.register
class CleancacheStateType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class CleancacheState(structref.StructRefProxy):
    """The frontend's counters and the backend's per-tag-page arrays."""


structref.define_proxy(CleancacheState, CleancacheStateType, ["kind", "c"])


def make_cleancache(kind: str = "idle", layout=None, nr_slots: int = 0,
                    policy: str = "whole") -> CleancacheState:
    """The state for backend ``kind`` ("idle": none)."""
    if kind != "idle":
        raise NotImplementedError("only the no-backend path exists yet")
    return CleancacheState(KIND_NONE, np.zeros(8, np.int64))


@njit(cache=True)
def cleancache_store_folio(cc, head, order, dirty):
    """Reclaim is evicting the folio at ``head``, with its final dirty state."""
    if cc.kind == KIND_NONE:
        return


@njit(cache=True)
def cleancache_restore_folio(cc, head, nr):
    """A folio is being read in: restore it whole or not at all; True if restored."""
    if cc.kind == KIND_NONE:
        return False
    return False


@njit(cache=True)
def cleancache_invalidate_range(cc, first, end):
    """Forget stored copies of slots ``[first, end)``."""
    if cc.kind == KIND_NONE:
        return


@njit(cache=True)
def cleancache_cached(cc):
    """Pages stored now (0 with no backend)."""
    if cc.kind == KIND_NONE:
        return 0
    return 0
