"""The kernel page cache as one flat state: the record, its builder, readers and leaf operations.

The kernel's page cache (mm/filemap.c, mm/readahead.c, mm/vmscan.c, mm/workingset.c, the LRU
lists of one lruvec) as numba functions over one record, :class:`PageCacheState`. The record
holds, sized at build time from the file table (slots as ``pagemap.slot_bases()`` lays them
out, file ``f``'s page ``i`` is slot ``base[f] + i``)::

    per slot      head int32: the xarray slot, a folio's head slot (>= 0) or a value entry
                  (< 0: empty, or a shadow; "ever inserted" rides along, see below);
                  flags uint16 (engine/page_flags.py's PG_* bits, plus PG_LOCKED and PG_PINNED
                  below, in bits 0-11; the folio's order in bits 12-15)
    lru_prev/next int32 per slot + 2 sentinels (nr_slots + LRU_INACTIVE_FILE / _ACTIVE_FILE)
    per file      base, span, isize, dev, max_order; the file_ra_state (ra_start, ra_size,
                  ra_async_size, ra_prev_pos, ra_mmap_miss, ra_order); file_insertions,
                  file_reinsertions, file_orders[f, order]
    VMAs          exec_*/cow_*: file f's sorted, disjoint [start, end) page ranges are
                  entries off[f]..off[f+1] of the start/end arrays (binary search)
    scratch       io_key (the folios one readahead window reads, see begin_read()), present
                  (which pages of a read were cached before it), isolated (one
                  isolate_lru_folios() batch)
    c             int64 counters, indexed by the constants below
    cc            the cleancache state (engine/cleancache.py) the hooks take

Memory (issue 11's budget: a 64 GiB machine, its page cache full): 14 bytes a slot, the
xarray slot (4), flags (2) and the two LRU links (8). As in the kernel, a slot holds either
the folio or the shadow entry its eviction left (mm/workingset.c's xa_mk_value() entries),
never both: a value entry here is a negative ``head``::

    -1                        EMPTY: no folio was ever added here, no shadow
    -2                        EMPTY_EVER: a folio was added here before, no shadow
    -3 - (eviction << 1 | workingset)
                              a shadow (a shadow implies a folio was added before)

``eviction`` is nonresident_age truncated to EVICTION_BITS (29) bits and the refault
distance is taken modulo 2**29, as mm/workingset.c's pack_shadow() stores
``eviction & EVICTION_MASK`` and workingset_test_recent() computes
``(refault - eviction) & EVICTION_MASK``: beyond a refault distance of 2**29 pages (2 TiB of
reclaim and activation between eviction and refault) the distance wraps, as the kernel's does
(at its own, wider, mask on 64-bit). A folio preloaded over a shadow (preload_foreign())
replaces it, as storing a folio in an xarray slot does.

Workingset detection (mm/workingset.c), in short. The inactive list is where new pages prove
themselves; a page that is evicted from it and faults back in soon was evicted too early. To
tell, each eviction leaves a *shadow entry* in the page-cache slot that records the value of a
per-lruvec counter, ``nonresident_age``, that ticks once per page evicted or activated::

    eviction:  shadow = nonresident_age;  nonresident_age += nr_pages
    refault:   refault_distance = nonresident_age - shadow

The refault distance is how many pages were evicted or activated while the page was out, i.e.
the minimum extra inactive space it would have needed to stay resident. If that distance fits
in the active list (``workingset_size = NR_ACTIVE_FILE``, plus the anon lists when swap is
usable), the page is activated on refault: it is part of the workingset.

Modelled as in workingset_eviction() / workingset_test_recent() / workingset_refault() of
Linux 6.x, with one lruvec (one memory cgroup, one node) and no bucket_order rounding of the
eviction counter. The shadow also keeps the folio's PG_workingset bit, so a refault of a page
that was active before eviction counts as a *restore* (WORKINGSET_RESTORE_FILE). MGLRU
(CONFIG_LRU_GEN) is not modelled.

The folio order lives in the head slot's flags (bits 12-15, FOLIO_ORDER_SHIFT; orders go up
to MAX_PAGECACHE_ORDER = 9), read by folio_order(). A cached slot was inserted before
("ever") unless its folio is PG_FOREIGN and was preloaded on a slot never inserted: a foreign
folio (always order 0) keeps that bit as FOREIGN_EVER in the order bits. Python readers see
per-slot head, order, flags and shadow arrays through folio_arrays() and ``pc.order``.

This module has the leaf operations every other part calls: the LRU lists, the workingset's
shadow entries, lookups (folio_at, range_free, page_cache_prev_miss / next_miss, the VMA
that covers a page), folio_mark_accessed(), freeing a folio, writeback and the accounting of
a window's disk requests. Reclaim is engine/vmscan.py, insertion engine/filemap_add.py,
readahead engine/readahead.py, the system calls and the trace loop engine/filemap.py; the
imports go one way: filemap -> readahead -> filemap_add -> vmscan -> pagecache, cleancache.

A folio a readahead window holds locked has PG_LOCKED, a folio a running read or fault holds a
reference to has PG_PINNED. Neither nests (a readahead never starts a read or a fault), so a
bit is enough; both are clear between events. Errors are codes in ``c[ERROR]``, not exceptions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numba import njit, types
from numba.experimental import structref

from tagcache.engine import checker
from tagcache.engine.cleancache import CLEANCACHE_STATE
from tagcache.engine.flat import state_class
from tagcache.engine.mmzone import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE, SWAP_CLUSTER_MAX
from tagcache.engine.page_flags import (
    PG_ACTIVE,
    PG_DIRTY,
    PG_FOREIGN,
    PG_MAPPED,
    PG_READAHEAD,
    PG_REFERENCED,
    PG_RESTORED,
    PG_WORKINGSET,
    PTE_YOUNG,
    VM_EXEC_MAPPED,
)
from tagcache.engine.pagemap import MAX_PAGECACHE_ORDER, merge_ranges, slot_bases
from tagcache.workloads.events import FileTable


@dataclasses.dataclass
class PageCacheStats:
    """Page-cache counters; names as in the JSON output (DESIGN.md section 4)."""

    accesses: int = 0
    hits: int = 0
    misses: int = 0
    insertions: int = 0
    reinsertions: int = 0     # insertions of a page that had been inserted before
    refaults: int = 0
    cleancache_hits: int = 0  # accessed pages that missed and came back from cleancache
    evictions: int = 0
    pages_read: int = 0       # pgpgin, in pages: reads that went to the disk
    pages_written: int = 0    # pgpgout, in pages: writeback
    read_requests: int = 0    # requests sent to the disk: runs of contiguous folios read
    read_requests_without_cleancache: int = 0   # the runs had no folio been restored


NO_SHADOW = -1
"""A slot without a shadow entry, as workingset_refault() reads it (folio_arrays()'s
``shadow``)."""

PG_LOCKED = 1 << 10
"""A readahead window's folio, locked until the window is read (``pc.locked``)."""
PG_PINNED = 1 << 11
"""A folio a running read or fault holds a reference to (``pc.pinned``)."""
assert not (PG_LOCKED | PG_PINNED) & (PG_ACTIVE | PG_REFERENCED | PG_DIRTY | PG_READAHEAD
                                      | PG_WORKINGSET | PG_MAPPED | PTE_YOUNG | PG_FOREIGN
                                      | VM_EXEC_MAPPED | PG_RESTORED)

# -- counters: c[...] ---------------------------------------------------------------------------

STAT_NAMES = tuple(f.name for f in dataclasses.fields(PageCacheStats))
"""PageCacheStats' counters, which are c[0:len(STAT_NAMES)] in this order."""
(ACCESSES, HITS, MISSES, INSERTIONS, REINSERTIONS, REFAULTS, CLEANCACHE_HITS, EVICTIONS,
 PAGES_READ, PAGES_WRITTEN, READ_REQUESTS, READ_REQUESTS_WITHOUT_CLEANCACHE) = range(12)
assert STAT_NAMES[READ_REQUESTS_WITHOUT_CLEANCACHE] == "read_requests_without_cleancache"
assert len(STAT_NAMES) == 12
NR_PAGES = 12           # pages charged (PG_FOREIGN ones are not)
NR_DIRTY = 13
NR_LRU = 14             # c[NR_LRU + lru]: pages on the list (lruvec->lru_zone_size)
NR_INACTIVE_FILE = NR_LRU + LRU_INACTIVE_FILE
NR_ACTIVE_FILE = NR_LRU + LRU_ACTIVE_FILE
NONRESIDENT_AGE = 16
WORKINGSET_REFAULT = 17     # WORKINGSET_REFAULT_FILE, pages
WORKINGSET_ACTIVATE = 18
WORKINGSET_RESTORE = 19
REFAULTS_SNAPSHOT = 20      # WORKINGSET_ACTIVATE at the end of the last reclaim
LIMIT = 21                  # the charge limit in pages (set_limit())
IO_ACTIVE = 22              # a readahead window is collecting its folios (begin_read())
IO_LEN = 23
CACHED_SUM = 24             # sum over the events replayed of cleancache_cached()
ERROR = 25                  # ERR_*
ERROR_EVENT = 26            # the trace index of the event that failed
ERROR_ARG = 27              # its file
STREAM_OFFSET = 28          # events inserted before the columns' event now (the checker's clock)
NR_COUNTERS = 29

ERR_NONE = 0
ERR_WRITE_PAST_SPAN = 1
"""A write ends past its file's span (check_page_cache_error() raises ValueError)."""
ERR_NO_ROOM = 2
"""A charge with full retries failed and the page a read, fault or write needs could not be
added. There is no defined behaviour there; the reclaim
rules make it unreachable (nothing is locked or pinned then), so it is an error."""
ERR_IO_BATCH = 3
"""A window read more folios than the io batch holds (cannot happen: at most a file's span)."""

# -- the xarray slot's value entries and the folio order (see the module docstring) -------------

EMPTY = -1
"""A value entry: nothing was ever added at this slot, no shadow."""
EMPTY_EVER = -2
"""A value entry: a folio was added at this slot before, no shadow."""
SHADOW_MAX = -3
"""Value entries at or below it are shadows: ``SHADOW_MAX - (eviction << 1 | workingset)``."""
EVICTION_BITS = 29
EVICTION_MASK = (1 << EVICTION_BITS) - 1
"""mm/workingset.c's EVICTION_MASK: the bits of nonresident_age a shadow keeps."""
FOLIO_ORDER_SHIFT = 12
"""flags bits 12-15: the folio's order (head slots)."""
PG_FLAGS_MASK = (1 << FOLIO_ORDER_SHIFT) - 1
FOREIGN_EVER = 1 << FOLIO_ORDER_SHIFT
"""In a PG_FOREIGN folio's flags (order 0): its slot was inserted before it was preloaded."""
assert PG_FLAGS_MASK & (PG_LOCKED | PG_PINNED | PG_RESTORED | VM_EXEC_MAPPED) == (
    PG_LOCKED | PG_PINNED | PG_RESTORED | VM_EXEC_MAPPED)
assert MAX_PAGECACHE_ORDER < 16

_IO_ORDER_SHIFT = 1
_IO_HEAD_SHIFT = 5          # io_key = head << 5 | order << 1 | from_disk


# -- the record ---------------------------------------------------------------------------------

_i64, _i32, _i8 = types.int64[::1], types.int32[::1], types.int8[::1]
FIELDS = (
    ("cc", CLEANCACHE_STATE),           # the cleancache state the hooks take
    ("c", _i64),                        # counters, the constants above
    ("nr_slots", types.int64),
    ("ra_pages", types.int64),          # read_ahead_kb in pages; 0: no readahead
    ("base", _i64),                     # per file: first slot
    ("span", _i64),                     # per file: most pages it ever holds
    ("isize", _i64),                    # per file: size in pages (writes grow it)
    ("dev", _i64),                      # per file: device
    ("max_order", _i8),                 # per file: largest folio order of its mapping
    ("head", _i32),                     # per slot: head slot of its folio, or a value entry
    ("flags", types.uint16[::1]),       # per head slot: PG_* bits | order << 12
    ("lru_prev", _i32),                 # per slot + 2 sentinels: the two file LRU lists
    ("lru_next", _i32),
    ("ra_start", _i64),                 # per file: file_ra_state
    ("ra_size", _i64),
    ("ra_async_size", _i64),
    ("ra_prev_pos", _i64),              # bytes; -1 as after file_ra_state_init()
    ("ra_mmap_miss", _i32),
    ("ra_order", _i8),
    ("file_insertions", _i64),          # per file, as the stats count them
    ("file_reinsertions", _i64),
    ("file_orders", types.int64[:, ::1]),   # per file and order: folios added
    ("exec_off", _i64),                 # per file + 1: its VM_EXEC ranges' entries
    ("exec_start", _i64),
    ("exec_end", _i64),
    ("cow_off", _i64),                  # per file + 1: its copy-on-write ranges' entries
    ("cow_start", _i64),
    ("cow_end", _i64),
    ("io_key", _i64),                   # a window's folios: head << 5 | order << 1 | disk
    ("present", _i8),                   # the pages of a read cached before it
    ("isolated", _i32),                 # one isolate_lru_folios() batch
)


@structref.register
class PageCacheStateType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


PAGE_CACHE_STATE = PageCacheStateType(list(FIELDS))


@njit(cache=True)
def _new(cc, c, nr_slots, ra_pages, base, span, isize, dev, max_order, head, flags, lru_prev,
         lru_next, ra_start, ra_size, ra_async_size, ra_prev_pos, ra_mmap_miss, ra_order,
         file_insertions, file_reinsertions, file_orders, exec_off, exec_start, exec_end,
         cow_off, cow_start, cow_end, io_key, present, isolated):
    pc = structref.new(PAGE_CACHE_STATE)
    pc.cc = cc
    pc.c = c
    pc.nr_slots = nr_slots
    pc.ra_pages = ra_pages
    pc.base = base
    pc.span = span
    pc.isize = isize
    pc.dev = dev
    pc.max_order = max_order
    pc.head = head
    pc.flags = flags
    pc.lru_prev = lru_prev
    pc.lru_next = lru_next
    pc.ra_start = ra_start
    pc.ra_size = ra_size
    pc.ra_async_size = ra_async_size
    pc.ra_prev_pos = ra_prev_pos
    pc.ra_mmap_miss = ra_mmap_miss
    pc.ra_order = ra_order
    pc.file_insertions = file_insertions
    pc.file_reinsertions = file_reinsertions
    pc.file_orders = file_orders
    pc.exec_off = exec_off
    pc.exec_start = exec_start
    pc.exec_end = exec_end
    pc.cow_off = cow_off
    pc.cow_start = cow_start
    pc.cow_end = cow_end
    pc.io_key = io_key
    pc.present = present
    pc.isolated = isolated
    return pc


@njit(cache=True)
def _unpack(pc):
    return (pc.cc, pc.c, pc.nr_slots, pc.ra_pages, pc.base, pc.span, pc.isize, pc.dev,
            pc.max_order, pc.head, pc.flags, pc.lru_prev, pc.lru_next, pc.ra_start,
            pc.ra_size, pc.ra_async_size, pc.ra_prev_pos, pc.ra_mmap_miss, pc.ra_order,
            pc.file_insertions, pc.file_reinsertions, pc.file_orders, pc.exec_off,
            pc.exec_start, pc.exec_end, pc.cow_off, pc.cow_start, pc.cow_end, pc.io_key,
            pc.present, pc.isolated)


PageCacheState = state_class(
    PageCacheStateType, [f for f, _ in FIELDS], _new, _unpack, "PageCacheState", __name__,
    "Every array of the kernel page-cache model, its counters and its cleancache state.")


def _order_array(pc) -> np.ndarray:
    """Per slot: the order of the folio headed there (0 elsewhere), as an
    ``order`` array; computed from ``flags`` at each read."""
    fl = np.asarray(pc.flags)
    return np.where(fl & PG_FOREIGN, 0, fl >> FOLIO_ORDER_SHIFT).astype(np.int8)


PageCacheState.order = property(_order_array)


def _flat_ranges(spec: Mapping[int, Sequence[tuple[int, int]]] | None, n: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """File -> ranges as offsets into sorted start/end arrays (merged as pagemap.merge_ranges()
    merges them)."""
    merged = merge_ranges(spec)
    off = np.zeros(n + 1, np.int64)
    starts: list[int] = []
    ends: list[int] = []
    for f in range(n):
        for a, b in merged.get(f, ()):
            starts.append(a)
            ends.append(b)
        off[f + 1] = len(starts)
    return off, np.array(starts, np.int64), np.array(ends, np.int64)


def make_page_cache(files: FileTable, cc: Any, *, ra_pages: int, max_folio_order: int,
                    exec_vmas: Mapping[int, Sequence[tuple[int, int]]] | None = None,
                    cow_vmas: Mapping[int, Sequence[tuple[int, int]]] | None = None
                    ) -> PageCacheState:
    """The state of the kernel page cache over ``files`` (``ra_pages=..., max_folio_order=...,
    policy="kernel", exec_vmas=..., cow_vmas=...)`` starts with; ``cc`` is the cleancache
    state (engine/cleancache.py). The charge limit is 0 until set_limit()."""
    n = len(files)
    base = slot_bases(files)
    nr_slots = int(base[-1])
    span = np.array(files.span_pages, np.int64)
    isize = np.array(files.size_pages, np.int64)
    if (isize > span).any():
        raise ValueError("a file's size exceeds its span")
    max_order = np.where(np.asarray(files.large_folios, bool),
                         min(max_folio_order, MAX_PAGECACHE_ORDER), 0).astype(np.int8)
    longest = max(1, int(span.max()) if n else 1)
    lru_prev = np.full(nr_slots + 2, -1, np.int32)
    lru_next = np.full(nr_slots + 2, -1, np.int32)
    for lru in (LRU_INACTIVE_FILE, LRU_ACTIVE_FILE):
        lru_prev[nr_slots + lru] = lru_next[nr_slots + lru] = nr_slots + lru
    exec_off, exec_start, exec_end = _flat_ranges(exec_vmas, n)
    cow_off, cow_start, cow_end = _flat_ranges(cow_vmas, n)
    values = {
        "cc": cc, "c": np.zeros(NR_COUNTERS, np.int64), "nr_slots": nr_slots,
        "ra_pages": int(ra_pages), "base": np.ascontiguousarray(base[:-1]), "span": span,
        "isize": isize, "dev": np.array(files.dev, np.int64), "max_order": max_order,
        "head": np.full(nr_slots, EMPTY, np.int32), "flags": np.zeros(nr_slots, np.uint16),
        "lru_prev": lru_prev, "lru_next": lru_next,
        "ra_start": np.zeros(n, np.int64), "ra_size": np.zeros(n, np.int64),
        "ra_async_size": np.zeros(n, np.int64), "ra_prev_pos": np.full(n, -1, np.int64),
        "ra_mmap_miss": np.zeros(n, np.int32), "ra_order": np.zeros(n, np.int8),
        "file_insertions": np.zeros(n, np.int64), "file_reinsertions": np.zeros(n, np.int64),
        "file_orders": np.zeros((n, MAX_PAGECACHE_ORDER + 2), np.int64),
        "exec_off": exec_off, "exec_start": exec_start, "exec_end": exec_end,
        "cow_off": cow_off, "cow_start": cow_start, "cow_end": cow_end,
        "io_key": np.zeros(longest, np.int64), "present": np.zeros(longest, np.int8),
        "isolated": np.zeros(SWAP_CLUSTER_MAX, np.int32),
    }
    return PageCacheState(*(values[k] for k, _ in FIELDS))


def set_limit(pc: PageCacheState, pages: int) -> None:
    """The charge limit in pages (evaluated by the caller whenever it changes)."""
    pc.c[LIMIT] = int(pages)


# -- readers ------------------------------------------------------------------------------------

def page_cache_stats(pc: PageCacheState) -> dict[str, int]:
    """The counters as :class:`PageCacheStats`' fields, by name."""
    c = pc.c
    return {name: int(c[k]) for k, name in enumerate(STAT_NAMES)}


def nr_pages(pc: PageCacheState) -> int:
    return int(pc.c[NR_PAGES])


def nr_dirty(pc: PageCacheState) -> int:
    return int(pc.c[NR_DIRTY])


def cached_sum(pc: PageCacheState) -> int:
    """The sum, over the events replay_page_cache() consumed, of cleancache_cached()."""
    return int(pc.c[CACHED_SUM])


def file_counts(pc: PageCacheState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(file_insertions, file_reinsertions, file_orders), copies."""
    return pc.file_insertions.copy(), pc.file_reinsertions.copy(), pc.file_orders.copy()


def workingset_counts(pc: PageCacheState) -> dict[str, int]:
    """The WORKINGSET_* counters and nonresident_age (workingset_refault()'s counts)."""
    c = pc.c
    return {"refault": int(c[WORKINGSET_REFAULT]), "activate": int(c[WORKINGSET_ACTIVATE]),
            "restore": int(c[WORKINGSET_RESTORE]), "nonresident_age": int(c[NONRESIDENT_AGE])}


def folio_arrays(pc: PageCacheState) -> dict[str, np.ndarray]:
    """The per-slot arrays head, order, flags, ever and shadow as plain per-slot
    arrays (head -1 where no folio; shadow -1 none, else age << 1 | workingset, the age as
    stored: truncated to EVICTION_BITS)."""
    w = np.asarray(pc.head).astype(np.int64)
    fl = np.asarray(pc.flags)
    foreign = (fl & PG_FOREIGN) != 0
    cached = w >= 0
    ever = np.where(cached, True, w != EMPTY)
    heads = np.flatnonzero(cached & (w == np.arange(len(w))) & foreign)
    ever[heads] = (fl[heads] & FOREIGN_EVER) != 0
    return {"head": np.where(cached, w, -1).astype(np.int32), "order": _order_array(pc),
            "flags": (fl & PG_FLAGS_MASK).astype(np.uint16), "ever": ever,
            "shadow": np.where(w <= SHADOW_MAX, SHADOW_MAX - w, NO_SHADOW)}


def ra_arrays(pc: PageCacheState) -> dict[str, np.ndarray]:
    """Each file's file_ra_state (start, size, async_size, prev_pos, mmap_miss, order)."""
    return {"start": pc.ra_start.copy(), "size": pc.ra_size.copy(),
            "async_size": pc.ra_async_size.copy(), "prev_pos": pc.ra_prev_pos.copy(),
            "mmap_miss": pc.ra_mmap_miss.copy(), "order": pc.ra_order.copy()}


def lru_walk(pc: PageCacheState, lru: int) -> list[int]:
    """Head slots on ``lru`` from the newest to the oldest (the tail last)."""
    return lru_heads(pc.lru_next, int(pc.nr_slots) + lru).tolist()


@njit(cache=True)
def lru_heads(nxt, sentinel):
    """The walk of one list from its sentinel, as an array (stops after as many steps as
    there are entries, so a broken list cannot loop forever)."""
    out = np.empty(len(nxt), np.int64)
    n = 0
    s = nxt[sentinel]
    while s != sentinel and n < len(nxt):
        out[n] = s
        n += 1
        s = nxt[s]
    return out[:n]


# -- the LRU lists (engine/mmzone.py) -------------------------------------------------------------
#
# Step functions index the record's arrays directly (``pc.head[s]``), never through a local
# alias (``head = pc.head``): numba takes a reference to an array it reads from a record,
# and an alias that lives across a loop keeps two atomic reference-count operations that the
# compiler cannot remove (tens of nanoseconds a call), where a direct access has none.

@njit(cache=True)
def lruvec_add_folio(pc, lru, head, nr):
    """Link the folio at ``head`` at the newest end of ``lru``."""
    sentinel = pc.nr_slots + lru
    first = pc.lru_next[sentinel]
    pc.lru_next[head] = first
    pc.lru_prev[head] = sentinel
    pc.lru_prev[first] = head
    pc.lru_next[sentinel] = head
    pc.c[NR_LRU + lru] += nr


@njit(cache=True)
def lruvec_del_folio(pc, lru, head, nr):
    p, n = pc.lru_prev[head], pc.lru_next[head]
    pc.lru_next[p] = n
    pc.lru_prev[n] = p
    pc.lru_prev[head] = -1
    pc.lru_next[head] = -1
    pc.c[NR_LRU + lru] -= nr


@njit(cache=True, inline="always")
def lru_tail(pc, lru):
    """Oldest folio on ``lru``, or -1 when it is empty."""
    sentinel = pc.nr_slots + lru
    t = int(pc.lru_prev[sentinel])
    return -1 if t == sentinel else t


# -- workingset (mm/workingset.c) --------------------------------------------------------------

@njit(cache=True, inline="always")
def workingset_age_nonresident(pc, nr):
    """Called on eviction and on activation."""
    pc.c[NONRESIDENT_AGE] += nr


@njit(cache=True)
def workingset_eviction(pc, head, nr, workingset):
    """Store the shadow over the folio's slots, which page_cache_delete() has just freed
    (__filemap_remove_folio() replaces the folio by its shadow entry): pack_shadow(), the
    age truncated to EVICTION_MASK."""
    v = SHADOW_MAX - (((pc.c[NONRESIDENT_AGE] & EVICTION_MASK) << 1) | (1 if workingset else 0))
    for s in range(head, head + nr):
        pc.head[s] = v
    workingset_age_nonresident(pc, nr)


@njit(cache=True)
def workingset_forget(pc, first, end):
    """Drop the shadows of slots ``[first, end)`` (truncation, a new folio); a cached slot
    holds none, an empty one stays as it is."""
    for s in range(first, end):
        if pc.head[s] <= SHADOW_MAX:
            pc.head[s] = EMPTY_EVER


@njit(cache=True, inline="always")
def has_shadow(pc, s):
    return pc.head[s] <= SHADOW_MAX


@njit(cache=True)
def workingset_refault(pc, head, nr):
    """A folio is added at ``head``: consume its slots' shadows; return (activate,
    workingset) by the refault distance against the active list (workingset_test_recent():
    the distance taken modulo 2**EVICTION_BITS, compared with the active file pages)."""
    w = int(pc.head[head])
    workingset_forget(pc, head, head + nr)
    if w > SHADOW_MAX:
        return False, False
    shadow = SHADOW_MAX - w
    pc.c[WORKINGSET_REFAULT] += nr
    was_workingset = (shadow & 1) != 0
    if (pc.c[NONRESIDENT_AGE] - (shadow >> 1)) & EVICTION_MASK > pc.c[NR_ACTIVE_FILE]:
        return False, False
    workingset_age_nonresident(pc, nr)
    pc.c[WORKINGSET_ACTIVATE] += nr
    if was_workingset:
        pc.c[WORKINGSET_RESTORE] += nr
    return True, was_workingset


# -- lookups ------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def folio_at(pc, f, index):
    """Head slot of the folio caching page ``index`` of file ``f``, or -1."""
    if index < 0 or index >= pc.span[f]:
        return -1
    return int(pc.head[pc.base[f] + index])


@njit(cache=True)
def range_free(pc, f, index, nr):
    """No page of ``[index, index + nr)`` is cached (a large folio may go there)."""
    b = pc.base[f] + index
    for s in range(b, b + nr):
        if pc.head[s] >= 0:
            return False
    return True


@njit(cache=True)
def page_cache_prev_miss(pc, f, index, max_scan):
    """First uncached index at or below ``index`` looking back ``max_scan`` pages, else
    the one before the scan (-1 at the start of the file)."""
    b = pc.base[f]
    lo = max(0, index - max_scan + 1)
    for i in range(index, lo - 1, -1):
        if pc.head[b + i] < 0:
            return i
    return lo - 1 if lo > 0 else -1


@njit(cache=True)
def page_cache_next_miss(pc, f, index, max_scan):
    """First uncached index at or above ``index`` within ``max_scan`` pages and the span."""
    b = pc.base[f]
    hi = min(index + max_scan, pc.span[f])
    for i in range(index, hi):
        if pc.head[b + i] < 0:
            return i
    return hi


@njit(cache=True)
def vma_covering(pc, cow, f, index):
    """Entry of the range of file ``f`` (a copy-on-write range with ``cow``, else a VM_EXEC
    one) that holds page ``index`` (binary search over its sorted, disjoint ranges), or -1."""
    lo = pc.cow_off[f] if cow else pc.exec_off[f]
    hi = pc.cow_off[f + 1] if cow else pc.exec_off[f + 1]
    first = lo
    while lo < hi:                       # first range starting past index
        mid = (lo + hi) >> 1
        if (pc.cow_start[mid] if cow else pc.exec_start[mid]) <= index:
            lo = mid + 1
        else:
            hi = mid
    i = lo - 1
    if i < first:
        return -1
    if cow:
        return i if pc.cow_start[i] <= index < pc.cow_end[i] else -1
    return i if pc.exec_start[i] <= index < pc.exec_end[i] else -1


@njit(cache=True)
def exec_vma(pc, f, index):
    """Entry of exec_start/exec_end of the VM_EXEC mapping covering page ``index``, or -1."""
    if pc.exec_off[f] == pc.exec_off[f + 1]:       # the file has none (most): no search
        return -1
    return vma_covering(pc, False, f, index)


@njit(cache=True)
def mapped_flags(pc, f, index):
    """What a fault or fault-around on page ``index`` leaves on its folio: mapped and young,
    plus VM_EXEC_MAPPED in an executable mapping; nothing in a copy-on-write range."""
    if pc.cow_off[f] != pc.cow_off[f + 1] and vma_covering(pc, True, f, index) >= 0:
        return 0
    if exec_vma(pc, f, index) >= 0:
        return PG_MAPPED | PTE_YOUNG | VM_EXEC_MAPPED
    return PG_MAPPED | PTE_YOUNG


# -- folios -------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def folio_order(pc, head):
    """The order of the folio at ``head`` (flags bits 12-15; a PG_FOREIGN folio's is 0)."""
    fl = np.int64(pc.flags[head])         # (int() of a uint16 is unsigned in numba)
    if fl & PG_FOREIGN:
        return np.int64(0)
    return fl >> FOLIO_ORDER_SHIFT


@njit(cache=True, inline="always")
def folio_nr_pages(pc, head):
    return 1 << folio_order(pc, head)


@njit(cache=True)
def folio_mark_accessed(pc, head):
    """Inactive, unreferenced -> referenced -> active (workingset_activation() ages)."""
    fl = int(pc.flags[head])
    if fl & PG_FOREIGN:
        return
    if not fl & PG_REFERENCED:
        pc.flags[head] = fl | PG_REFERENCED
    elif not fl & PG_ACTIVE:
        nr = folio_nr_pages(pc, head)
        lruvec_del_folio(pc, LRU_INACTIVE_FILE, head, nr)
        pc.flags[head] = (fl | PG_ACTIVE) & ~PG_REFERENCED
        lruvec_add_folio(pc, LRU_ACTIVE_FILE, head, nr)
        workingset_age_nonresident(pc, nr)


@njit(cache=True)
def folio_del_from_lru(pc, head):
    """Unlink the folio from its list (a PG_FOREIGN one is on none); return its pages."""
    nr = folio_nr_pages(pc, head)
    fl = int(pc.flags[head])
    if fl & PG_FOREIGN:
        return nr
    lruvec_del_folio(pc, LRU_ACTIVE_FILE if fl & PG_ACTIVE else LRU_INACTIVE_FILE, head, nr)
    return nr


@njit(cache=True)
def page_cache_delete(pc, head, nr):
    """Free the folio's slots (uncharged unless PG_FOREIGN): each becomes an empty value
    entry that remembers a folio was added there (a foreign folio's slot: if one was before
    it was preloaded)."""
    fl = int(pc.flags[head])
    entry = EMPTY_EVER
    if fl & PG_FOREIGN:
        if not fl & FOREIGN_EVER:
            entry = EMPTY
    else:
        pc.c[NR_PAGES] -= nr
    for s in range(head, head + nr):
        pc.head[s] = entry
    pc.flags[head] = 0


@njit(cache=True, inline="always")
def folio_writeback(pc, head, nr):
    """Write a dirty folio back (the caller clears PG_dirty)."""
    pc.c[PAGES_WRITTEN] += nr
    pc.c[NR_DIRTY] -= nr
    if pc.cc.checking:
        checker.pages_cleaned(pc.cc.ck, head, nr)


# -- a readahead window's disk requests (read_pages()) ------------------------------------------

@njit(cache=True)
def begin_read(pc):
    """Start collecting the folios a readahead window reads; False when one already is (an
    inner call joins it)."""
    if pc.c[IO_ACTIVE]:
        return False
    pc.c[IO_ACTIVE] = 1
    pc.c[IO_LEN] = 0
    return True


@njit(cache=True)
def account_read(pc, head, order, from_disk):
    """A folio was read in (``from_disk``, or restored): into the window's batch, or one
    request of its own when no window is collecting."""
    if pc.c[IO_ACTIVE]:
        n = pc.c[IO_LEN]
        if n >= len(pc.io_key):
            pc.c[ERROR] = ERR_IO_BATCH
            return
        pc.io_key[n] = (head << _IO_HEAD_SHIFT) | (order << _IO_ORDER_SHIFT) | (
            1 if from_disk else 0)
        pc.c[IO_LEN] = n + 1
        return
    pc.c[READ_REQUESTS_WITHOUT_CLEANCACHE] += 1
    if from_disk:
        pc.c[READ_REQUESTS] += 1


@njit(cache=True)
def end_read(pc):
    """Count the batch's requests: runs of contiguous folios read from disk, and the runs
    there would have been with no folio restored (a restored folio splits a run), in
    ``sorted()`` order of (head, nr, from_disk)."""
    pc.c[IO_ACTIVE] = 0
    n = pc.c[IO_LEN]
    pc.c[IO_LEN] = 0
    for i in range(1, n):                # insertion sort: a window adds in order
        k = pc.io_key[i]
        j = i - 1
        while j >= 0 and pc.io_key[j] > k:
            pc.io_key[j + 1] = pc.io_key[j]
            j -= 1
        pc.io_key[j + 1] = k
    prev_end = -1
    prev_disk = False
    for i in range(n):
        k = pc.io_key[i]
        head = k >> _IO_HEAD_SHIFT
        nr = 1 << ((k >> _IO_ORDER_SHIFT) & 15)
        disk = (k & 1) != 0
        joined = head == prev_end
        if not joined:
            pc.c[READ_REQUESTS_WITHOUT_CLEANCACHE] += 1
        if disk and not (joined and prev_disk):
            pc.c[READ_REQUESTS] += 1
        prev_end = head + nr
        prev_disk = disk
