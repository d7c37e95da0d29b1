"""``cma``: the 2023-2024 RFC design ("arm64: Add support for dynamic tag storage reuse",
v1-v3): free tag pages are lent to the page allocator as CMA memory for movable data, and
reserving one for tags migrates whatever it holds.

Lent tag pages widen the memory the page cache may use (engine/machine.py adds them to its
limit); the page cache's pages beyond what DRAM alone would hold live on them
(:func:`cleancache_lend` keeps that many in state MOVABLE, the rest FREE; simplified: which
lent pages hold data is the free stack's order, not the allocator's). A claim takes each tag
page of the block: a FREE one simply changes hands; a MOVABLE one has its data migrated
(``page_migrate`` of the cost table, and the reservation sleeps), and since memory is full the
page cache shrinks by one page through its limit. Two things the review of the RFC found:

- atomic context: set_ptes_at() under the page-table lock and copy_highpage() cannot migrate.
  The RFC then maps the page without tag access and reserves at the first access fault, with
  the tags saved and restored meanwhile: counted as a *fallback*, the tagged page waiting a
  fault (``tag_fault``) plus the migration. Reservations the RFC makes at page allocation
  (set_ptes_at() of a fresh PROT_MTE page, reserved in the allocator's post_alloc_hook()) may
  sleep.
- pinned pages (long-term GUP, vmsplice, O_DIRECT) cannot be migrated: a share ``pin_rate``
  of the data on lent pages is pinned at any time, for ``pin_ms`` at most; a claim meeting a
  pinned page *fails* and the tagged page waits (uniform over the pin's remaining time) before
  the migration succeeds. Simplified: pins are drawn when a claim meets the page (a seeded
  generator), not tracked page by page over time.

Every wait is recorded (``cc.waits``, ns). A struct page per lent tag page is needed (the
memmap: 64 bytes), as for any memory the page allocator manages.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tagcache.backends.base import OP_LEND, OP_RELEASE, OP_RESERVE, BackendSpec, Param
from tagcache.engine.tagstore import (
    FALLBACKS,
    MIGRATED,
    NR_FREE,
    NR_MOVABLE,
    NR_WAITS,
    RNG,
    SCRATCH,
    TP_FREE,
    TP_MOVABLE,
    TP_TAGS,
    W_COPIED,
    W_EXTRA_NS,
    W_FAILED,
    W_FALLBACK,
    W_SLEPT,
    _pop_free,
    clear_work,
    tagstore_release_block,
    tp_set_state,
)

P_PIN_RATE, P_PIN_NS, P_MIGRATE_NS, P_FAULT_NS = range(4)


def _setup(values: dict, layout, costs, seed: int) -> dict:
    return {"p": [values["pin_rate"], values["pin_ms"] * 1e6, costs.page_migrate,
                  costs.tag_fault],
            "c": {RNG: seed * 0x9E3779B9 + 1}}


SPEC = BackendSpec(
    name="cma",
    summary="free tag pages lent to the page allocator (CMA); reserving migrates their data",
    params=(
        Param("pin_rate", 0.01, "share of the data on lent tag pages that is pinned (long-"
              "term GUP, vmsplice, O_DIRECT) when a claim meets it", lo=0.0, hi=1.0,
              compare=(0.01, 0.1)),
        Param("pin_ms", 10.0, "longest a pin lasts, ms (a claim meeting a pin waits for a "
              "uniform share of it)", lo=0.0, hi=1e6),
    ),
    label=lambda p: f"cma (RFC 2024, {100 * p['pin_rate']:g}% pinned)",
    may_sleep=True,
    can_fail=True,
    holds_cache=False,
    lends_memory=True,
    metadata_bytes=64.0,
    setup=_setup,
)


@njit(cache=True)
def _random(cc):
    """The next of a seeded splitmix64 sequence, in [0, 1)."""
    x = np.uint64(cc.c[RNG]) + np.uint64(0x9E3779B97F4A7C15)
    cc.c[RNG] = np.int64(x)
    z = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def record_wait(cc, ns):
    """A tagged page waited ``ns`` for its tag storage (the buffer doubles when full)."""
    n = cc.c[NR_WAITS]
    if n == len(cc.waits):
        w = np.zeros(2 * len(cc.waits) + 64, np.float64)
        w[:n] = cc.waits[:n]
        cc.waits = w
    cc.waits[n] = ns
    cc.c[NR_WAITS] = n + 1


@njit(cache=True)
def _reserve(cc, block, atomic):
    c = cc.c
    p = cc.p
    clear_work(cc)
    p0 = cc.block_first_tag_page[block]
    for tp in range(p0, p0 + cc.block_tag_pages[block]):
        state = cc.tp_state[tp]
        if state == TP_MOVABLE:
            wait = 0.0
            if _random(cc) < p[P_PIN_RATE]:          # pinned: the migration fails for now
                c[W_FAILED] += 1
                wait += _random(cc) * p[P_PIN_NS]
            if atomic:                               # cannot sleep: fault on first access
                c[W_FALLBACK] += 1
                c[FALLBACKS] += 1
                wait += p[P_FAULT_NS] + p[P_MIGRATE_NS]
            else:
                c[W_SLEPT] += 1
                c[W_EXTRA_NS] += np.int64(p[P_MIGRATE_NS])
            if wait > 0.0:
                record_wait(cc, wait)
            c[W_COPIED] += 1
            c[MIGRATED] += 1
            tp_set_state(cc, tp, TP_TAGS)
        elif state == TP_FREE:
            tp_set_state(cc, tp, TP_TAGS)


@njit(cache=True)
def _lend(cc, pages):
    """Keep ``pages`` lent tag pages holding data (as many as there are lent pages)."""
    c = cc.c
    while c[NR_MOVABLE] < pages and c[NR_FREE] > 0:
        tp = _pop_free(cc)
        if tp < 0:
            break
        tp_set_state(cc, tp, TP_MOVABLE)
    t = len(cc.tp_state)
    scanned = 0
    while c[NR_MOVABLE] > pages and scanned < t:
        tp = c[SCRATCH] % t
        c[SCRATCH] = tp + 1
        scanned += 1
        if cc.tp_state[tp] == TP_MOVABLE:
            tp_set_state(cc, tp, TP_FREE)


@njit(cache=True)
def hook(cc, op, a, b):
    if op == OP_RESERVE:
        _reserve(cc, a, b)
    elif op == OP_RELEASE:
        tagstore_release_block(cc, a)
    elif op == OP_LEND:
        _lend(cc, a)
    return 0
