"""The plain-LRU page cache (``--policy lru``) as one flat state and compiled step functions.

The first part of the compiled engine (issue 11): the libCacheSim reference policy, a page
cache that is one LRU list of order-0 pages with no readahead, in a memory cgroup of fixed
capacity. Its whole state is arrays indexed by page-cache slot (file ``f``'s page ``i`` is slot
``base[f] + i``), and its counters one int64 array indexed by the constants below::

    cached, dirty, ever, shadow   int8 per slot  (resident; PG_dirty; inserted before;
                                                  a workingset shadow entry is present)
    prev, next                    int32 per slot, + 1 sentinel: the list, newest first
    isize                         int64 per file (pages; writes grow it)

Step functions, named after the kernel's: :func:`filemap_read` (a read, a get_pages batch or a
fault: each page a hit or an insertion), :func:`filemap_add_folio` (charge, then insert at
the list's head; a fill reads the page from disk as one request),
:func:`shrink_tail` (evict from the tail while over the limit: dirty pages written back, a
shadow left), :func:`generic_perform_write`, :func:`truncate_inode_pages_range`,
:func:`file_fsync`; :func:`replay_lru` loops over a trace's columns and dispatches on the op
code. It reproduces ``PageCache(policy="lru")`` with no cleancache backend exactly, counter
for counter (tests/test_engine_lru.py runs both on the same traces, compiled and with
NUMBA_DISABLE_JIT=1); fault-around (map_pages) maps without an access of its own, as there.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tagcache.workloads.events import Op

ACCESSES, HITS, MISSES, INSERTIONS, REINSERTIONS, REFAULTS, EVICTIONS = range(7)
PAGES_READ, PAGES_WRITTEN, READ_REQUESTS, NR_PAGES, NR_DIRTY, ERROR_EVENT = range(7, 13)
NR_COUNTERS = 13
COUNTER_NAMES = ("accesses", "hits", "misses", "insertions", "reinsertions", "refaults",
                 "evictions", "pages_read", "pages_written", "read_requests")
"""Counters that PageCacheStats reports, in the order of the constants above."""

OP_READ, OP_WRITE, OP_FAULT = int(Op.READ), int(Op.WRITE), int(Op.FAULT)
OP_TRUNCATE, OP_UNLINK, OP_FSYNC = int(Op.TRUNCATE), int(Op.UNLINK), int(Op.FSYNC)
OP_UNMOUNT, OP_GET_PAGES = int(Op.UNMOUNT), int(Op.GET_PAGES)


@njit(cache=True)
def lru_add(prev, nxt, sentinel, s):
    """lruvec_add_folio(): link slot ``s`` at the head."""
    first = nxt[sentinel]
    nxt[s] = first
    prev[s] = sentinel
    prev[first] = s
    nxt[sentinel] = s


@njit(cache=True)
def lru_del(prev, nxt, s):
    """lruvec_del_folio()."""
    p, n = prev[s], nxt[s]
    nxt[p] = n
    prev[n] = p
    prev[s] = -1
    nxt[s] = -1


@njit(cache=True)
def shrink_tail(cached, dirty, shadow, prev, nxt, sentinel, c, excess):
    """Evict from the tail until ``excess`` pages are gone or nothing is left: a dirty page
    is written back first, every evicted page leaves a shadow (workingset_eviction())."""
    while excess > 0 and c[NR_PAGES] > 0:
        t = prev[sentinel]
        excess -= 1
        lru_del(prev, nxt, t)
        if dirty[t]:
            c[PAGES_WRITTEN] += 1
            c[NR_DIRTY] -= 1
            dirty[t] = 0
        shadow[t] = 1
        cached[t] = 0
        c[NR_PAGES] -= 1
        c[EVICTIONS] += 1


@njit(cache=True)
def filemap_add_folio(cached, dirty, ever, shadow, prev, nxt, sentinel, c, capacity, s,
                      fill):
    """Charge one page (evicting the tail while over ``capacity``), insert it at the head;
    ``fill`` reads it from disk (one request), else it is created for an overwrite."""
    shrink_tail(cached, dirty, shadow, prev, nxt, sentinel, c, c[NR_PAGES] + 1 - capacity)
    if fill and shadow[s]:
        c[REFAULTS] += 1
    shadow[s] = 0
    cached[s] = 1
    lru_add(prev, nxt, sentinel, s)
    c[NR_PAGES] += 1
    c[INSERTIONS] += 1
    c[REINSERTIONS] += ever[s]
    ever[s] = 1
    if fill:
        c[PAGES_READ] += 1
        c[READ_REQUESTS] += 1


@njit(cache=True)
def filemap_read(cached, dirty, ever, shadow, prev, nxt, sentinel, c, capacity, b, first,
                 end):
    """Pages ``[first, end)`` of the file at slot ``b``, one by one: a hit moves the page to
    the head (folio_mark_accessed()), a miss inserts it."""
    for s in range(b + first, b + end):
        c[ACCESSES] += 1
        if cached[s]:
            c[HITS] += 1
            lru_del(prev, nxt, s)
            lru_add(prev, nxt, sentinel, s)
        else:
            c[MISSES] += 1
            filemap_add_folio(cached, dirty, ever, shadow, prev, nxt, sentinel, c, capacity,
                              s, True)


@njit(cache=True)
def generic_perform_write(cached, dirty, ever, shadow, prev, nxt, sentinel, c, capacity, b,
                          first, end):
    """Whole pages written: counted as accesses (hits where cached), a missing page created
    with nothing read, every page dirtied and moved to the head."""
    for s in range(b + first, b + end):
        c[ACCESSES] += 1
        if cached[s]:
            c[HITS] += 1
        else:
            c[MISSES] += 1
    for s in range(b + first, b + end):
        if not cached[s]:
            filemap_add_folio(cached, dirty, ever, shadow, prev, nxt, sentinel, c, capacity,
                              s, False)
        if not dirty[s]:
            dirty[s] = 1
            c[NR_DIRTY] += 1
        lru_del(prev, nxt, s)
        lru_add(prev, nxt, sentinel, s)


@njit(cache=True)
def file_fsync(cached, dirty, c, b, span):
    """Write back every dirty page of the file; they stay cached, clean."""
    for s in range(b, b + span):
        if cached[s] and dirty[s]:
            c[PAGES_WRITTEN] += 1
            c[NR_DIRTY] -= 1
            dirty[s] = 0


@njit(cache=True)
def truncate_inode_pages_range(cached, dirty, shadow, prev, nxt, c, b, span, new_size):
    """Pages from ``new_size`` on are freed (dirty data discarded) and their shadows
    dropped; no eviction is counted."""
    for s in range(b + new_size, b + span):
        if cached[s]:
            lru_del(prev, nxt, s)
            if dirty[s]:
                c[NR_DIRTY] -= 1
                dirty[s] = 0
            cached[s] = 0
            c[NR_PAGES] -= 1
        shadow[s] = 0


@njit(cache=True)
def replay_lru(op, a0, a1, a2, base, span, isize, dev, capacity, cached, dirty, ever, shadow,
               prev, nxt, c):
    """Every file event of a trace through the plain-LRU page cache; other ops are skipped.
    Returns 0, or 1 with ``c[ERROR_EVENT]`` the index of a write past its file's span."""
    sentinel = len(prev) - 1
    for i in range(len(op)):
        o = op[i]
        if o == OP_READ or o == OP_GET_PAGES or o == OP_FAULT:
            f = a0[i]
            first = a1[i]
            end = first + 1 if o == OP_FAULT else first + a2[i]
            if end > isize[f]:
                end = isize[f]
            if first < end:
                filemap_read(cached, dirty, ever, shadow, prev, nxt, sentinel, c, capacity,
                             base[f], first, end)
        elif o == OP_WRITE:
            f = a0[i]
            end = a1[i] + a2[i]
            if end > span[f]:
                c[ERROR_EVENT] = i
                return 1
            generic_perform_write(cached, dirty, ever, shadow, prev, nxt, sentinel, c,
                                  capacity, base[f], a1[i], end)
            if end > isize[f]:
                isize[f] = end
        elif o == OP_FSYNC:
            f = a0[i]
            file_fsync(cached, dirty, c, base[f], span[f])
        elif o == OP_TRUNCATE or o == OP_UNLINK:
            f = a0[i]
            new_size = 0 if o == OP_UNLINK else min(max(a1[i], 0), span[f])
            truncate_inode_pages_range(cached, dirty, shadow, prev, nxt, c, base[f], span[f],
                                       new_size)
            if new_size < isize[f]:
                isize[f] = new_size
        elif o == OP_UNMOUNT:
            for f in range(len(dev)):
                if dev[f] == a0[i]:
                    file_fsync(cached, dirty, c, base[f], span[f])
                    truncate_inode_pages_range(cached, dirty, shadow, prev, nxt, c, base[f],
                                               span[f], 0)
                    isize[f] = 0
    return 0


class LruState:
    """The flat state of a plain-LRU page cache over a file table (slots as PageCache's)."""

    def __init__(self, base: np.ndarray, span: np.ndarray, isize: np.ndarray,
                 dev: np.ndarray, capacity: int) -> None:
        nr_slots = int(base[-1])
        self.base = np.ascontiguousarray(base[:-1], np.int64)
        self.span = np.ascontiguousarray(span, np.int64)
        self.isize = np.array(isize, np.int64)
        self.dev = np.ascontiguousarray(dev, np.int64)
        self.capacity = int(capacity)
        self.cached = np.zeros(nr_slots, np.int8)
        self.dirty = np.zeros(nr_slots, np.int8)
        self.ever = np.zeros(nr_slots, np.int8)
        self.shadow = np.zeros(nr_slots, np.int8)
        self.prev = np.full(nr_slots + 1, -1, np.int32)
        self.next = np.full(nr_slots + 1, -1, np.int32)
        self.prev[nr_slots] = self.next[nr_slots] = nr_slots
        self.counters = np.zeros(NR_COUNTERS, np.int64)

    def replay(self, op: np.ndarray, a0: np.ndarray, a1: np.ndarray, a2: np.ndarray) -> None:
        """Run the file events of these columns; ValueError on a write past a file's span."""
        if replay_lru(np.ascontiguousarray(op, np.uint8), np.ascontiguousarray(a0, np.int64),
                      np.ascontiguousarray(a1, np.int64), np.ascontiguousarray(a2, np.int64),
                      self.base, self.span, self.isize, self.dev, self.capacity, self.cached,
                      self.dirty, self.ever, self.shadow, self.prev, self.next,
                      self.counters):
            raise ValueError(f"event {int(self.counters[ERROR_EVENT])}: write past the span "
                             "of its file")

    def stats(self) -> dict[str, int]:
        return {name: int(self.counters[k]) for k, name in enumerate(COUNTER_NAMES)}
