"""Bounds on the kernel's insertions that hold whatever its replacement did (validate's interval).

A capture of a program that works through mmap is censored: a fault event exists only where
the traced kernel had no PTE for the page, so accesses to pages the kernel kept mapped are
invisible, and a model that evicts different pages cannot see the accesses it would have missed
on (``Validation.censored``). For such captures ``tagcache validate`` reports an interval that
contains the kernel's counts for any replacement policy, from the access events alone:

Lower bound (demand paging and Belady's MIN). Every page a get_pages event asks for (within the
file) and every faulting page had to be in the page cache at that moment. Pages resident before
the command and charged to other cgroups (the sidecar's ``resident_at_start``) are left out:
the capture's reclaim never evicts them. Any schedule of insertions that keeps every demanded
page resident when it is accessed, with at most ``limit`` pages of these files resident at a
time, inserts at least as many pages as MIN (evict the page whose next use is farthest) does on
the same reference string with that capacity, prefetching (readahead) included: demand paging
with MIN is optimal in fetches (Belady 1966; Mattson et al. 1970). The cgroup's limit bounds
what these files can hold, so MIN's misses at ``limit`` pages bound the kernel's insertions from
below, and MIN's misses less the distinct demanded pages bound its re-insertions (each demanded
page's first insertion is not a re-insertion).

Upper bound (the kernel's readahead code). A filemap_get_pages() call inserts at most one
synchronous window (page_cache_sync_ra(): at most ``ra_pages``), one asynchronous window
(filemap_readahead() at a PG_readahead folio: at most ``ra_pages``) and one folio it creates
itself (filemap_create_folio(): one page, order-0 mapping minimum). A fault inserts at most its
read-around window (do_sync_mmap_readahead(): ``ra_pages``; a VM_HUGEPAGE mapping reads a PMD,
512 pages), one asynchronous window and the faulting page. filemap_map_pages() maps only pages
already uptodate and inserts nothing. So the kernel's insertions are at most the sum of those
per event, and its re-insertions at most that sum less the distinct demanded pages.

A write inserts at most the pages it names (captures with ext4's write_begin events); writes
only add insertions, so the lower bound holds with them too.

The upper bound is wide by nature (it assumes every event read as much as it could); its width
is reported. It assumes that the capture shows the command's writes to the files it reads
(ext4 write_begin events; a capture without them, of a command that writes what it reads, can
exceed it). Both assume that reads complete (a short read demands fewer pages than its
event's range) and that nothing outside the cgroup evicted pages charged elsewhere. They use
no add or delete event except for file sizes.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from tagcache.workloads.events import Op, Trace

HPAGE_PMD_NR = 512
"""Pages of a PMD-sized folio on x86-64 and arm64 with 4 KiB pages (VM_HUGEPAGE read-around)."""


@dataclass(frozen=True)
class Interval:
    insertions: tuple[int, int]
    reinsertions: tuple[int, int]
    demanded_pages: int
    """Distinct pages the access events demanded (not resident at the start)."""

    def contains(self, kernel: dict[str, int]) -> bool:
        return all(lo <= kernel[k] <= hi for k, (lo, hi) in
                   (("insertions", self.insertions), ("reinsertions", self.reinsertions)))

    def to_json(self) -> dict[str, list[int]]:
        return {"insertions": list(self.insertions), "reinsertions": list(self.reinsertions),
                "width": {"insertions": self.insertions[1] - self.insertions[0],
                          "reinsertions": self.reinsertions[1] - self.reinsertions[0]}}


def demanded_references(trace: Trace, size: np.ndarray, base: np.ndarray,
                        foreign: np.ndarray) -> np.ndarray:
    """Slot numbers of the pages the access events demand, in order: every page of a get_pages
    or read range within the file, every faulting page; foreign (charged elsewhere) left out;
    repeats of the same page back to back merged (they cannot change MIN's misses)."""
    m = np.isin(trace.op, np.array((Op.GET_PAGES, Op.READ, Op.FAULT), np.uint8))
    op, f = trace.op[m], trace.arg0[m].astype(np.int64)
    idx, nr = trace.arg1[m].astype(np.int64), trace.arg2[m].astype(np.int64)
    nr = np.where(op == Op.FAULT, 1, nr)
    end = np.minimum(idx + nr, size[f])
    n = np.maximum(end - idx, 0)
    keep = n > 0
    f, idx, n = f[keep], idx[keep], n[keep]
    total = int(n.sum())
    if not total:
        return np.zeros(0, np.int64)
    starts = np.repeat(base[f] + idx, n)
    offs = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
    refs = starts + offs
    refs = refs[~foreign[refs]]
    if len(refs) > 1:
        refs = refs[np.concatenate(([True], refs[1:] != refs[:-1]))]
    return refs


def next_use(refs: np.ndarray) -> np.ndarray:
    """For each reference, the position of the next reference to the same page (len if none)."""
    n = len(refs)
    order = np.argsort(refs, kind="stable")
    nxt = np.full(n, n, np.int64)
    same = refs[order[1:]] == refs[order[:-1]]
    nxt[order[:-1][same]] = order[1:][same]
    return nxt


def min_misses(refs: np.ndarray, capacity: int) -> int:
    """Misses of Belady's MIN with ``capacity`` pages on ``refs`` (demand paging)."""
    if capacity <= 0:
        return len(refs)
    nxt = next_use(refs).tolist()
    resident: dict[int, int] = {}       # page -> its next use
    heap: list[tuple[int, int]] = []    # (-next use, page), stale entries skipped
    misses = 0
    for i, page in enumerate(refs.tolist()):
        nu = nxt[i]
        if page not in resident:
            misses += 1
            if len(resident) >= capacity:
                while True:
                    neg, victim = heapq.heappop(heap)
                    if resident.get(victim) == -neg:
                        del resident[victim]
                        break
        resident[page] = nu
        heapq.heappush(heap, (-nu, page))
    return misses


def readahead_ceiling(trace: Trace, size: np.ndarray, ra_pages: int,
                      files: np.ndarray) -> int:
    """The most pages the access events on ``files`` could have inserted (module docstring);
    no window passes the end of the file, so a file's size caps each window too. A write
    (ext4 write_begin, where the capture has them) inserts at most the pages it names."""
    m = np.isin(trace.op, np.array((Op.GET_PAGES, Op.READ, Op.FAULT), np.uint8))
    m &= np.isin(trace.arg0, files)
    fsize = size[trace.arg0[m].astype(np.int64)]
    ra = max(int(ra_pages), 0)
    window = np.minimum(ra, fsize)
    around = np.where(trace.op[m] == Op.FAULT, np.minimum(max(ra, HPAGE_PMD_NR), fsize),
                      window)
    w = (trace.op == Op.WRITE) & np.isin(trace.arg0, files)
    return int((around + window + 1).sum()) + int(trace.arg2[w].sum())


def kernel_bounds(trace: Trace, files: np.ndarray, size: np.ndarray, base: np.ndarray,
                  foreign: np.ndarray, limit_pages: int, ra_pages: int) -> Interval:
    """The interval of the module docstring for the accessed ``files`` of ``trace``.

    ``size`` and ``base`` are per file (pages, first slot), ``foreign`` per slot (resident
    before the command, charged elsewhere), ``limit_pages`` the cgroup's limit in pages."""
    refs = demanded_references(trace, size, base, foreign)
    distinct = int(len(np.unique(refs)))
    low = min_misses(refs, limit_pages)
    high = max(readahead_ceiling(trace, size, ra_pages, files), low)
    return Interval((low, high), (max(0, low - distinct), max(0, high - distinct)), distinct)
