"""The page cache's system calls and the trace loop (mm/filemap.c, mm/truncate.c), compiled:
read, get_pages, fault, map_pages, write, fsync, truncate, unlink and unmount over the flat
state of engine/pagecache.py.

replay_page_cache() runs a trace's page-cache events from its columns, dispatching on the op
code, and stops at the first event that is not the page cache's (tag storage, anonymous
memory, a capture's cgroup samples and kmem events), returning its index so that the caller
runs it and calls again from the next one. A read is a loop of filemap_get_pages() batches
(each what one ``mm_filemap_get_pages`` tracepoint reports): the cached folios contiguous
from the position, after sync readahead on a miss and async readahead at a PG_readahead
folio (the batch pinned meanwhile), then folio_mark_accessed() on each as the copy loop does.
A fault reads around on a miss and maps the folio; fault-around maps cached folios without
I/O; a write dirties (creating missing pages with nothing read); truncation frees the folios
past the new size and drops their shadows; unmount writes back and evicts every inode of a
device. The cleancache frontend is consulted exactly where the kernel's was: a clean, up-to-date
folio leaving the cache by reclaim is offered to it (store); a folio being read in asks it
first (restore, exclusive); writes, truncation and inode eviction invalidate.

Departures: in a copy-on-write range every fault and fault-around
is taken as a write (the page-cache folio is read but not left mapped); map_pages() marks an
already mapped folio young again. The invariant checker (engine/checker.py) hears of writes
and truncation here, of writeback in folio_writeback().
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tagcache.engine import checker
from tagcache.engine.checker import EVENT as CK_EVENT
from tagcache.engine.cleancache import (
    KIND_NONE,
    cleancache_invalidate_range,
)
from tagcache.engine.filemap_add import filemap_add_folio
from tagcache.engine.page_flags import (
    PG_DIRTY,
    PG_FOREIGN,
    PG_READAHEAD,
    PG_RESTORED,
    PG_WORKINGSET,
)
from tagcache.engine.pagecache import (
    ACCESSES,
    CACHED_SUM,
    CLEANCACHE_HITS,
    EMPTY,
    ERR_NO_ROOM,
    ERR_WRITE_PAST_SPAN,
    ERROR,
    ERROR_ARG,
    ERROR_EVENT,
    FOREIGN_EVER,
    HITS,
    MISSES,
    NR_DIRTY,
    PG_PINNED,
    STREAM_OFFSET,
    PageCacheState,
    exec_vma,
    folio_at,
    folio_del_from_lru,
    folio_mark_accessed,
    folio_nr_pages,
    folio_order,
    folio_writeback,
    mapped_flags,
    page_cache_delete,
    workingset_forget,
)
from tagcache.engine.readahead import (
    do_async_mmap_readahead,
    do_sync_mmap_readahead,
    page_cache_async_ra,
    page_cache_sync_ra,
)
from tagcache.engine.rules import CONSERVATION_INTERVAL
from tagcache.engine.tagstore import (
    EVICTED,
    INVALIDATED,
    NR_CACHED,
    RECLAIMED,
    RESTORED,
    STORED,
)
from tagcache.workloads.events import Op

OP_READ, OP_WRITE, OP_FAULT = int(Op.READ), int(Op.WRITE), int(Op.FAULT)
OP_MAP_PAGES, OP_TRUNCATE, OP_UNLINK = int(Op.MAP_PAGES), int(Op.TRUNCATE), int(Op.UNLINK)
OP_FSYNC, OP_UNMOUNT, OP_GET_PAGES = int(Op.FSYNC), int(Op.UNMOUNT), int(Op.GET_PAGES)
OP_KERNEL_ADD, OP_KERNEL_DELETE = int(Op.KERNEL_ADD), int(Op.KERNEL_DELETE)


# -- accounting of an access --------------------------------------------------------------------

@njit(cache=True)
def snapshot_present(pc, f, index, end):
    """Note in ``pc.present`` which pages of ``[index, end)`` are cached (before a read)."""
    b = pc.base[f]
    for i in range(index, end):
        pc.present[i - index] = 1 if pc.head[b + i] >= 0 else 0


@njit(cache=True)
def count_access(pc, f, index, end, snapshot):
    """Count an access of ``[index, end)``: hits are the pages cached before it (as
    snapshot_present() noted them, with ``snapshot``; else now), and a missed page now in
    a folio restored from cleancache was served without I/O (``cleancache_hits``)."""
    b = pc.base[f]
    n = end - index
    hits = 0
    if snapshot:
        for k in range(n):
            hits += int(pc.present[k])
    else:
        for s in range(b + index, b + end):
            if pc.head[s] >= 0:
                hits += 1
    pc.c[ACCESSES] += n
    pc.c[HITS] += hits
    pc.c[MISSES] += n - hits
    if snapshot and hits < n:
        for k in range(n):
            if not pc.present[k]:
                h = int(pc.head[b + index + k])
                if h >= 0 and int(pc.flags[h]) & PG_RESTORED:
                    pc.c[CLEANCACHE_HITS] += 1


# -- reads --------------------------------------------------------------------------------------

@njit(cache=True)
def _set_pinned(pc, b, first, last, on):
    """Set or clear PG_PINNED on the contiguous folios from head ``first`` to ``last``."""
    h = first
    while True:
        fl = int(pc.flags[h])
        pc.flags[h] = fl | PG_PINNED if on else fl & ~PG_PINNED
        if h == last:
            return
        h = int(pc.head[h + folio_nr_pages(pc, h)])


@njit(cache=True)
def filemap_get_batch(pc, f, pos, last_index):
    """filemap_get_pages() from ``pos`` then the copy loop's folio_mark_accessed() calls;
    returns the page after the batch, or -1 (ERR_NO_ROOM).

    The batch is the cached folios contiguous from ``pos``, ending at a hole, at the end of
    the request, or after a PG_readahead folio (filemap_get_read_batch()); a miss at ``pos``
    runs sync readahead first. When the batch's last folio has PG_readahead, async readahead
    runs before anything is copied, with the batch pinned. Then the copy loop marks the
    folios accessed, except the first when the previous read ended inside it
    (pos_same_folio())."""
    b = pc.base[f]
    end = min(last_index, pc.isize[f])
    h = int(pc.head[b + pos])
    if h < 0:
        page_cache_sync_ra(pc, f, pos, last_index - pos)
        h = int(pc.head[b + pos])
        if h < 0:                 # no readahead: filemap_create_folio()
            h = filemap_add_folio(pc, f, pos, 0, False, True, False)
            if h < 0:
                pc.c[ERROR] = ERR_NO_ROOM
                return -1
    first = h
    while True:                   # filemap_get_read_batch()
        nxt = h - b + folio_nr_pages(pc, h)
        if nxt >= end or int(pc.flags[h]) & PG_READAHEAD:
            break
        h2 = int(pc.head[b + nxt])
        if h2 < 0:
            break
        h = h2
    last = h
    if int(pc.flags[last]) & PG_READAHEAD:
        _set_pinned(pc, b, first, last, True)
        page_cache_async_ra(pc, f, last - b, folio_order(pc, last), last_index - (last - b))
        _set_pinned(pc, b, first, last, False)
    prev_pos = pc.ra_prev_pos[f]
    order = folio_order(pc, first)
    if prev_pos < 0 or ((prev_pos - 1) >> 12 >> order) != (pos >> order):
        folio_mark_accessed(pc, first)
    h = first
    while h != last:
        h = int(pc.head[h + folio_nr_pages(pc, h)])
        folio_mark_accessed(pc, h)
    nxt = last - b + folio_nr_pages(pc, last)
    pc.ra_prev_pos[f] = min(nxt, end) << 12
    return nxt


@njit(cache=True)
def filemap_read(pc, f, index, nr):
    """filemap_read() of pages ``[index, index + nr)``; the range may pass EOF."""
    end = min(index + nr, pc.isize[f])
    if index >= end:
        return
    snapshot_present(pc, f, index, end)
    pos = index
    while pos < end:
        pos = filemap_get_batch(pc, f, pos, index + nr)
        if pos < 0:
            return
    count_access(pc, f, index, end, True)


@njit(cache=True)
def filemap_get_pages(pc, f, index, nr):
    """One filemap_get_pages() call and the copy of its batch, as a tracepoint reports it:
    ``index`` is the read position, ``index + nr`` the page past the request."""
    end = min(index + nr, pc.isize[f])
    if index >= end:
        return
    snapshot_present(pc, f, index, end)
    nxt = filemap_get_batch(pc, f, index, index + nr)
    if nxt < 0:
        return
    last = max(index, min(nxt, end))
    count_access(pc, f, index, last, True)


# -- mappings -----------------------------------------------------------------------------------

@njit(cache=True)
def filemap_fault(pc, f, index):
    """filemap_fault() on page ``index`` of a shared file mapping: a hit counts down
    mmap_miss and may push the window (the folio pinned meanwhile), a miss reads around (or
    forward in a VM_EXEC mapping); the folio is left mapped and young."""
    if index >= pc.isize[f]:
        return
    b = pc.base[f]
    snapshot_present(pc, f, index, index + 1)
    vma = exec_vma(pc, f, index)
    h = folio_at(pc, f, index)
    if h >= 0:
        fl = int(pc.flags[h])
        pc.flags[h] = fl | PG_PINNED   # filemap_get_folio()'s reference, held through readahead
        do_async_mmap_readahead(pc, f, h - b, folio_order(pc, h), (fl & PG_READAHEAD) != 0)
        pc.flags[h] = int(pc.flags[h]) & ~PG_PINNED
    else:
        do_sync_mmap_readahead(pc, f, index, vma)
        h = folio_at(pc, f, index)
        if h < 0:
            h = filemap_add_folio(pc, f, index, 0, False, True, False)
            if h < 0:
                pc.c[ERROR] = ERR_NO_ROOM
                return
    pc.flags[h] = int(pc.flags[h]) | mapped_flags(pc, f, index)
    count_access(pc, f, index, index + 1, True)


@njit(cache=True)
def filemap_map_pages(pc, f, index, nr):
    """Fault-around maps cached, up-to-date folios without I/O, skipping PG_readahead ones;
    every page of the window in a folio it maps is an mmap hit unless the folio has
    PG_workingset (mmap_miss goes down by that many, not below 0)."""
    b = pc.base[f]
    end = min(index + nr, pc.isize[f])
    pos = index
    hits = 0
    mapped = mapped_flags(pc, f, index)
    while pos < end:
        h = int(pc.head[b + pos])
        if h < 0:
            pos += 1
            continue
        fl = int(pc.flags[h])
        nxt = h - b + folio_nr_pages(pc, h)
        if not fl & PG_READAHEAD:
            pc.flags[h] = fl | mapped
            if not fl & PG_WORKINGSET:
                hits += min(nxt, end) - pos
        pos = nxt
    pc.ra_mmap_miss[f] = max(0, int(pc.ra_mmap_miss[f]) - hits)


# -- writes and writeback -----------------------------------------------------------------------

@njit(cache=True)
def generic_perform_write(pc, f, index, nr):
    """Whole pages written: cached folios are dirtied, a missing page gets a new order-0
    folio with nothing read (a full overwrite). False, with ``pc.c[ERROR]`` set and nothing
    done, for a write past the file's span."""
    end = index + nr
    if end > pc.span[f]:
        pc.c[ERROR] = ERR_WRITE_PAST_SPAN
        pc.c[ERROR_ARG] = f
        return False
    count_access(pc, f, index, end, False)
    b = pc.base[f]
    pos = index
    while pos < end:
        h = int(pc.head[b + pos])
        if h < 0:
            h = filemap_add_folio(pc, f, pos, 0, False, False, False)
            if h < 0:
                pc.c[ERROR] = ERR_NO_ROOM
                return False
        nr_h = folio_nr_pages(pc, h)
        # The folio is now in the page cache, so reclaim cannot store it before it is dirty:
        # drop any stale copy of the pages written and only then change them.
        lo, hi = max(h, b + index), min(h + nr_h, b + end)
        cleancache_invalidate_range(pc.cc, lo, hi)
        if pc.cc.checking:
            checker.pages_written(pc.cc.ck, lo, hi)
        fl = int(pc.flags[h])
        if not fl & PG_DIRTY:
            pc.flags[h] = fl | PG_DIRTY
            pc.c[NR_DIRTY] += nr_h
        folio_mark_accessed(pc, h)
        pos = h - b + nr_h
    if end > pc.isize[f]:
        pc.isize[f] = end
    return True


@njit(cache=True)
def file_fsync(pc, f):
    """Write back every dirty folio of the file (they stay cached, now clean)."""
    s = pc.base[f]
    e = s + pc.span[f]
    while s < e:
        h = int(pc.head[s])
        if h < 0:
            s += 1
            continue
        nr = folio_nr_pages(pc, h)
        fl = int(pc.flags[h])
        if fl & PG_DIRTY:
            folio_writeback(pc, h, nr)
            pc.flags[h] = fl & ~PG_DIRTY
        s = h + nr


@njit(cache=True)
def truncate_inode_pages_range(pc, f, new_size):
    """Folios wholly past ``new_size`` are deleted (no shadow, dirty data discarded), their
    shadows dropped and the size set; a folio straddling the new EOF stays. Every stored copy
    of the inode is invalidated (cleancache_invalidate_inode())."""
    b = pc.base[f]
    old = pc.span[f]
    new_size = max(0, min(new_size, old))
    s = b + new_size
    while s < b + old:
        h = int(pc.head[s])
        if h < 0:
            s += 1
            continue
        nr = folio_nr_pages(pc, h)
        if h >= b + new_size:
            folio_del_from_lru(pc, h)
            if int(pc.flags[h]) & PG_DIRTY:
                pc.c[NR_DIRTY] -= nr    # truncated dirty data is discarded, by definition
            page_cache_delete(pc, h, nr)
        s = h + nr
    workingset_forget(pc, b + new_size, b + old)
    cleancache_invalidate_range(pc.cc, b, b + old)
    if pc.cc.checking:
        checker.pages_truncated(pc.cc.ck, b + new_size, b + old)
    pc.isize[f] = min(pc.isize[f], new_size)


@njit(cache=True)
def kill_block_super(pc, dev):
    """Unmount: write back and evict every inode of ``dev`` (invalidate_fs)."""
    for f in range(len(pc.dev)):
        if pc.dev[f] == dev:
            file_fsync(pc, f)
            truncate_inode_pages_range(pc, f, 0)
            pc.isize[f] = 0


@njit(cache=True)
def preload_foreign(pc, f, first, nr):
    """Pages ``[first, first + nr)`` of file ``f`` are resident before the trace and charged
    to another cgroup (PG_FOREIGN): hits that this cgroup never reclaims."""
    b = pc.base[f]
    end = min(first + nr, pc.span[f])
    for s in range(b + first, b + end):
        w = int(pc.head[s])
        if w < 0:                 # a folio replaces the slot's value entry (its shadow)
            pc.head[s] = s
            pc.flags[s] = PG_FOREIGN | (FOREIGN_EVER if w != EMPTY else 0)


# -- the loop -----------------------------------------------------------------------------------

@njit(cache=True)
def check_event(cc, i):
    """The checker's clock: event ``i`` is about to run; every CONSERVATION_INTERVAL events
    the counters are checked (rule 6, between events)."""
    ck = cc.ck
    if i > 0 and i % CONSERVATION_INTERVAL == 0:
        ck.c[CK_EVENT] = i - 1
        check_conservation(cc)
    ck.c[CK_EVENT] = i


@njit(cache=True)
def check_conservation(cc):
    """Rule 6 (conservation): the frontend's counters against the
    backend's own count of what it holds (nothing to check with no backend)."""
    if cc.kind == KIND_NONE:
        return
    c = cc.c
    # a non-exclusive backend keeps what it restores
    checker.conservation(cc.ck, c[STORED], c[RESTORED] if cc.exclusive else 0, c[INVALIDATED],
                         c[RECLAIMED], c[EVICTED], c[NR_CACHED])


@njit(cache=True)
def replay_page_cache(pc, op, a0, a1, a2, start, end):
    """Apply the page-cache events ``[start, end)`` of the columns; return the index of the
    first event that is not the page cache's (the caller's to run), or ``end``. KERNEL_ADD
    and KERNEL_DELETE (the kernel's own answer) are passed over. After each event consumed,
    cleancache_cached() is added to ``c[CACHED_SUM]``. On an error (``c[ERROR]``) the
    failing event's index is returned and put in ``c[ERROR_EVENT]``."""
    c = pc.c
    cc = pc.cc
    checking = cc.checking != 0
    backend = cc.kind != KIND_NONE
    ccc = cc.c
    for i in range(start, end):
        o = op[i]
        x = a0[i]
        if checking:
            check_event(cc, i + c[STREAM_OFFSET])
        if o == OP_READ:
            filemap_read(pc, x, a1[i], a2[i])
        elif o == OP_GET_PAGES:
            filemap_get_pages(pc, x, a1[i], a2[i])
        elif o == OP_FAULT:
            filemap_fault(pc, x, a1[i])
        elif o == OP_MAP_PAGES:
            filemap_map_pages(pc, x, a1[i], a2[i])
        elif o == OP_WRITE:
            generic_perform_write(pc, x, a1[i], a2[i])
        elif o == OP_TRUNCATE:
            truncate_inode_pages_range(pc, x, a1[i])
        elif o == OP_UNLINK:
            truncate_inode_pages_range(pc, x, 0)       # the inode evicted
        elif o == OP_FSYNC:
            file_fsync(pc, x)
        elif o == OP_UNMOUNT:
            kill_block_super(pc, x)
        elif o != OP_KERNEL_ADD and o != OP_KERNEL_DELETE:
            return i
        if c[ERROR]:
            c[ERROR_EVENT] = i
            return i
        if backend:                    # cleancache_cached(), its fields read once
            c[CACHED_SUM] += ccc[NR_CACHED]
    return end


def check_page_cache_error(pc: PageCacheState) -> None:
    """Raise for the error replay_page_cache() stopped on, the error cleared (ValueError for
    a write past a file's span, RuntimeError otherwise); nothing when there was none."""
    c = pc.c
    code = int(c[ERROR])
    if not code:
        return
    c[ERROR] = 0
    if code == ERR_WRITE_PAST_SPAN:
        raise ValueError(f"write past the span of file {int(c[ERROR_ARG])}")
    raise RuntimeError(f"page cache error {code} at event {int(c[ERROR_EVENT])}")


def replay_columns(pc: PageCacheState, op: np.ndarray, a0: np.ndarray, a1: np.ndarray,
                   a2: np.ndarray) -> None:
    """Every event of the columns that replay_page_cache() handles, skipping the others;
    raises on an error (tests and tools; the machine's loop interleaves)."""
    op = np.ascontiguousarray(op, np.uint8)
    a0, a1, a2 = (np.ascontiguousarray(a, np.int64) for a in (a0, a1, a2))
    i, n = 0, len(op)
    while i < n:
        i = replay_page_cache(pc, op, a0, a1, a2, i, n)
        check_page_cache_error(pc)
        i += 1
