"""Tag storage reservation and the arm64 MTE hooks (arch/arm64/kernel/mte.c), compiled.

A data page's tags live in one tag block; the block
is reference counted by the tagged data pages it serves::

    refs[block]:  0 --reserve_tag_storage()--> n > 0 --free_tag_storage()--> 0
                     tagstore_reserve_block()              tagstore_release_block()
                     + cache maintenance                   + cache maintenance

The hooks set_ptes_at() (a PROT_MTE page is mapped), copy_highpage() (tags copied on CoW or
migration) and arch_swap_restore() (tags restored on swap-in) reserve; freeing a tagged page
releases (:func:`free_tag_storage`). With the tag-storage backend a claim only drops clean
copies: it never fails and never sleeps. With no backend tag storage is a static carve-out:
reservations only count.

Each reserve_tag_storage() call is one folio, charged from the cost table (costs.CostTable, as
floats in ``costs`` indexed by COST_*): a refcount lookup per tag block it touches; for each
block it claims, every tag page whose state changes, cache maintenance over every tag page of
the block, every stored page dropped (the backend's cached pages before less after) and every
page copied. Claims go in ascending block order, so a call's drops do not depend on the
order of its pages. Per call, the modelled latency, whether it
claimed a block and the pages it dropped go to three buffers that double when full (``lat``,
``claimed``, ``dropped``; ``c[NR_CALLS]`` used).

Counters (``c``, int64): RESERVATIONS, RESERVATION_FAILURES, BLOCKS_CLAIMED, CMO_PAGES,
UNBALANCED_RELEASES (frees of tagged pages whose block held no reservation),
RESERVED_PAGES (tag pages in reserved blocks, now), RESERVED_PEAK; the latest claim's
ReserveWork stays in the cleancache state's ``c[W_*]`` (engine/tagstore.py) for the checker.
Observation sites (the checker's reserve_begin(block), reserve_end(block, work)) are marked
``# observer:``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.experimental import structref

from tagcache.costs import CostTable
from tagcache.engine import checker
from tagcache.engine.cleancache import (
    CLEANCACHE_STATE,
    cleancache_account_reserve,
    cleancache_release_block,
    cleancache_reserve_block,
)
from tagcache.engine.flat import state_class
from tagcache.engine.rc import ERR_UNTAGGABLE, OK
from tagcache.engine.tagstore import (
    NR_CACHED,
    TP_CACHE,
    TP_TAGS,
    W_COPIED,
    W_EXTRA_NS,
    W_FAILED,
    W_SLEPT,
)

RESERVATIONS, RESERVATION_FAILURES, BLOCKS_CLAIMED, CMO_PAGES = range(4)
UNBALANCED_RELEASES, RESERVED_PAGES, RESERVED_PEAK = range(4, 7)
NR_CALLS, EPOCH, BAD_PFN, ATOMIC, CLAIMS_SLEPT = range(7, 12)
NR_COUNTERS = 12
STAT_NAMES = ("reservations", "reservation_failures", "blocks_claimed", "cmo_pages",
              "unbalanced_releases", "reserved_pages", "reserved_peak")
"""The tag storage's counters, in the order of the constants above."""

COST_KEYS = tuple(CostTable.keys())
COST_PAGE_COPY = COST_KEYS.index("page_copy")
COST_TAG_LOOKUP = COST_KEYS.index("tag_lookup")
COST_TAG_PAGE_CLAIM = COST_KEYS.index("tag_page_claim")
COST_CMO_PAGE = COST_KEYS.index("cmo_page")
COST_CLEANCACHE_DROP = COST_KEYS.index("cleancache_drop")

_i32, _i64 = types.int32[::1], types.int64[::1]
FIELDS = (
    ("cc", CLEANCACHE_STATE),           # the cleancache (frontend + backend) it claims from
    ("refs", _i32),                     # per tag block: tagged data pages it serves
    ("block_map", _i32),                # the layout's: tag block (-1: untaggable) per
    ("block_shift", types.int64),       # 1 << block_shift PFNs of the span
    ("nr_pfns", types.int64),
    ("pfn_base", types.int64),
    ("block_tag_pages", _i32),          # the layout's, per tag block
    ("costs", types.float64[::1]),      # CostTable in COST_KEYS order
    ("c", _i64),                        # counters above
    ("lat", types.float64[::1]),        # per call: modelled ns        (first c[NR_CALLS])
    ("claimed", types.boolean[::1]),    # per call: claimed a block
    ("dropped", _i32),                  # per call: stored pages dropped
    ("blk_mark", _i64),                 # per tag block: scratch epoch stamp
    ("blk_pos", _i64),                  # per tag block: scratch first position in a call
    ("blk_list", _i64),                 # scratch list of tag blocks
)


@structref.register
class TagStorageStateType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


TAG_STORAGE_STATE = TagStorageStateType(list(FIELDS))


@njit(cache=True)
def _new(cc, refs, block_map, block_shift, nr_pfns, pfn_base, block_tag_pages, costs, c, lat,
         claimed, dropped, blk_mark, blk_pos, blk_list):
    ts = structref.new(TAG_STORAGE_STATE)
    ts.cc = cc
    ts.refs = refs
    ts.block_map = block_map
    ts.block_shift = block_shift
    ts.nr_pfns = nr_pfns
    ts.pfn_base = pfn_base
    ts.block_tag_pages = block_tag_pages
    ts.costs = costs
    ts.c = c
    ts.lat = lat
    ts.claimed = claimed
    ts.dropped = dropped
    ts.blk_mark = blk_mark
    ts.blk_pos = blk_pos
    ts.blk_list = blk_list
    return ts


@njit(cache=True)
def _unpack(ts):
    return (ts.cc, ts.refs, ts.block_map, ts.block_shift, ts.nr_pfns, ts.pfn_base,
            ts.block_tag_pages, ts.costs, ts.c, ts.lat, ts.claimed, ts.dropped, ts.blk_mark,
            ts.blk_pos, ts.blk_list)


TagStorageState = state_class(
    TagStorageStateType, [f for f, _ in FIELDS], _new, _unpack, "TagStorageState", __name__,
    "Reference-counted tag blocks, the reservation counters and the per-call buffers.")


def make_tag_storage(layout, cc, costs: CostTable | None = None,
                     calls: int = 1024) -> TagStorageState:
    """Tag storage with nothing reserved, over the cleancache state ``cc``
    (engine/cleancache.py); room for ``calls`` calls before the buffers grow. The refcount
    array is the checker's (``cc.ck.refs``) when the checker is on, so that it reads the
    reservations it holds against, never a copy."""
    costs = costs or CostTable()
    nb = layout.nr_tag_blocks
    calls = max(1, int(calls))
    refs = cc.ck.refs if len(cc.ck.refs) == nb else np.zeros(nb, np.int32)
    return TagStorageState(
        cc, refs, np.ascontiguousarray(layout.block_map, np.int32), int(layout.block_shift),
        int(layout.nr_pfns),
        int(layout.pfn_base), np.ascontiguousarray(layout.block_tag_pages, np.int32),
        np.array([float(getattr(costs, k)) for k in COST_KEYS], np.float64),
        np.zeros(NR_COUNTERS, np.int64), np.zeros(calls, np.float64), np.zeros(calls, np.bool_),
        np.zeros(calls, np.int32), np.zeros(nb, np.int64), np.zeros(nb, np.int64),
        np.zeros(nb, np.int64))


@njit(cache=True)
def _grow_calls(ts, need):
    """Room for ``need`` calls in the per-call buffers (capacity doubles)."""
    cap = len(ts.lat)
    if need <= cap:
        return
    new = max(2 * cap, need)
    n = ts.c[NR_CALLS]
    lat = np.zeros(new, np.float64)
    lat[:n] = ts.lat[:n]
    claimed = np.zeros(new, np.bool_)
    claimed[:n] = ts.claimed[:n]
    dropped = np.zeros(new, np.int32)
    dropped[:n] = ts.dropped[:n]
    ts.lat = lat
    ts.claimed = claimed
    ts.dropped = dropped


@njit(cache=True)
def _sort_prefix(a, n):
    """Sort ``a[:n]`` in place (insertion sort when short: most calls claim a block or two)."""
    if n > 16:
        a[:n].sort()
        return
    for i in range(1, n):
        x = a[i]
        j = i - 1
        while j >= 0 and a[j] > x:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = x


@njit(cache=True)
def _claim(ts, block, atomic):
    """The backend gives ``block`` up for tags (``atomic``: the caller cannot sleep): (pages
    dropped, tag pages whose state changed, pages copied, ns the backend's own work took),
    measured around cleancache_reserve_block()."""
    cc = ts.cc
    p0 = cc.block_first_tag_page[block]
    p1 = p0 + cc.block_tag_pages[block]
    changed = 0
    on_block = 0
    for tp in range(p0, p1):
        s = cc.tp_state[tp]
        changed += s != TP_TAGS          # every page of the block ends in TAGS
        on_block += s == TP_CACHE
    before = cc.c[NR_CACHED]
    observed = cc.checking and cc.tp_tags        # the checker maps units to tag pages
    if observed:
        checker.reserve_begin(cc.ck, cc.tp_state, cc.slot_tp, before, block)
    cleancache_reserve_block(cc, block, atomic)
    if observed:
        checker.reserve_end(cc.ck, cc.tp_state, cc.c[NR_CACHED], block, cc.c[W_FAILED],
                            cc.c[W_SLEPT], cc.c[W_COPIED], cc.may_sleep, cc.can_fail)
    dropped = before - cc.c[NR_CACHED]
    cleancache_account_reserve(cc, dropped, max(0, dropped - on_block))
    ts.c[RESERVATION_FAILURES] += cc.c[W_FAILED]
    ts.c[CLAIMS_SLEPT] += cc.c[W_SLEPT] > 0
    return dropped, changed, cc.c[W_COPIED], cc.c[W_EXTRA_NS]


@njit(cache=True)
def _untaggable(ts, pfns):
    """Whether a PFN of ``pfns`` has no tag block (``c[BAD_PFN]`` names the first)."""
    base = ts.pfn_base
    for p in pfns:
        i = p - base
        if i < 0 or i >= ts.nr_pfns or ts.block_map[i >> ts.block_shift] < 0:
            ts.c[BAD_PFN] = p
            return True
    return False


@njit(cache=True)
def reserve_tag_storage(ts, pfns, order):
    """Reserve the tag blocks of ``pfns``: one call per folio of ``1 << order`` pages.
    ERR_UNTAGGABLE (nothing done, ``c[BAD_PFN]`` the PFN) if a PFN has no tag block."""
    n = len(pfns)
    if n == 0:
        return OK
    if _untaggable(ts, pfns):
        return ERR_UNTAGGABLE
    c = ts.c
    base = ts.pfn_base
    per_call = 1 << order
    ncalls = (n + per_call - 1) // per_call
    first = c[NR_CALLS]
    _grow_calls(ts, first + ncalls)
    lat, claimed, dropped, mark = ts.lat, ts.claimed, ts.dropped, ts.blk_mark
    costs = ts.costs
    for k in range(ncalls):
        lookups = 1
        if per_call > 1:
            c[EPOCH] += 1
            lookups = 0
            for j in range(k * per_call, min(n, (k + 1) * per_call)):
                b = ts.block_map[(pfns[j] - base) >> ts.block_shift]
                if mark[b] != c[EPOCH]:
                    mark[b] = c[EPOCH]
                    lookups += 1
        lat[first + k] = lookups * costs[COST_TAG_LOOKUP]
        claimed[first + k] = False
        dropped[first + k] = 0
    # The blocks with no reference yet, each at its first position, in ascending order.
    c[EPOCH] += 1
    nnew = 0
    for j in range(n):
        b = ts.block_map[(pfns[j] - base) >> ts.block_shift]
        if mark[b] != c[EPOCH]:
            mark[b] = c[EPOCH]
            ts.blk_pos[b] = j
            if ts.refs[b] == 0:
                ts.blk_list[nnew] = b
                nnew += 1
    _sort_prefix(ts.blk_list, nnew)
    backend = ts.cc.claims != 0
    for m in range(nnew):
        b = ts.blk_list[m]
        call = first + ts.blk_pos[b] // per_call
        claimed[call] = True
        nr_tp = ts.block_tag_pages[b]
        if backend:
            d, changed, copied, extra = _claim(ts, b, c[ATOMIC])
            dropped[call] += d
            lat[call] += (changed * costs[COST_TAG_PAGE_CLAIM] + nr_tp * costs[COST_CMO_PAGE]
                          + d * costs[COST_CLEANCACHE_DROP] + copied * costs[COST_PAGE_COPY]
                          + extra)
            c[CMO_PAGES] += nr_tp
        c[BLOCKS_CLAIMED] += 1
        c[RESERVED_PAGES] += nr_tp
    for j in range(n):
        ts.refs[ts.block_map[(pfns[j] - base) >> ts.block_shift]] += 1
    if c[RESERVED_PAGES] > c[RESERVED_PEAK]:
        c[RESERVED_PEAK] = c[RESERVED_PAGES]
    c[RESERVATIONS] += ncalls
    c[NR_CALLS] = first + ncalls
    return OK


@njit(cache=True)
def free_tag_storage(ts, pfns):
    """Tagged pages freed: drop their references, release the blocks that reach zero (in
    ascending order). A free under a block with no reference left is counted in
    ``c[UNBALANCED_RELEASES]`` and leaves the count at zero. ERR_UNTAGGABLE (nothing done)
    if a PFN has no tag block."""
    n = len(pfns)
    if n == 0:
        return OK
    if _untaggable(ts, pfns):
        return ERR_UNTAGGABLE
    c = ts.c
    base = ts.pfn_base
    mark = ts.blk_mark
    c[EPOCH] += 1
    nb = 0
    for j in range(n):
        b = ts.block_map[(pfns[j] - base) >> ts.block_shift]
        ts.refs[b] -= 1
        if mark[b] != c[EPOCH]:
            mark[b] = c[EPOCH]
            ts.blk_list[nb] = b
            nb += 1
    _sort_prefix(ts.blk_list, nb)
    backend = ts.cc.claims != 0
    for m in range(nb):
        b = ts.blk_list[m]
        r = ts.refs[b]
        if r < 0:
            c[UNBALANCED_RELEASES] -= r
            ts.refs[b] = 0
        elif r == 0:
            nr_tp = ts.block_tag_pages[b]
            if backend:
                cleancache_release_block(ts.cc, b)
                c[CMO_PAGES] += nr_tp
            c[RESERVED_PAGES] -= nr_tp
    return OK


# -- the arch hooks ----------------------------------------------------------------------------

@njit(cache=True)
def set_ptes_at(ts, pfns, order):
    """PROT_MTE pages get mapped: reserve, then mte_sync_tags() clears their tags. A fresh
    PROT_MTE page: a design that must sleep to reserve (cma) does it at allocation, in the
    allocator's post_alloc_hook(), where it may (the 2024 RFC), so not atomic here."""
    ts.c[ATOMIC] = 0
    return reserve_tag_storage(ts, pfns, order)


@njit(cache=True)
def copy_highpage(ts, to_pfns, from_pfns):
    """copy_page() then mte_copy_page_tags(): the destination needs tag storage first, under
    the page-table lock (atomic)."""
    ts.c[ATOMIC] = 1
    return reserve_tag_storage(ts, to_pfns, 0)


@njit(cache=True)
def arch_swap_restore(ts, pfns):
    """Swap-in of tagged pages: reserve, then mte_restore_tags() from the saved copy, under
    the page-table lock (atomic)."""
    ts.c[ATOMIC] = 1
    return reserve_tag_storage(ts, pfns, 0)


# -- readers for the report --------------------------------------------------------------------

def tag_storage_report(ts: TagStorageState) -> dict[str, int]:
    """The counters by name (what replay.collect() reads besides the per-call arrays)."""
    c = ts.c
    return {name: int(c[k]) for k, name in enumerate(STAT_NAMES)} | {
        "claims_slept": int(c[CLAIMS_SLEPT])}


def reservation_calls(ts: TagStorageState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per reserve_tag_storage() call, in order: modelled latency (ns), whether it claimed a
    block, stored pages it dropped (one entry per reserve_tag_storage() call)."""
    n = int(ts.c[NR_CALLS])
    return ts.lat[:n].copy(), ts.claimed[:n].copy(), ts.dropped[:n].copy()
