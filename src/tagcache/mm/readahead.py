"""Readahead windows (mm/readahead.c), one ``file_ra_state`` per file.

Overview, after the kernel's own. A read that misses the page cache calls
page_cache_sync_ra(); it sets up a window ``[start, start + size)`` and marks the folio at
``start + size - async_size`` with PG_readahead. When a later read reaches that marked folio,
page_cache_async_ra() pushes the window forward (``start += size``) and ramps its size, so a
sequential stream keeps reading ahead of itself without ever missing::

    |<----------------------- size ------------------------>|
    |                              |<------- async_size ---->|
    ===#============================#=========================
       ^start                       ^PG_readahead  ->  next window starts at start+size

Window sizes follow get_init_ra_size() (x4 for small first reads, x2 for medium, else the
maximum) and get_next_ra_size() (x4 while small, x2 up to half the maximum, then the maximum),
capped at ``ra_pages`` (read_ahead_kb, 128 KiB = 32 pages by default).

A miss that is not sequential (``index - prev_index > 1``) looks back for cached history
(page_cache_prev_miss); with none, it is a standalone random read and only the requested pages
are read, leaving the window as it was. mmap faults use read-around instead: a window of
``ra_pages`` centred on the fault (do_sync_mmap_readahead).

Large folios (page_cache_ra_order): when the mapping supports them, windows are filled with
folios of order ``ra->order``, which sync readahead resets to 0 and each async window raises
by two (the async window's end is trimmed to that alignment), capped by the mapping and the
window size, naturally aligned, never past EOF; folios already in the cache stop the
large-folio pass and the rest is filled page by page (page_cache_ra_unbounded, which skips
cached pages). Follows Linux 6.16+ (ra->order), the kernel of this project's captures.

The folios a readahead call adds stay locked (``pc.locked``) until the call returns, as the
kernel's stay locked from filemap_add_folio() until read_pages() has submitted them and their
read has completed: reclaim that the same window's charges trigger cannot take them
(folio_trylock() fails in shrink_folio_list()), so a window never evicts its own pages.
Readahead allocates with __GFP_NORETRY (readahead_gfp_mask()): a folio whose charge finds no
room after one reclaim pass is not added, and the window ends there (-ENOMEM breaks
page_cache_ra_unbounded()); the page a read or fault needs is then added on its own, with the
full retries.

Departures: one readahead state per file (the kernel has one per open file); no congestion
back-off; no per-device io_pages (``bdi->io_pages`` is taken equal to ``ra_pages``); every
mapping is non-executable unless the caller names its VM_EXEC VMA (the capture sidecar's
``exec_mappings``; a trace alone says neither which mappings are executable nor where a VMA
ends). Since Linux 6.16 a fault miss in a VM_EXEC mapping reads forward from the faulting page
(``start = pgoff``, at most ``ra_pages``, never past the end of the VMA, ``async_size = 0``)
in folios of exec_folio_order(), which is 0 except on arm64 (64 KiB there); the model uses
order 0, as on the x86 machine of the captures. A retried fault (FAULT_FLAG_TRIED, after the
first attempt dropped mmap_lock for I/O) skips do_async_mmap_readahead() in the kernel, but is
replayed like any other fault.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tagcache.mm.filemap import PageCache

VM_READAHEAD_PAGES = 32     # 128 KiB / 4 KiB
MMAP_LOTSAMISS = 100


def roundup_pow_of_two(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def get_init_ra_size(size: int, max_pages: int) -> int:
    newsize = roundup_pow_of_two(size)
    if newsize <= max_pages // 32:
        return newsize * 4
    if newsize <= max_pages // 4:
        return newsize * 2
    return max_pages


def get_next_ra_size(cur: int, max_pages: int) -> int:
    if cur < max_pages // 16:
        return 4 * cur
    if cur <= max_pages // 2:
        return 2 * cur
    return max_pages


def _ffs(x: int) -> int:
    return (x & -x).bit_length() - 1


class RaState:
    """struct file_ra_state for every file, as arrays: start, size, async_size, prev_pos."""

    def __init__(self, nr_files: int, ra_pages: int = VM_READAHEAD_PAGES) -> None:
        self.ra_pages = ra_pages
        self.start = np.zeros(nr_files, np.int64)
        self.size = np.zeros(nr_files, np.int64)
        self.async_size = np.zeros(nr_files, np.int64)
        self.prev_pos = np.full(nr_files, -1, np.int64)   # bytes; -1 as after file_ra_state_init
        self.mmap_miss = np.zeros(nr_files, np.int32)
        self.order = np.zeros(nr_files, np.int8)          # ra->order (Linux 6.16+)

    def max_pages(self, req_count: int) -> int:
        """ractl_max_pages() with io_pages == ra_pages."""
        return self.ra_pages


def page_cache_sync_ra(pc: PageCache, f: int, index: int, req_count: int) -> None:
    """Readahead on a cache miss at ``index`` for a read of ``req_count`` pages."""
    ra = pc.ra
    if not ra.ra_pages:
        do_page_cache_ra(pc, f, index, 1, 0)
        return
    max_pages = ra.max_pages(req_count)
    prev_pos = int(ra.prev_pos[f])
    prev_index = prev_pos >> 12 if prev_pos >= 0 else -1
    if index == 0 or req_count > max_pages or index - prev_index <= 1 and index >= prev_index:
        size = get_init_ra_size(req_count, max_pages)
        ra.start[f] = index
        ra.size[f] = size
        ra.async_size[f] = size - req_count if size > req_count else size >> 1
    else:
        miss = pc.prev_miss(f, index - 1, max_pages)
        contig_count = index - miss - 1
        if contig_count <= req_count:
            do_page_cache_ra(pc, f, index, req_count, 0)   # standalone small random read
            return
        if miss < 0:
            contig_count *= 2          # cached from the start of the file: a long stream
        ra.start[f] = index
        ra.size[f] = min(contig_count + req_count, max_pages)
        ra.async_size[f] = 1
    ra.order[f] = 0
    page_cache_ra_order(pc, f, int(ra.start[f]))


def page_cache_async_ra(pc: PageCache, f: int, index: int, order: int, req_count: int) -> None:
    """Readahead when a read reaches the PG_readahead folio at ``index`` of order ``order``."""
    ra = pc.ra
    if not ra.ra_pages:
        return
    pc.clear_readahead(f, index)
    max_pages = ra.max_pages(req_count)
    start, size, async_size = int(ra.start[f]), int(ra.size[f]), int(ra.async_size[f])
    expected = (start + size - async_size) & ~((1 << order) - 1)
    if index == expected:
        start += size
        size = max(size, get_next_ra_size(size, max_pages))
    else:
        # Hit a marked folio without valid readahead state (interleaved reads).
        start = pc.next_miss(f, index + 1, max_pages)
        if start <= 0 or start - index > max_pages:
            return
        size = get_next_ra_size(start - index + req_count, max_pages)
    ra.order[f] = int(ra.order[f]) + 2
    align = 1 << min(int(ra.order[f]), _ffs(max_pages))
    end = start + size
    aligned_end = end & ~(align - 1)
    if aligned_end > start:
        size -= end - aligned_end
    ra.start[f], ra.size[f], ra.async_size[f] = start, size, size
    page_cache_ra_order(pc, f, start)


def _add_locked(pc: PageCache, f: int, index: int, order: int, readahead: bool,
                locked: list[int]) -> bool:
    """Add one readahead folio (__GFP_NORETRY charge), locked until its window is read;
    False on -ENOMEM, which ends the window."""
    head = pc.add_folio(f, index, order, readahead=readahead, noretry=True)
    if head < 0:
        return False
    locked.append(head)
    pc.locked.add(head)
    return True


def page_cache_ra_order(pc: PageCache, f: int, start: int) -> None:
    """Fill the window at ``start`` with folios of order ``ra->order`` (capped by the mapping
    and the window), naturally aligned, then the rest page by page."""
    ra = pc.ra
    size, async_size = int(ra.size[f]), int(ra.async_size[f])
    isize = pc.isize_pages(f)
    max_order = pc.max_folio_order(f)
    index = start
    locked: list[int] = []
    batch = pc.begin_read()
    try:
        if max_order == 0:
            ra.order[f] = 0
        elif isize > 0:
            limit = min(isize - 1, start + size - 1)
            mark = start + size - async_size
            new_order = max(0, min(int(ra.order[f]), max_order, size.bit_length() - 1))
            ra.order[f] = new_order
            while index <= limit:
                order = new_order
                if index & ((1 << order) - 1):
                    order = _ffs(index)
                while order > 0 and index + (1 << order) - 1 > limit:
                    order -= 1
                if pc.folio_at(f, index) >= 0 or not pc.range_free(f, index, 1 << order):
                    break      # -EEXIST: fall back to the page-by-page pass for the rest
                if not _add_locked(pc, f, index, order, 0 <= mark - index < (1 << order),
                                   locked):
                    return
                index += 1 << order
            else:
                return
        if size > index - start:
            do_page_cache_ra(pc, f, index, size - (index - start), async_size)
    finally:
        pc.locked.difference_update(locked)
        if batch:
            pc.end_read()


def do_page_cache_ra(pc: PageCache, f: int, index: int, nr_to_read: int,
                     lookahead_size: int) -> None:
    """Clip to EOF, then page_cache_ra_unbounded(): order-0 folios, skipping cached pages."""
    isize = pc.isize_pages(f)
    if isize == 0 or index > isize - 1:
        return
    end_index = isize - 1
    if nr_to_read > end_index - index:
        nr_to_read = end_index - index + 1
    mark = index + nr_to_read - lookahead_size
    locked: list[int] = []
    batch = pc.begin_read()
    try:
        for i in range(index, index + nr_to_read):
            if pc.folio_at(f, i) < 0 and not _add_locked(pc, f, i, 0, i == mark, locked):
                break
    finally:
        pc.locked.difference_update(locked)
        if batch:
            pc.end_read()


def do_sync_mmap_readahead(pc: PageCache, f: int, index: int,
                           exec_vma: tuple[int, int] | None = None) -> None:
    """Fault miss: mmap read-around of ra_pages centred on ``index`` (no VM_RAND/SEQ_READ),
    PG_readahead at ``start + size - size/4``; in a VM_EXEC mapping ``exec_vma`` =
    ``[vm_pgoff, vm_end_pgoff)``, a forward read of ra_pages from ``index`` clipped to the VMA,
    with no PG_readahead. None once ``mmap_miss`` passes MMAP_LOTSAMISS (fault-around hits
    bring it down)."""
    ra = pc.ra
    if not ra.ra_pages:
        return
    if ra.mmap_miss[f] < MMAP_LOTSAMISS * 10:
        ra.mmap_miss[f] += 1
    if ra.mmap_miss[f] > MMAP_LOTSAMISS:
        return
    if exec_vma is not None:
        start = max(index, exec_vma[0])          # exec_folio_order() == 0: no rounding
        ra.start[f] = start
        ra.size[f] = min(start + ra.ra_pages, exec_vma[1]) - start
        ra.async_size[f] = 0
    else:
        ra.start[f] = max(0, index - ra.ra_pages // 2)
        ra.size[f] = ra.ra_pages
        ra.async_size[f] = ra.ra_pages // 4
    ra.order[f] = 0
    page_cache_ra_order(pc, f, int(ra.start[f]))


def do_async_mmap_readahead(pc: PageCache, f: int, head_index: int, order: int,
                            readahead_flag: bool) -> None:
    """Fault hit: count down mmap_miss, and push the window on a PG_readahead folio."""
    ra = pc.ra
    if not ra.ra_pages:
        return
    if ra.mmap_miss[f]:
        ra.mmap_miss[f] -= 1
    if readahead_flag:
        page_cache_async_ra(pc, f, head_index, order, ra.ra_pages)
