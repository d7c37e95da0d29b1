"""The plain-LRU page cache (``--policy lru``) as one flat state and compiled step functions.

The libCacheSim reference policy: one LRU list of order-0 pages, no readahead, no activation; a
hit moves the page to the list's head, a miss inserts it there, and the charge evicts from the
tail while over the limit. It has the kernel page cache's contract (engine/pagecache.py,
engine/filemap.py): the same counter numbering in ``c`` (NR_PAGES, LIMIT, CACHED_SUM, ERROR,
STREAM_OFFSET, ...; pagecache.py's readers of ``c`` work on this record too), the cleancache
hooks where the kernel page cache calls them (evicted clean pages stored, with PG_workingset
taken as set since this model keeps none; a miss restored; writes and truncation
invalidating), the checker's observations where its observer
hears them, and errors as codes in ``c[ERROR]``.

The record, :class:`LruPageCacheState`, sized from the file table (file ``f``'s page ``i``
is slot ``base[f] + i``, slots as ``pagemap.slot_bases()`` lays them out)::

    pg     uint8 per slot, the page's bits below
    link   int32, 2 per slot + 2 for the sentinel (slot nr_slots): link[2s] the newer
           neighbour (prev), link[2s + 1] the older (next); the list runs newest first
    per file: base, span, isize, dev, file_insertions, file_reinsertions
    c      int64 counters (pagecache.py's constants); cc the cleancache state

A page's states (the bits of ``pg``; EVER, once set, stays)::

               miss: add (shadow consumed: a refault)          preload_foreign()
      none / ------------------------------------->  RESIDENT     none --------> FOREIGN
      SHADOW <-------------------------------------  (+DIRTY,      (hits, never charged,
        ^        evict: DIRTY written back, stored     +RESTORED)    never on the list)
        |        to cleancache, SHADOW left               |
        +-------------- truncate: freed, no shadow -------+

Workingset: with no active list a refault is never activated (its distance is at least 1, the
active list empty), so a bit suffices for a shadow (no eviction age); ``nonresident_age`` counts
the evictions (c[NONRESIDENT_AGE]).

Reclaim from outside: :func:`lru_try_to_free_pages` is vmscan.try_to_free_pages() on the
plain LRU (priorities DEF_PRIORITY..0, ``inactive >> priority`` pages in batches of
SWAP_CLUSTER_MAX, every page at the tail reclaimed: nothing is mapped young, locked or
pinned, nothing active), the reclaim anonymous memory's make_room runs;
:func:`lru_try_charge` is the plain LRU's charge (the tail evicted exactly),
which capacity.follow_room's charge(0) means.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, types
from numba.experimental import structref

from tagcache.engine import checker
from tagcache.engine.cleancache import (
    CLEANCACHE_STATE,
    KIND_NONE,
    cleancache_cached,
    cleancache_invalidate_range,
    cleancache_restore_folio,
    cleancache_store_folio,
    make_cleancache,
)
from tagcache.engine.filemap import check_event, check_page_cache_error
from tagcache.engine.flat import state_class
from tagcache.engine.mmzone import DEF_PRIORITY, SWAP_CLUSTER_MAX
from tagcache.engine.page_flags import PG_DIRTY, PG_FOREIGN, PG_RESTORED
from tagcache.engine.pagecache import (
    ACCESSES,
    CACHED_SUM,
    ERR_WRITE_PAST_SPAN,
    ERROR,
    ERROR_ARG,
    ERROR_EVENT,
    EVICTIONS,
    HITS,
    INSERTIONS,
    LIMIT,
    MISSES,
    NONRESIDENT_AGE,
    NR_ACTIVE_FILE,
    NR_COUNTERS,
    NR_DIRTY,
    NR_INACTIVE_FILE,
    NR_PAGES,
    PAGES_READ,
    PAGES_WRITTEN,
    READ_REQUESTS,
    READ_REQUESTS_WITHOUT_CLEANCACHE,
    REFAULTS,
    REFAULTS_SNAPSHOT,
    REINSERTIONS,
    STAT_NAMES,
    STREAM_OFFSET,
    WORKINGSET_ACTIVATE,
    WORKINGSET_REFAULT,
    cached_sum,
    nr_dirty,
    nr_pages,
    page_cache_stats,
    set_limit,
)
from tagcache.engine.pagemap import MAX_PAGECACHE_ORDER, slot_bases
from tagcache.workloads.events import FileTable, Op

__all__ = [
    "NR_COUNTERS", "NR_DIRTY", "NR_PAGES", "LIMIT", "CACHED_SUM", "STREAM_OFFSET", "ERROR",
    "ERROR_EVENT", "ERROR_ARG", "STAT_NAMES", "LruPageCacheState",
    "make_lru_page_cache", "replay_lru_page_cache", "lru_try_to_free_pages",
    "lru_try_charge", "lru_preload_foreign", "set_limit", "page_cache_stats", "nr_pages",
    "nr_dirty", "cached_sum", "file_counts", "workingset_counts", "folio_arrays", "lru_walk",
    "verify_lru_page_cache", "check_page_cache_error", "replay_columns",
]

# -- a page's bits (pg) ---------------------------------------------------------------------------

PAGE_RESIDENT = 1       # cached and charged, on the list
PAGE_DIRTY = 2          # PG_dirty (on a resident or a foreign page)
PAGE_EVER = 4           # inserted at least once (re-insertions)
PAGE_SHADOW = 8         # a workingset shadow entry is present
PAGE_FOREIGN = 16       # PG_FOREIGN: resident before the trace, charged elsewhere
PAGE_RESTORED = 32      # PG_RESTORED: its data came from cleancache
PAGE_CACHED = PAGE_RESIDENT | PAGE_FOREIGN     # a page is in the cache (head[s] >= 0)

OP_READ, OP_WRITE, OP_FAULT = int(Op.READ), int(Op.WRITE), int(Op.FAULT)
OP_MAP_PAGES, OP_TRUNCATE, OP_UNLINK = int(Op.MAP_PAGES), int(Op.TRUNCATE), int(Op.UNLINK)
OP_FSYNC, OP_UNMOUNT, OP_GET_PAGES = int(Op.FSYNC), int(Op.UNMOUNT), int(Op.GET_PAGES)
OP_KERNEL_ADD, OP_KERNEL_DELETE = int(Op.KERNEL_ADD), int(Op.KERNEL_DELETE)


# -- the record -----------------------------------------------------------------------------------

_i64 = types.int64[::1]
FIELDS = (
    ("cc", CLEANCACHE_STATE),           # the cleancache state the hooks take
    ("c", _i64),                        # counters, pagecache.py's constants
    ("nr_slots", types.int64),          # also the sentinel's slot
    ("base", _i64),                     # per file
    ("span", _i64),
    ("isize", _i64),
    ("dev", _i64),
    ("file_insertions", _i64),
    ("file_reinsertions", _i64),
    ("pg", types.uint8[::1]),           # per slot: PAGE_* bits
    ("link", types.int32[::1]),         # per slot + sentinel: prev, next
)


@structref.register
class LruPageCacheStateType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


LRU_PAGE_CACHE_STATE = LruPageCacheStateType(list(FIELDS))


@njit(cache=True)
def _new(cc, c, nr_slots, base, span, isize, dev, file_insertions, file_reinsertions, pg,
         link):
    pc = structref.new(LRU_PAGE_CACHE_STATE)
    pc.cc = cc
    pc.c = c
    pc.nr_slots = nr_slots
    pc.base = base
    pc.span = span
    pc.isize = isize
    pc.dev = dev
    pc.file_insertions = file_insertions
    pc.file_reinsertions = file_reinsertions
    pc.pg = pg
    pc.link = link
    return pc


@njit(cache=True)
def _unpack(pc):
    return (pc.cc, pc.c, pc.nr_slots, pc.base, pc.span, pc.isize, pc.dev, pc.file_insertions,
            pc.file_reinsertions, pc.pg, pc.link)


LruPageCacheState = state_class(
    LruPageCacheStateType, [f for f, _ in FIELDS], _new, _unpack, "LruPageCacheState",
    __name__, "The plain-LRU page cache's pages, list, counters and cleancache state.")
LruPageCacheState.head = property(
    lambda self: folio_arrays(self)["head"],
    doc="A new array: the head per slot (-1, or the slot), as the end-of-run "
        "walk reads the kernel record's.")


def _make(base: np.ndarray, span, isize, dev, cc: Any) -> LruPageCacheState:
    """The record over slots ``base`` (each file's first slot, the slot count last)."""
    nr_slots = int(base[-1])
    n = len(base) - 1
    span = np.array(span, np.int64)
    isize = np.array(isize, np.int64)
    if (isize > span).any():
        raise ValueError("a file's size exceeds its span")
    link = np.full(2 * (nr_slots + 1), -1, np.int32)
    link[2 * nr_slots] = link[2 * nr_slots + 1] = nr_slots
    return LruPageCacheState(
        cc, np.zeros(NR_COUNTERS, np.int64), nr_slots,
        np.ascontiguousarray(base[:-1], np.int64), span, isize, np.array(dev, np.int64),
        np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(nr_slots, np.uint8), link)


def make_lru_page_cache(files: FileTable, cc: Any = None) -> LruPageCacheState:
    """The plain LRU's state for ``files``, empty; ``cc``
    is the cleancache state (engine/cleancache.py; default none). The charge limit is 0
    until set_limit()."""
    if cc is None:
        cc = make_cleancache("idle")
    return _make(slot_bases(files), files.span_pages, files.size_pages, files.dev,
                 cc)


# -- readers ------------------------------------------------------------------------------------
# (page_cache_stats, nr_pages, nr_dirty, cached_sum and set_limit are pagecache.py's: they
# read and write ``c`` only.)

def file_counts(pc: LruPageCacheState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(file_insertions, file_reinsertions, file_orders) as the kernel page cache's readers
    give them (every folio of order 0)."""
    ins = pc.file_insertions.copy()
    orders = np.zeros((len(ins), MAX_PAGECACHE_ORDER + 2), np.int64)
    orders[:, 0] = ins
    return ins, pc.file_reinsertions.copy(), orders


def workingset_counts(pc: LruPageCacheState) -> dict[str, int]:
    """The WORKINGSET_* counters and nonresident_age (no refault is ever activated)."""
    c = pc.c
    return {"refault": int(c[WORKINGSET_REFAULT]), "activate": int(c[WORKINGSET_ACTIVATE]),
            "restore": 0, "nonresident_age": int(c[NONRESIDENT_AGE])}


def folio_arrays(pc: LruPageCacheState) -> dict[str, np.ndarray]:
    """The per-slot arrays as the kernel page cache's readers give them: head (-1 or the
    slot), order (all 0), flags (PG_DIRTY, PG_FOREIGN, PG_RESTORED), ever; ``shadow`` is whether a
    shadow entry is present (shadow >= 0)."""
    pg = np.asarray(pc.pg)
    n = len(pg)
    head = np.where(pg & PAGE_CACHED, np.arange(n, dtype=np.int32), np.int32(-1))
    flags = np.zeros(n, np.uint16)
    flags[pg & PAGE_DIRTY != 0] |= PG_DIRTY
    flags[pg & PAGE_FOREIGN != 0] |= PG_FOREIGN
    flags[pg & PAGE_RESTORED != 0] |= PG_RESTORED
    return {"head": head.astype(np.int32), "order": np.zeros(n, np.int8), "flags": flags,
            "ever": pg & PAGE_EVER != 0, "shadow": pg & PAGE_SHADOW != 0}


@njit(cache=True)
def _walk(pc, out):
    """Slots on the list into ``out``, newest first; the number walked, or -1 - that number
    when a link is broken (a back link disagrees, or the walk does not end)."""
    sentinel = pc.nr_slots
    n = 0
    prev = sentinel
    s = int(pc.link[2 * sentinel + 1])
    while s != sentinel:
        if n >= len(out) or s < 0 or s > sentinel or pc.link[2 * s] != prev:
            return -1 - n
        out[n] = s
        n += 1
        prev = s
        s = int(pc.link[2 * s + 1])
    if pc.link[2 * sentinel] != prev:
        return -1 - n
    return n


def lru_walk(pc: LruPageCacheState) -> list[int]:
    """Slots on the list from the newest to the oldest (the tail last)."""
    out = np.zeros(int(pc.nr_slots), np.int64)
    n = _walk(pc, out)
    if n < 0:
        raise ValueError(f"the list's links are broken after {-1 - n} pages")
    return out[:n].tolist()


def verify_lru_page_cache(pc: LruPageCacheState) -> list[str]:
    """The end-of-run walk of the record: the list walked both ways, every page on it
    resident and every resident page on it, the page and dirty counts agreeing with the
    list and the slots, dirty data only in cached pages, no shadow under a resident page."""
    errs: list[str] = []
    pg = np.asarray(pc.pg)
    c = pc.c
    out = np.zeros(len(pg), np.int64)
    seen = _walk(pc, out)
    if seen < 0:
        seen = -1 - seen
        errs.append(f"the list's links are broken after {seen} pages")
    listed = out[:seen]
    if len(listed) and (pg[listed] & (PAGE_RESIDENT | PAGE_FOREIGN) != PAGE_RESIDENT).any():
        errs.append("a page on the list is not resident (or is foreign)")
    resident = int(np.count_nonzero(pg & PAGE_RESIDENT))
    nr = int(c[NR_PAGES])
    if seen != nr or resident != nr or int(c[NR_INACTIVE_FILE]) != nr:
        errs.append(f"page count {nr} disagrees with the list ({seen}), its counter "
                    f"({int(c[NR_INACTIVE_FILE])}) and the slots ({resident})")
    if int(c[NR_ACTIVE_FILE]):
        errs.append(f"{int(c[NR_ACTIVE_FILE])} pages counted active")
    dirty = pg & PAGE_DIRTY != 0
    if (dirty & (pg & PAGE_CACHED == 0)).any():
        errs.append("dirty data in a page not cached")
    if int(np.count_nonzero(dirty)) != int(c[NR_DIRTY]):
        errs.append(f"nr_dirty {int(c[NR_DIRTY])} but {int(np.count_nonzero(dirty))} "
                    "dirty pages")
    if ((pg & PAGE_RESIDENT != 0) & (pg & PAGE_SHADOW != 0)).any():
        errs.append("a resident page has a shadow entry")
    return errs


# -- the list and the page's moves ----------------------------------------------------------------
#
# A page request runs in replay_lru_page_cache()'s own loop, over the record's arrays read
# once per call, through small functions that take arrays and cannot fail (LLVM inlines
# them): numba keeps every argument of a function that may fail alive with an atomic
# reference count per call, and a function that calls the cleancache or the checker may
# fail, so one such call per page costs several times the work (per request of the
# cloudPhysics page trace, 90% misses: 15 ns with no hooks, 47 ns with the hooks called
# from the loop itself on an idle cleancache, 92 ns through _add_page()).
# So the loop calls the hooks itself, in its own copy of _add_page()'s body; the rarer
# events call _add_page() and _evict_tail().

@njit(cache=True)
def _rotate(link, sentinel, s):
    """folio_mark_accessed() on the plain LRU: the page moves to the newest end."""
    first = link[2 * sentinel + 1]
    if first == s:
        return
    p = link[2 * s]
    n = link[2 * s + 1]
    link[2 * p + 1] = n
    link[2 * n] = p
    link[2 * s] = sentinel
    link[2 * s + 1] = first
    link[2 * first] = s
    link[2 * sentinel + 1] = s


@njit(cache=True)
def _unlink_tail(c, pg, link, sentinel):
    """Isolate the oldest page and free it as __remove_mapping() does, but for the hooks:
    written back if dirty (counted), a shadow left. Returns the slot, negated - 1 if it was
    dirty (the caller tells the checker, then offers the clean page to cleancache). The
    list must not be empty."""
    t = link[2 * sentinel]
    p = link[2 * t]
    link[2 * p + 1] = sentinel
    link[2 * sentinel] = p
    fl = int(pg[t])
    pg[t] = (fl & PAGE_EVER) | PAGE_SHADOW
    c[NONRESIDENT_AGE] += 1
    c[NR_PAGES] -= 1
    c[NR_INACTIVE_FILE] -= 1
    c[EVICTIONS] += 1
    if fl & PAGE_DIRTY:
        c[PAGES_WRITTEN] += 1
        c[NR_DIRTY] -= 1
        return -1 - t
    return t


@njit(cache=True)
def _link_new(c, pg, link, sentinel, fins, freins, f, s, fill):
    """The insertion of slot ``s`` of file ``f`` once charged: a shadow consumed (a refault
    when ``fill``), linked at the head, counted; the caller reads it in."""
    fl = int(pg[s])
    if fill and fl & PAGE_SHADOW:
        c[REFAULTS] += 1
        c[WORKINGSET_REFAULT] += 1
    first = link[2 * sentinel + 1]              # lruvec_add_folio()
    link[2 * s] = sentinel
    link[2 * s + 1] = first
    link[2 * first] = s
    link[2 * sentinel + 1] = s
    pg[s] = PAGE_RESIDENT | PAGE_EVER
    c[NR_PAGES] += 1
    c[NR_INACTIVE_FILE] += 1
    c[INSERTIONS] += 1
    fins[f] += 1
    again = (fl & PAGE_EVER) >> 2               # branch-free: PAGE_EVER is bit 2
    c[REINSERTIONS] += again
    freins[f] += again
    c[READ_REQUESTS_WITHOUT_CLEANCACHE] += 1 if fill else 0


@njit(cache=True)
def _add_page_bare(c, pg, link, sentinel, fins, freins, f, s, fill):
    """_add_page() with no backend and no checker."""
    excess = c[NR_PAGES] + 1 - c[LIMIT]
    while excess > 0 and c[NR_PAGES] > 0:
        excess -= 1
        _unlink_tail(c, pg, link, sentinel)
    _link_new(c, pg, link, sentinel, fins, freins, f, s, fill)
    if fill:
        c[PAGES_READ] += 1
        c[READ_REQUESTS] += 1


@njit(cache=True)
def _evict_tail(pc):
    """__remove_mapping() of the oldest page: written back if dirty (the checker told),
    offered to cleancache (clean by then), a shadow left, freed."""
    t = _unlink_tail(pc.c, pc.pg, pc.link, pc.nr_slots)
    if t < 0:
        t = -1 - t
        if pc.cc.checking:
            checker.pages_cleaned(pc.cc.ck, t, 1)
    cleancache_store_folio(pc.cc, t, 0, False, True)


@njit(cache=True)
def _shrink_tail(pc, excess):
    """Evict from the tail until ``excess`` pages are gone or nothing is charged (the lru
    charge)."""
    while excess > 0 and pc.c[NR_PAGES] > 0:
        excess -= 1
        _evict_tail(pc)


@njit(cache=True)
def _add_page(pc, f, s, fill):
    """filemap_add_folio() of slot ``s`` of file ``f`` then read it in (``fill``: restored
    from cleancache, else one disk request), or created for an overwrite: charged first
    (the tail evicted), a shadow consumed (a refault when filled), linked at the head.
    (replay_lru_page_cache()'s loop has its own copy of this body.)"""
    _shrink_tail(pc, pc.c[NR_PAGES] + 1 - pc.c[LIMIT])
    _link_new(pc.c, pc.pg, pc.link, pc.nr_slots, pc.file_insertions, pc.file_reinsertions, f,
              s, fill)
    if fill:
        if cleancache_restore_folio(pc.cc, s, 1):
            pc.pg[s] = PAGE_RESIDENT | PAGE_EVER | PAGE_RESTORED
        else:
            pc.c[PAGES_READ] += 1
            pc.c[READ_REQUESTS] += 1


# -- reclaim and charge from outside ------------------------------------------------------------

@njit(cache=True)
def lru_try_charge(pc, nr, retries):
    """The charge of ``nr`` pages on the plain LRU: evict the tail, exactly, until ``nr`` more
    pages fit under c[LIMIT]; always True (``retries`` is the kernel model's, unused)."""
    _shrink_tail(pc, pc.c[NR_PAGES] + nr - pc.c[LIMIT])
    return True


@njit(cache=True)
def lru_try_to_free_pages(pc, nr_to_reclaim):
    """mm/vmscan.try_to_free_pages() on the plain LRU; returns the pages reclaimed.

    ``max(nr, SWAP_CLUSTER_MAX)`` pages are to go. At each priority from DEF_PRIORITY down,
    shrink_lruvec() scans ``inactive >> priority`` pages from the tail, SWAP_CLUSTER_MAX at a
    time, and stops after a batch once the pages it reclaimed reach the whole target; the
    descent stops once the total does, or nothing is charged. Every page scanned is
    reclaimed, and with no active list deactivation is never skipped, so there is no forced
    second descent."""
    nr_to_reclaim = max(nr_to_reclaim, SWAP_CLUSTER_MAX)
    reclaimed = 0
    for priority in range(DEF_PRIORITY, -1, -1):
        nr_inactive = pc.c[NR_INACTIVE_FILE] >> priority
        got = 0                                  # shrink_lruvec()'s own count
        while nr_inactive > 0:
            n = min(nr_inactive, SWAP_CLUSTER_MAX)
            nr_inactive -= n
            for _ in range(n):                   # isolate_lru_folios(), shrink_folio_list()
                if pc.c[NR_INACTIVE_FILE] == 0:
                    break
                _evict_tail(pc)
                got += 1
            if got >= nr_to_reclaim:
                break
        reclaimed += got
        if reclaimed >= nr_to_reclaim or pc.c[NR_PAGES] == 0:
            break
    pc.c[REFAULTS_SNAPSHOT] = pc.c[WORKINGSET_ACTIVATE]
    return reclaimed


@njit(cache=True)
def lru_preload_foreign(pc, f, first, nr):
    """Pages ``[first, first + nr)`` of file ``f`` are resident before the trace and charged
    to another cgroup (PG_FOREIGN): hits, never charged, never on the list."""
    b = pc.base[f]
    end = min(first + nr, pc.span[f])
    for s in range(b + first, b + end):
        fl = int(pc.pg[s])
        if not fl & PAGE_CACHED:
            pc.pg[s] = fl | PAGE_FOREIGN


# -- the system calls ---------------------------------------------------------------------------

@njit(cache=True)
def lru_read(pc, f, index, nr):
    """filemap_read() / one filemap_get_pages() of ``[index, index + nr)`` clipped to EOF,
    page by page: a hit moves the page to the head (a foreign one stays where it is), a miss
    inserts it. (replay_lru_page_cache() runs its own copy of this loop.)"""
    end = min(index + nr, pc.isize[f])
    b = pc.base[f]
    for s in range(b + index, b + end):
        pc.c[ACCESSES] += 1
        fl = int(pc.pg[s])
        if fl & PAGE_CACHED:
            pc.c[HITS] += 1
            if not fl & PAGE_FOREIGN:
                _rotate(pc.link, pc.nr_slots, s)
        else:
            pc.c[MISSES] += 1
            _add_page(pc, f, s, True)


@njit(cache=True)
def lru_fault(pc, f, index):
    """filemap_fault() on page ``index``: an access of that page (nothing is mapped)."""
    lru_read(pc, f, index, 1)


@njit(cache=True)
def lru_write(pc, f, index, nr):
    """generic_perform_write() of whole pages: counted as accesses (hits: the pages cached
    before it), a missing page created with nothing read, its stored copy invalidated, every
    page dirtied and moved to the head. False, with ``c[ERROR]`` set and nothing done, for
    a write past the file's span."""
    end = index + nr
    if end > pc.span[f]:
        pc.c[ERROR] = ERR_WRITE_PAST_SPAN
        pc.c[ERROR_ARG] = f
        return False
    b = pc.base[f]
    hits = 0
    for s in range(b + index, b + end):
        if pc.pg[s] & PAGE_CACHED:
            hits += 1
    pc.c[ACCESSES] += nr
    pc.c[HITS] += hits
    pc.c[MISSES] += nr - hits
    for s in range(b + index, b + end):
        if not pc.pg[s] & PAGE_CACHED:
            _add_page(pc, f, s, False)
        # Now in the page cache, so reclaim cannot store it before it is dirty: drop any
        # stale copy first, then change it.
        cleancache_invalidate_range(pc.cc, s, s + 1)
        if pc.cc.checking:
            checker.pages_written(pc.cc.ck, s, s + 1)
        fl = int(pc.pg[s])
        if not fl & PAGE_DIRTY:
            pc.pg[s] = fl | PAGE_DIRTY
            pc.c[NR_DIRTY] += 1
        if not fl & PAGE_FOREIGN:
            _rotate(pc.link, pc.nr_slots, s)
    if end > pc.isize[f]:
        pc.isize[f] = end
    return True


@njit(cache=True)
def lru_fsync(pc, f):
    """Write back every dirty page of the file (they stay cached, now clean)."""
    b = pc.base[f]
    for s in range(b, b + pc.span[f]):
        fl = int(pc.pg[s])
        if fl & PAGE_DIRTY:
            pc.c[PAGES_WRITTEN] += 1
            pc.c[NR_DIRTY] -= 1
            if pc.cc.checking:
                checker.pages_cleaned(pc.cc.ck, s, 1)
            pc.pg[s] = fl & ~PAGE_DIRTY


@njit(cache=True)
def lru_truncate(pc, f, new_size):
    """truncate_inode_pages_range() from ``new_size``: pages past it freed (no shadow, dirty
    data discarded, no eviction counted), their shadows dropped, every stored copy of the
    inode invalidated (cleancache_invalidate_inode()), the size set."""
    b = pc.base[f]
    old = pc.span[f]
    new_size = max(0, min(new_size, old))
    for s in range(b + new_size, b + old):
        fl = int(pc.pg[s])
        if fl & PAGE_RESIDENT:
            p = pc.link[2 * s]
            n = pc.link[2 * s + 1]
            pc.link[2 * p + 1] = n
            pc.link[2 * n] = p
            pc.c[NR_PAGES] -= 1
            pc.c[NR_INACTIVE_FILE] -= 1
        if fl & PAGE_DIRTY:
            pc.c[NR_DIRTY] -= 1
        pc.pg[s] = fl & PAGE_EVER
    cleancache_invalidate_range(pc.cc, b, b + old)
    if pc.cc.checking:
        checker.pages_truncated(pc.cc.ck, b + new_size, b + old)
    pc.isize[f] = min(pc.isize[f], new_size)


@njit(cache=True)
def lru_unmount(pc, dev):
    """kill_block_super(): write back and evict every inode of ``dev``."""
    for f in range(len(pc.dev)):
        if pc.dev[f] == dev:
            lru_fsync(pc, f)
            lru_truncate(pc, f, 0)
            pc.isize[f] = 0


# -- the loop -----------------------------------------------------------------------------------

@njit(cache=True)
def replay_lru_page_cache(pc, op, a0, a1, a2, start, end):
    """Apply the page-cache events ``[start, end)`` of the columns; return the index of the
    first event that is not the page cache's (the caller's to run), or ``end``. MAP_PAGES
    (fault-around maps without an access of its own), KERNEL_ADD and KERNEL_DELETE are
    passed over. After each event consumed, cleancache_cached() is added to
    ``c[CACHED_SUM]``. On an error (``c[ERROR]``) the failing event's index is returned and
    put in ``c[ERROR_EVENT]`` (engine.filemap.replay_page_cache()'s contract)."""
    cc = pc.cc
    return _replay(pc, cc, cc.kind != KIND_NONE, cc.checking != 0, pc.c, pc.pg, pc.link,
                   pc.nr_slots, pc.base, pc.isize, pc.file_insertions, pc.file_reinsertions,
                   op, a0, a1, a2, start, end)


@njit(cache=True)
def _replay(pc, cc, cc_on, ck_on, c, pg, link, sentinel, base, isize, fins, freins, op, a0,
            a1, a2, start, end):
    """replay_lru_page_cache() over the record's parts."""
    hooks = cc_on or ck_on
    for i in range(start, end):
        o = op[i]
        f = a0[i]
        if ck_on:
            check_event(cc, i + c[STREAM_OFFSET])
        if o == OP_READ or o == OP_GET_PAGES or o == OP_FAULT:
            index = a1[i]
            last = index + 1 if o == OP_FAULT else index + a2[i]
            if last > isize[f]:
                last = isize[f]
            b = base[f]
            for s in range(b + index, b + last):         # lru_read()
                c[ACCESSES] += 1
                fl = int(pg[s])
                if fl & PAGE_CACHED:
                    c[HITS] += 1
                    if not fl & PAGE_FOREIGN:
                        _rotate(link, sentinel, s)
                else:
                    c[MISSES] += 1
                    if hooks:                            # _add_page(pc, f, s, True)
                        excess = c[NR_PAGES] + 1 - c[LIMIT]
                        while excess > 0 and c[NR_PAGES] > 0:
                            excess -= 1
                            t = _unlink_tail(c, pg, link, sentinel)   # _evict_tail()
                            if t < 0:
                                t = -1 - t
                                if ck_on:
                                    checker.pages_cleaned(cc.ck, t, 1)
                            cleancache_store_folio(cc, t, 0, False, True)
                        _link_new(c, pg, link, sentinel, fins, freins, f, s, True)
                        if cleancache_restore_folio(cc, s, 1):
                            pg[s] = PAGE_RESIDENT | PAGE_EVER | PAGE_RESTORED
                        else:
                            c[PAGES_READ] += 1
                            c[READ_REQUESTS] += 1
                    else:
                        _add_page_bare(c, pg, link, sentinel, fins, freins, f, s, True)
        elif o == OP_WRITE:
            if not lru_write(pc, f, a1[i], a2[i]):
                c[ERROR_EVENT] = i
                return i
        elif o == OP_TRUNCATE:
            lru_truncate(pc, f, a1[i])
        elif o == OP_UNLINK:
            lru_truncate(pc, f, 0)
        elif o == OP_FSYNC:
            lru_fsync(pc, f)
        elif o == OP_UNMOUNT:
            lru_unmount(pc, f)
        elif o != OP_MAP_PAGES and o != OP_KERNEL_ADD and o != OP_KERNEL_DELETE:
            return i
        if cc_on:
            c[CACHED_SUM] += cleancache_cached(cc)
    return end


@njit(cache=True)
def _replay_skipping(pc, op, a0, a1, a2):
    """Every page-cache event of the columns, the others skipped; -1, or the index of the
    event that failed."""
    i = 0
    n = len(op)
    while i < n:
        i = replay_lru_page_cache(pc, op, a0, a1, a2, i, n)
        if pc.c[ERROR]:
            return i
        i += 1
    return -1


def replay_columns(pc: LruPageCacheState, op: np.ndarray, a0: np.ndarray, a1: np.ndarray,
                   a2: np.ndarray) -> None:
    """Every event of the columns that replay_lru_page_cache() handles, skipping the others;
    raises on an error (tests and tools; the machine's loop interleaves)."""
    op = np.ascontiguousarray(op, np.uint8)
    a0, a1, a2 = (np.ascontiguousarray(a, np.int64) for a in (a0, a1, a2))
    if _replay_skipping(pc, op, a0, a1, a2) >= 0:
        check_page_cache_error(pc)
