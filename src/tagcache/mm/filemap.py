"""The page cache (mm/filemap.c): per-file page slots, folios of order 0..9, read and write.

Every file gets a run of *slots*, one per page index up to the most pages it ever holds, in one
global slot space (the stand-in for each mapping's xarray). A file's run starts at a multiple of
512 slots, so a folio's alignment in the file is its alignment in slot space. Per slot:

    head[slot]    head slot of the folio caching this page, -1 if not cached
    order[head]   folio order (0..9)          flags[head]   PG_* bits (mm/page_flags.py)
    shadow[slot]  workingset shadow entry (mm/workingset.py)

The cleancache frontend is consulted exactly where the kernel's was: a clean, up-to-date folio
leaving the cache by reclaim is offered to it (store); a folio being read in asks it first
(restore, exclusive); writes, truncation and inode eviction invalidate.

Capacity: page-cache folios are charged against a limit that the memory model supplies (the
memory cgroup's limit, or free memory less the anonymous pages); over it, try_to_free_pages()
runs before the new folio is added, as try_charge() does. Folios are accounted, not placed at
PFNs: only tagged pages need a PFN, because the PFN selects the tag block.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tagcache.mm import readahead as ra_mod
from tagcache.mm import vmscan
from tagcache.mm.lru import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE, LruLists
from tagcache.mm.page_flags import (
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
from tagcache.mm.workingset import Workingset

if TYPE_CHECKING:
    from tagcache.cleancache.frontend import Cleancache
    from tagcache.workloads.events import FileTable

MAX_PAGECACHE_ORDER = 9
MAX_RECLAIM_RETRIES = 16
"""try_charge_memcg(): reclaim passes before a charge gives up (then OOM)."""
MEMCG_NORETRY_RECLAIMS = 1
"""A __GFP_NORETRY charge (readahead) fails after one reclaim pass that leaves no room."""
PAGE_CACHE_POLICIES = ("kernel", "lru")
SLOT_ALIGN = 1 << MAX_PAGECACHE_ORDER


def _ranges(spec: Mapping[int, Sequence[tuple[int, int]]] | None
            ) -> dict[int, list[tuple[int, int]]]:
    """File -> sorted ``[start, end)`` page ranges, overlapping or adjacent ones merged."""
    out: dict[int, list[tuple[int, int]]] = {}
    for f, r in (spec or {}).items():
        merged: list[tuple[int, int]] = []
        for a, b in sorted((int(a), int(b)) for a, b in r if b > a):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        if merged:
            out[f] = merged
    return out


def _covering(ranges: list[tuple[int, int]] | None, index: int) -> tuple[int, int] | None:
    """The range of the sorted, disjoint ``ranges`` that holds ``index``, or None."""
    if not ranges:
        return None
    i = bisect_right(ranges, (index, 1 << 62)) - 1
    if i >= 0 and ranges[i][0] <= index < ranges[i][1]:
        return ranges[i]
    return None


@dataclass
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


class PageCache:
    """All files' page cache, the two file LRU lists, readahead state and workingset."""

    @staticmethod
    def slot_bases(files: FileTable) -> np.ndarray:
        """Each file's first slot, and the size of the slot space last (``len(files) + 1``
        entries): every file's span gets a run of slots aligned to 512."""
        span = np.asarray(files.span_pages, np.int64)
        base = np.zeros(len(span) + 1, np.int64)
        np.cumsum((span + SLOT_ALIGN - 1) // SLOT_ALIGN * SLOT_ALIGN, out=base[1:])
        return base

    @staticmethod
    def slots_needed(files: FileTable) -> int:
        """Size of the slot space for ``files`` (each run aligned to 512 slots)."""
        return int(PageCache.slot_bases(files)[-1])

    def __init__(self, files: FileTable, cleancache: Cleancache,
                 limit_pages: Callable[[], int], *, ra_pages: int = ra_mod.VM_READAHEAD_PAGES,
                 max_folio_order: int = 4, policy: str = "kernel",
                 exec_vmas: Mapping[int, Sequence[tuple[int, int]]] | None = None,
                 cow_vmas: Mapping[int, Sequence[tuple[int, int]]] | None = None) -> None:
        if policy not in PAGE_CACHE_POLICIES:
            raise ValueError(f"unknown page-cache policy {policy!r}; "
                             f"choose from {PAGE_CACHE_POLICIES}")
        self.policy = policy
        if policy == "lru":
            ra_pages, max_folio_order = 0, 0
        n = len(files)
        span = np.asarray(files.span_pages, np.int64)
        self.base = self.slot_bases(files)
        self.nr_slots = int(self.base[-1])
        self.span = span
        self.isize = np.asarray(files.size_pages, np.int64).copy()
        self.dev = files.dev
        self.file_max_order = np.where(np.asarray(files.large_folios, bool),
                                       min(max_folio_order, MAX_PAGECACHE_ORDER), 0)
        self.head = np.full(self.nr_slots, -1, np.int32)
        self.order = np.zeros(self.nr_slots, np.int8)
        self.flags = np.zeros(self.nr_slots, np.uint16)
        self.ever = np.zeros(self.nr_slots, bool)           # inserted at least once
        self.file_insertions = np.zeros(n, np.int64)         # per file, as stats counts them
        self.file_reinsertions = np.zeros(n, np.int64)
        # Folios added per file and order (validate's per-file order histograms).
        self.file_orders = np.zeros((n, MAX_PAGECACHE_ORDER + 2), np.int64)
        self.lru = LruLists(self.nr_slots)
        self.ws = Workingset(self.nr_slots)
        self.ra = ra_mod.RaState(n, ra_pages)
        self.cleancache = cleancache
        self.limit_pages = limit_pages
        self.nr_pages = 0
        self.nr_dirty = 0
        self.refaults_snapshot = 0
        self.pinned: set[int] = set()    # heads held by a running fault or read (vmscan.py)
        self.locked: set[int] = set()    # heads of a readahead window being read (readahead.py)
        self.stats = PageCacheStats()
        self.observer = None             # hears of writes, writeback, truncation (checker)
        self.io_batch: list[tuple[int, int, bool]] | None = None   # see begin_read()
        # File -> sorted, disjoint [start, end) page ranges mapped by VM_EXEC VMAs, and
        # mapped private and writable (copied on write, not left mapped).
        self.exec_vmas = _ranges(exec_vmas)
        self.cow_vmas = _ranges(cow_vmas)

    # -- lookups used by readahead ---------------------------------------------------------

    def exec_vma(self, f: int, index: int) -> tuple[int, int] | None:
        """The ``[vm_pgoff, vm_end_pgoff)`` of the executable mapping of ``f`` that covers
        page ``index``, or None when no VM_EXEC mapping covers it."""
        return _covering(self.exec_vmas.get(f), index)

    def mapped_flags(self, f: int, index: int) -> int:
        """What a fault or fault-around on page ``index`` leaves on its folio: mapped and
        young, plus VM_EXEC_MAPPED in an executable mapping; nothing in a copy-on-write range
        (the process maps its own copy, the page-cache folio was only read)."""
        if _covering(self.cow_vmas.get(f), index):
            return 0
        return PG_MAPPED | PTE_YOUNG | (VM_EXEC_MAPPED if self.exec_vma(f, index) else 0)

    def isize_pages(self, f: int) -> int:
        return int(self.isize[f])

    def max_folio_order(self, f: int) -> int:
        return int(self.file_max_order[f])

    def folio_at(self, f: int, index: int) -> int:
        """Head slot of the folio caching page ``index`` of file ``f``, or -1."""
        if index < 0 or index >= self.span[f]:
            return -1
        return int(self.head[self.base[f] + index])

    def range_free(self, f: int, index: int, nr: int) -> bool:
        """No page of ``[index, index + nr)`` is cached (a large folio may go there)."""
        b = int(self.base[f]) + index
        return not (self.head[b:b + nr] >= 0).any()

    def prev_miss(self, f: int, index: int, max_scan: int) -> int:
        """page_cache_prev_miss(): first uncached index at or below ``index``, or -1."""
        b = int(self.base[f])
        lo = max(0, index - max_scan + 1)
        seg = self.head[b + lo:b + index + 1]
        holes = np.flatnonzero(seg < 0)
        if len(holes):
            return lo + int(holes[-1])
        return lo - 1 if lo > 0 else -1

    def next_miss(self, f: int, index: int, max_scan: int) -> int:
        """page_cache_next_miss(): first uncached index at or above ``index``."""
        b = int(self.base[f])
        hi = min(index + max_scan, int(self.span[f]))
        seg = self.head[b + index:b + hi]
        holes = np.flatnonzero(seg < 0)
        return index + int(holes[0]) if len(holes) else hi

    def clear_readahead(self, f: int, index: int) -> None:
        h = self.folio_at(f, index)
        if h >= 0:
            self.flags[h] = int(self.flags[h]) & ~PG_READAHEAD

    # -- insertion and removal -------------------------------------------------------------

    def add_folio(self, f: int, index: int, order: int, *, readahead: bool = False,
                  fill: bool = True, noretry: bool = False) -> int:
        """filemap_add_folio() then read it in: restore from cleancache, else from disk.

        With ``fill=False`` the folio is created for a full overwrite and nothing is read.
        With ``noretry`` (readahead's allocations, readahead_gfp_mask(): __GFP_NORETRY) the
        charge gets one reclaim attempt and fails if that leaves no room: nothing is added
        and -1 is returned. Returns the head slot.
        """
        nr = 1 << order
        if not self.charge(nr, MEMCG_NORETRY_RECLAIMS if noretry else MAX_RECLAIM_RETRIES):
            return -1
        head = int(self.base[f]) + index
        ws = self.ws
        if fill and ws.shadow[head] >= 0:      # writes never refault (__GFP_WRITE)
            self.stats.refaults += nr
            active, workingset = ws.refault_check(head, nr, self.lru.nr_pages[LRU_ACTIVE_FILE])
            if self.policy == "lru":
                active = workingset = False
        else:
            active = workingset = False
            ws.forget(head, head + nr)
        fl = (PG_ACTIVE if active else 0) | (PG_WORKINGSET if workingset else 0)
        if readahead:
            fl |= PG_READAHEAD
        self.head[head:head + nr] = head
        self.order[head] = order
        self.flags[head] = fl
        self.lru.add(LRU_ACTIVE_FILE if active else LRU_INACTIVE_FILE, head, nr)
        self.nr_pages += nr
        st = self.stats
        st.insertions += nr
        if nr == 1:
            again = int(self.ever[head])
            self.ever[head] = True
        else:
            again = int(np.count_nonzero(self.ever[head:head + nr]))
            self.ever[head:head + nr] = True
        st.reinsertions += again
        self.file_insertions[f] += nr
        self.file_reinsertions[f] += again
        self.file_orders[f, order] += 1
        if fill:
            from_disk = not self.cleancache.restore_folio(head, nr)
            if from_disk:
                st.pages_read += nr
            else:
                self.flags[head] = fl | PG_RESTORED
            if self.io_batch is not None:
                self.io_batch.append((head, nr, from_disk))
            else:
                self._account_requests([(head, nr, from_disk)])
        return head

    def begin_read(self) -> bool:
        """Start collecting the folios a readahead window reads, to count its disk requests
        as read_pages() submits them: a run of contiguous folios is one request. False when
        a window is already collecting (an inner call joins it)."""
        if self.io_batch is not None:
            return False
        self.io_batch = []
        return True

    def end_read(self) -> None:
        batch, self.io_batch = self.io_batch, None
        if batch:
            self._account_requests(batch)

    def _account_requests(self, batch: list[tuple[int, int, bool]]) -> None:
        """Requests for one batch: runs of contiguous folios read from disk, and the runs
        there would have been with no folio restored from cleancache (a restored folio in
        the middle of a run splits it in two)."""
        batch.sort()
        st = self.stats
        prev_end, prev_disk = -1, False
        for head, nr, disk in batch:
            joined = head == prev_end
            if not joined:
                st.read_requests_without_cleancache += 1
            if disk and not (joined and prev_disk):
                st.read_requests += 1
            prev_end, prev_disk = head + nr, disk

    def charge(self, nr: int, retries: int = MAX_RECLAIM_RETRIES) -> bool:
        """try_charge_memcg(): reclaim until ``nr`` more pages fit under the limit, at most
        ``retries`` reclaim passes; False if they still do not fit.

        With full retries the kernel would OOM-kill at that point; the model charges anyway
        (the caller ignores the result), keeping the run going over the limit.
        """
        limit = self.limit_pages()
        excess = self.nr_pages + nr - limit
        if self.policy == "lru":
            while excess > 0 and self.nr_pages > 0:     # plain LRU: evict the tail, exactly
                tail = self.lru.tail(LRU_INACTIVE_FILE)
                excess -= 1 << int(self.order[tail])
                self._delete_from_lru(tail)
                self.evict_folio(tail)
            return True
        tries = 0
        while excess > 0 and self.nr_pages > 0:
            if tries == retries:
                return False
            vmscan.try_to_free_pages(self, excess)
            excess = self.nr_pages + nr - limit
            tries += 1
        return excess <= 0 or self.nr_pages == 0

    def evict_folio(self, head: int) -> None:
        """__remove_mapping() of an isolated folio: write back if dirty, offer to cleancache,
        leave a shadow, free the pages."""
        nr = 1 << int(self.order[head])
        fl = int(self.flags[head])
        if fl & PG_DIRTY:
            self.writeback(head, nr)
            fl &= ~PG_DIRTY
            self.flags[head] = fl
        # An up-to-date, clean folio is stored; anything else is invalidated.
        self.cleancache.store_folio(head, int(self.order[head]), dirty=bool(fl & PG_DIRTY))
        self.ws.eviction(head, nr, bool(fl & PG_WORKINGSET))
        self._free(head, nr)
        self.stats.evictions += nr

    def _free(self, head: int, nr: int) -> None:
        if not self.flags[head] & PG_FOREIGN:
            self.nr_pages -= nr
        self.head[head:head + nr] = -1
        self.flags[head] = 0
        self.order[head] = 0

    def _delete_from_lru(self, head: int) -> int:
        nr = 1 << int(self.order[head])
        if self.flags[head] & PG_FOREIGN:
            return nr
        lru = LRU_ACTIVE_FILE if self.flags[head] & PG_ACTIVE else LRU_INACTIVE_FILE
        self.lru.delete(lru, head, nr)
        return nr

    def writeback(self, head: int, nr: int) -> None:
        self.stats.pages_written += nr
        self.nr_dirty -= nr
        if self.observer is not None:
            self.observer.pages_cleaned(head, nr)

    def preload_foreign(self, f: int, first: int, nr: int) -> None:
        """Pages ``[first, first + nr)`` of file ``f`` are resident before the trace and
        charged to another cgroup (PG_FOREIGN): hits that this cgroup never reclaims."""
        b = int(self.base[f])
        end = min(first + nr, int(self.span[f]))
        for s in range(b + first, b + end):
            if self.head[s] < 0:
                self.head[s] = s
                self.order[s] = 0
                self.flags[s] = PG_FOREIGN

    # -- folio_mark_accessed ---------------------------------------------------------------

    def mark_accessed(self, head: int) -> None:
        """folio_mark_accessed(): inactive,unreferenced -> referenced -> active."""
        if self.flags[head] & PG_FOREIGN:
            return
        if self.policy == "lru":
            nr = 1 << int(self.order[head])
            self.lru.delete(LRU_INACTIVE_FILE, head, nr)
            self.lru.add(LRU_INACTIVE_FILE, head, nr)
            return
        fl = int(self.flags[head])
        if not fl & PG_REFERENCED:
            self.flags[head] = fl | PG_REFERENCED
        elif not fl & PG_ACTIVE:
            nr = 1 << int(self.order[head])
            self.lru.delete(LRU_INACTIVE_FILE, head, nr)
            self.flags[head] = (fl | PG_ACTIVE) & ~PG_REFERENCED
            self.lru.add(LRU_ACTIVE_FILE, head, nr)
            self.ws.age_nonresident(nr)        # workingset_activation()

    # -- the system calls ------------------------------------------------------------------

    def _present(self, f: int, index: int, end: int) -> np.ndarray:
        """Which pages of ``[index, end)`` are cached now (taken before an access)."""
        b = int(self.base[f])
        return self.head[b + index:b + end] >= 0

    def _count_access(self, f: int, index: int, end: int,
                      present: np.ndarray | None = None) -> None:
        """Count an access of ``[index, end)``: hits are the pages ``present`` before it
        (default: now), and a missed page now in a folio restored from cleancache was served
        without I/O (``cleancache_hits``)."""
        b = int(self.base[f])
        seg = self.head[b + index:b + end]
        if present is None:
            present = seg >= 0
        n = end - index
        hits = int(np.count_nonzero(present))
        st = self.stats
        st.accesses += n
        st.hits += hits
        st.misses += n - hits
        if hits < n:
            got = seg[~present]
            got = got[got >= 0]
            if len(got):
                st.cleancache_hits += int(np.count_nonzero(self.flags[got] & PG_RESTORED))

    def read(self, f: int, index: int, nr: int) -> None:
        """filemap_read() of pages ``[index, index + nr)``; the range may pass EOF.

        A loop of filemap_get_pages() batches, as the kernel's; each batch is what one
        ``mm_filemap_get_pages`` tracepoint reports.
        """
        end = self._read_end(f, index, nr)
        if end is None:
            return
        present = self._present(f, index, end)
        pos = index
        while pos < end:
            pos = self._get_pages_batch(f, pos, index + nr)
        self._count_access(f, index, end, present)

    def get_pages(self, f: int, index: int, nr: int) -> None:
        """One filemap_get_pages() call and the copy of its batch, as a tracepoint reports
        it: ``index`` is the read position, ``index + nr`` the page past the request."""
        end = self._read_end(f, index, nr)
        if end is None:
            return
        present = self._present(f, index, end)
        nxt = self._get_pages_batch(f, index, index + nr)
        last = max(index, min(nxt, end))
        self._count_access(f, index, last, present[:last - index])

    def _read_end(self, f: int, index: int, nr: int) -> int | None:
        """End of a read clipped to EOF, or None when there is nothing (more) to do: past
        EOF, or a plain-LRU page cache, which has served the read page by page."""
        end = min(index + nr, int(self.isize[f]))
        if index >= end:
            return None
        if self.policy == "lru":
            self._lru_access(f, index, end)
            return None
        return end

    def _lru_access(self, f: int, index: int, end: int) -> None:
        """Plain LRU, page by page (the libCacheSim reference): a hit moves the page to the
        head, a miss inserts it, the tail goes when full. No readahead, one list."""
        b = int(self.base[f])
        st = self.stats
        for s in range(b + index, b + end):
            st.accesses += 1
            if self.head[s] >= 0:
                st.hits += 1
                self.mark_accessed(s)
            else:
                st.misses += 1
                self.add_folio(f, s - b, 0)

    def _get_pages_batch(self, f: int, pos: int, last_index: int) -> int:
        """filemap_get_pages() from ``pos`` then the copy loop's folio_mark_accessed() calls.

        The batch is the cached folios contiguous from ``pos``, ending at a hole, at the end
        of the request, or after a PG_readahead folio (filemap_get_read_batch()); a miss at
        ``pos`` runs sync readahead first. When the batch's last folio has PG_readahead, async
        readahead runs before anything is copied, with the batch's folios held (``pinned``:
        reclaim during that readahead cannot free them). Then the copy loop marks the
        folios accessed, except the first when the previous read ended inside it
        (pos_same_folio()). Returns the page after the batch.
        """
        ra = self.ra
        b = int(self.base[f])
        end = min(last_index, int(self.isize[f]))
        h = int(self.head[b + pos])
        if h < 0:
            ra_mod.page_cache_sync_ra(self, f, pos, last_index - pos)
            h = int(self.head[b + pos])
            if h < 0:                 # no readahead: filemap_create_folio()
                h = self.add_folio(f, pos, 0)
        batch = [h]
        while True:                   # filemap_get_read_batch()
            nxt = h - b + (1 << int(self.order[h]))
            if nxt >= end or self.flags[h] & PG_READAHEAD:
                break
            h = int(self.head[b + nxt])
            if h < 0:
                break
            batch.append(h)
        last = batch[-1]
        if self.flags[last] & PG_READAHEAD:
            self.pinned.update(batch)
            try:
                ra_mod.page_cache_async_ra(self, f, last - b, int(self.order[last]),
                                           last_index - (last - b))
            finally:
                self.pinned.difference_update(batch)
        prev_pos = int(ra.prev_pos[f])
        order = int(self.order[batch[0]])
        if prev_pos < 0 or ((prev_pos - 1) >> 12 >> order) != (pos >> order):
            self.mark_accessed(batch[0])
        for h in batch[1:]:
            self.mark_accessed(h)
        nxt = last - b + (1 << int(self.order[last]))
        ra.prev_pos[f] = min(nxt, end) << 12
        return nxt

    def fault(self, f: int, index: int) -> None:
        """filemap_fault() on page ``index`` of a shared file mapping.

        A page inside one of the file's ``exec_vmas`` faults through a VM_EXEC mapping: a miss
        reads forward within the VMA (do_sync_mmap_readahead()) and the folio is marked
        VM_EXEC_MAPPED, which reclaim consults (vmscan.py). A page inside one of its
        ``cow_vmas`` is read but not left mapped (do_cow_fault() maps a copy).

        Departure: in a copy-on-write range every fault and fault-around is taken as a write
        (the kernel maps the file page on a read fault and unmaps it at the first write);
        a trace does not say which faults wrote.
        """
        if index >= self.isize[f]:
            return
        if self.policy == "lru":
            self._lru_access(f, index, index + 1)
            return
        present = self._present(f, index, index + 1)
        vma = self.exec_vma(f, index)
        h = self.folio_at(f, index)
        if h >= 0:
            fl = int(self.flags[h])
            self.pinned.add(h)        # filemap_get_folio()'s reference, held through readahead
            try:
                ra_mod.do_async_mmap_readahead(self, f, h - int(self.base[f]),
                                               int(self.order[h]), bool(fl & PG_READAHEAD))
            finally:
                self.pinned.discard(h)
        else:
            ra_mod.do_sync_mmap_readahead(self, f, index, vma)
            h = self.folio_at(f, index)
            if h < 0:
                h = self.add_folio(f, index, 0)
        self.flags[h] = int(self.flags[h]) | self.mapped_flags(f, index)
        self._count_access(f, index, index + 1, present)

    def map_pages(self, f: int, index: int, nr: int) -> None:
        """filemap_map_pages(): fault-around maps cached, up-to-date folios without I/O.

        Folios with PG_readahead are skipped, as next_uptodate_folio() does. The PTEs are
        made young (x86 semantics; arm64 makes prefaulted PTEs old). Every page of the window
        in a folio it maps counts as an mmap hit unless the folio has PG_workingset (recently
        evicted and refaulted): ``mmap_miss`` goes down by that many, not below 0
        (filemap_map_folio_range(), filemap_map_order0_folio()). A window in an executable
        mapping marks the folios it maps VM_EXEC_MAPPED; one in a copy-on-write range leaves
        them unmapped (see fault()).

        Departure: a folio already mapped is marked young again. The kernel leaves such a PTE
        alone (its young bit is whatever the CPU's accesses made it, which a trace does not
        show), but the model does not know which process mapped it or whether that process
        still runs, and a new process's fault-around makes young PTEs.
        """
        b = int(self.base[f])
        end = min(index + nr, int(self.isize[f]))
        if self.policy == "lru":
            return          # fault-around maps without an access of its own
        pos = index
        hits = 0
        mapped = self.mapped_flags(f, index)
        while pos < end:
            h = int(self.head[b + pos])
            if h < 0:
                pos += 1
                continue
            fl = int(self.flags[h])
            nxt = h - b + (1 << int(self.order[h]))
            if not fl & PG_READAHEAD:
                self.flags[h] = fl | mapped
                if not fl & PG_WORKINGSET:
                    hits += min(nxt, end) - pos
            pos = nxt
        ra = self.ra
        ra.mmap_miss[f] = max(0, int(ra.mmap_miss[f]) - hits)

    def write(self, f: int, index: int, nr: int) -> None:
        """generic_perform_write() of whole pages: cached folios are dirtied; a missing page
        gets a new order-0 folio with nothing read (a full overwrite)."""
        end = index + nr
        if end > self.span[f]:
            raise ValueError(f"write past the span of file {f}")
        self._count_access(f, index, end)
        b = int(self.base[f])
        pos = index
        while pos < end:
            h = int(self.head[b + pos])
            if h < 0:
                h = self.add_folio(f, pos, 0, fill=False)
            # The folio is now in the page cache, so reclaim cannot store it before it is
            # dirty: drop any stale copy of the pages written and only then change them.
            lo, hi = max(h, b + index), min(h + (1 << int(self.order[h])), b + end)
            self.cleancache.invalidate_range(lo, hi)
            if self.observer is not None:
                self.observer.pages_written(lo, hi)
            fl = int(self.flags[h])
            if not fl & PG_DIRTY:
                self.flags[h] = fl | PG_DIRTY
                self.nr_dirty += 1 << int(self.order[h])
            self.mark_accessed(h)
            pos = h - b + (1 << int(self.order[h]))
        if end > self.isize[f]:
            self.isize[f] = end

    def fsync(self, f: int) -> None:
        """Write back every dirty folio of the file (they stay cached, now clean)."""
        b, e = int(self.base[f]), int(self.base[f]) + int(self.span[f])
        heads = np.flatnonzero((self.head[b:e] == np.arange(b, e)) &
                               ((self.flags[b:e] & PG_DIRTY) != 0)) + b
        for h in heads.tolist():
            self.writeback(h, 1 << int(self.order[h]))
            self.flags[h] = int(self.flags[h]) & ~PG_DIRTY

    def truncate(self, f: int, new_size: int) -> None:
        """truncate_inode_pages_range() from ``new_size``: folios wholly past it are deleted
        (no shadow) and the file size set. A folio straddling the new EOF stays (its tail is
        zeroed in the kernel). Every stored copy of the inode is invalidated, before and past
        ``new_size`` alike: the function ends in cleancache_invalidate_inode() (Linux 3.0 to
        5.16, docs/semantics.md)."""
        b = int(self.base[f])
        old = int(self.span[f])
        new_size = max(0, min(new_size, old))
        seg = self.head[b + new_size:b + old]
        heads = np.unique(seg[seg >= 0])
        for h in heads.tolist():
            if h < b + new_size:
                continue
            nr = self._delete_from_lru(h)
            if self.flags[h] & PG_DIRTY:
                self.nr_dirty -= nr       # truncated dirty data is discarded, by definition
            self._free(h, nr)
        self.ws.forget(b + new_size, b + old)
        self.cleancache.invalidate_range(b, b + old)
        if self.observer is not None:
            self.observer.pages_truncated(b + new_size, b + old)
        self.isize[f] = min(int(self.isize[f]), new_size)

    def unlink(self, f: int) -> None:
        """Last reference gone: evict the inode (truncate to 0, cleancache_invalidate_inode)."""
        self.truncate(f, 0)

    def unmount(self, dev: int) -> None:
        """kill_block_super(): write back and evict every inode of ``dev``; invalidate_fs."""
        for f in np.flatnonzero(self.dev == dev).tolist():
            self.fsync(f)
            self.truncate(f, 0)
            self.isize[f] = 0

    # -- verification ----------------------------------------------------------------------

    def verify(self) -> list[str]:
        """Walk both lists and the slot arrays; return every inconsistency found."""
        errs: list[str] = []
        seen = 0
        for lru in (LRU_INACTIVE_FILE, LRU_ACTIVE_FILE):
            pages = 0
            for h in self.lru.walk(lru):
                nr = 1 << int(self.order[h])
                if bool(self.flags[h] & PG_ACTIVE) != (lru == LRU_ACTIVE_FILE):
                    errs.append(f"folio {h} on the wrong list")
                if not (self.head[h:h + nr] == h).all():
                    errs.append(f"folio {h}: slots do not point at their head")
                pages += nr
            if pages != self.lru.nr_pages[lru]:
                errs.append(f"lru {lru}: counted {pages} pages, recorded {self.lru.nr_pages[lru]}")
            seen += pages
        foreign = int(np.count_nonzero((self.flags & PG_FOREIGN) != 0))
        if seen != self.nr_pages or int((self.head >= 0).sum()) - foreign != self.nr_pages:
            errs.append(f"page count {self.nr_pages} disagrees with lists ({seen}) and slots")
        return errs
