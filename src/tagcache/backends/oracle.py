"""``oracle``: the best any cleancache could do with the same free tag pages over time, knowing
the future: an upper bound for every cleancache row.

During the run it keeps nothing and serves nothing: its hook logs each call the page cache
makes (a store, a lookup, an invalidation) and each change of the free tag pages (claims and
releases), so the page cache and the tags run exactly as under any other backend (the page
cache's decisions never depend on what cleancache serves). After the run,
engine/oracle.py's Belady sweep over the log gives the most page hits any policy could have
had, holding at most the free tag pages at every moment, with exclusive restores (a non-
exclusive frontend keeps copies the page cache also holds, which can only cost room).
Relaxed, so the bound holds but may not be reached: pages count one by one (a real frontend
restores a folio whole or not at all), and placement is free (a claim is assumed to meet free
tag pages first).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tagcache.backends.base import (
    OP_INVALIDATE,
    OP_LOOKUP,
    OP_RELEASE,
    OP_RESERVE,
    OP_STORE,
    BackendSpec,
)
from tagcache.engine.oracle import LOG_CAPACITY, LOG_INVALIDATE, LOG_LOOKUP, LOG_STORE
from tagcache.engine.tagstore import (
    BACKEND0,
    NR_FREE,
    tagstore_release_block,
    tagstore_reserve_block,
)

LOG_N = BACKEND0                    # entries in cc.log

SPEC = BackendSpec(
    name="oracle",
    summary="Belady on next access over the same free tag pages: the bound for every "
            "cleancache",
    label=lambda p: "oracle (Belady bound)",
    offline=True,
    metadata_bytes=0.0,
    stats=("log_entries",),
)


@njit(cache=True)
def _log(cc, op, a, b):
    n = cc.c[LOG_N]
    if 3 * n + 3 > len(cc.log):
        new = np.zeros(2 * len(cc.log) + 3 * 1024, np.int64)
        new[:3 * n] = cc.log[:3 * n]
        cc.log = new
    cc.log[3 * n] = op
    cc.log[3 * n + 1] = a
    cc.log[3 * n + 2] = b
    cc.c[LOG_N] = n + 1


@njit(cache=True)
def hook(cc, op, a, b):
    if op == OP_STORE:
        _log(cc, LOG_STORE, a, 1 << b)
        return 0                    # kept by no one now (counted as skipped)
    if op == OP_LOOKUP:
        _log(cc, LOG_LOOKUP, a, b)
    elif op == OP_INVALIDATE:
        _log(cc, LOG_INVALIDATE, a, b)
    elif op == OP_RESERVE:
        tagstore_reserve_block(cc, a)
        _log(cc, LOG_CAPACITY, cc.c[NR_FREE], 0)
    elif op == OP_RELEASE:
        tagstore_release_block(cc, a)
        _log(cc, LOG_CAPACITY, cc.c[NR_FREE], 0)
    return 0


def oracle_log(cc) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The logged calls as (op, a, b) columns."""
    n = int(cc.c[LOG_N])
    log = np.asarray(cc.log)[:3 * n].reshape(n, 3)
    return log[:, 0].copy(), log[:, 1].copy(), log[:, 2].copy()
