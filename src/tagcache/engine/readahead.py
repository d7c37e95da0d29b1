"""Readahead windows (mm/readahead.c), compiled over the flat state of engine/pagecache.py, one
``file_ra_state`` per file (ra_start, ra_size, ra_async_size, ra_prev_pos, ra_mmap_miss,
ra_order).

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

The folios a readahead call adds stay locked (PG_LOCKED) until the call returns, as the
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

from numba import njit

from tagcache.engine.filemap_add import filemap_add_folio
from tagcache.engine.page_flags import PG_READAHEAD
from tagcache.engine.pagecache import (
    PG_LOCKED,
    begin_read,
    end_read,
    folio_at,
    page_cache_next_miss,
    page_cache_prev_miss,
    range_free,
)

MMAP_LOTSAMISS = 100


@njit(cache=True)
def bit_length(x):
    """int.bit_length()."""
    x = abs(x)
    n = 0
    while x:
        x >>= 1
        n += 1
    return n


@njit(cache=True)
def ffs0(x):
    """Index of the lowest set bit (-1 for 0), as readahead.py's ``_ffs``."""
    return bit_length(x & -x) - 1


@njit(cache=True)
def get_init_ra_size(size, max_pages):
    newsize = 1 << max(0, bit_length(size - 1))      # roundup_pow_of_two()
    if newsize <= max_pages // 32:
        return newsize * 4
    if newsize <= max_pages // 4:
        return newsize * 2
    return max_pages


@njit(cache=True)
def get_next_ra_size(cur, max_pages):
    if cur < max_pages // 16:
        return 4 * cur
    if cur <= max_pages // 2:
        return 2 * cur
    return max_pages


@njit(cache=True)
def unlock_folios(pc, f, first, end):
    """Unlock the folios of pages ``[first, end)`` of ``f`` (a window's, once read)."""
    b = pc.base[f]
    for s in range(b + first, b + end):
        h = int(pc.head[s])
        if h >= 0:
            pc.flags[h] = int(pc.flags[h]) & ~PG_LOCKED


@njit(cache=True)
def add_locked(pc, f, index, order, readahead):
    """Add one readahead folio (__GFP_NORETRY), locked until its window is read; False on
    -ENOMEM, which ends the window."""
    head = filemap_add_folio(pc, f, index, order, readahead, True, True)
    if head < 0:
        return False
    pc.flags[head] = int(pc.flags[head]) | PG_LOCKED
    return True


@njit(cache=True)
def do_page_cache_ra(pc, f, index, nr_to_read, lookahead_size):
    """Clip to EOF, then page_cache_ra_unbounded(): order-0 folios, skipping cached pages."""
    isize = pc.isize[f]
    if isize == 0 or index > isize - 1:
        return
    end_index = isize - 1
    if nr_to_read > end_index - index:
        nr_to_read = end_index - index + 1
    mark = index + nr_to_read - lookahead_size
    batch = begin_read(pc)
    i = index
    while i < index + nr_to_read:
        if folio_at(pc, f, i) < 0 and not add_locked(pc, f, i, 0, i == mark):
            break
        i += 1
    # The folios this call locked are all in [index, i); no outer call locked one there.
    unlock_folios(pc, f, index, i)
    if batch:
        end_read(pc)


@njit(cache=True)
def _ra_order_pass(pc, f, start, size, async_size, isize, max_order):
    """page_cache_ra_order()'s large-folio pass; returns (next index, whether the window
    is done: the pass reached its end or ran out of memory)."""
    index = start
    limit = min(isize - 1, start + size - 1)
    mark = start + size - async_size
    new_order = max(0, min(int(pc.ra_order[f]), max_order, bit_length(size) - 1))
    pc.ra_order[f] = new_order
    while index <= limit:
        order = new_order
        if index & ((1 << order) - 1):
            order = ffs0(index)
        while order > 0 and index + (1 << order) - 1 > limit:
            order -= 1
        if folio_at(pc, f, index) >= 0 or not range_free(pc, f, index, 1 << order):
            return index, False     # -EEXIST: the page-by-page pass does the rest
        if not add_locked(pc, f, index, order, 0 <= mark - index < (1 << order)):
            return index, True
        index += 1 << order
    return index, True


@njit(cache=True)
def page_cache_ra_order(pc, f, start):
    """Fill the window at ``start`` with folios of order ``ra_order`` (capped by the mapping
    and the window), naturally aligned, then the rest page by page."""
    size, async_size = pc.ra_size[f], pc.ra_async_size[f]
    isize = pc.isize[f]
    max_order = int(pc.max_order[f])
    index = start
    batch = begin_read(pc)
    done = False
    if max_order == 0:
        pc.ra_order[f] = 0
    elif isize > 0:
        index, done = _ra_order_pass(pc, f, start, size, async_size, isize, max_order)
    if not done and size > index - start:
        do_page_cache_ra(pc, f, index, size - (index - start), async_size)
    unlock_folios(pc, f, start, index)
    if batch:
        end_read(pc)


@njit(cache=True)
def page_cache_sync_ra(pc, f, index, req_count):
    """Readahead on a cache miss at ``index`` for a read of ``req_count`` pages."""
    ra_pages = pc.ra_pages
    if not ra_pages:
        do_page_cache_ra(pc, f, index, 1, 0)
        return
    max_pages = ra_pages
    prev_pos = pc.ra_prev_pos[f]
    prev_index = prev_pos >> 12 if prev_pos >= 0 else -1
    if (index == 0 or req_count > max_pages
            or (index - prev_index <= 1 and index >= prev_index)):
        size = get_init_ra_size(req_count, max_pages)
        pc.ra_start[f] = index
        pc.ra_size[f] = size
        pc.ra_async_size[f] = size - req_count if size > req_count else size >> 1
    else:
        miss = page_cache_prev_miss(pc, f, index - 1, max_pages)
        contig_count = index - miss - 1
        if contig_count <= req_count:
            do_page_cache_ra(pc, f, index, req_count, 0)   # standalone small random read
            return
        if miss < 0:
            contig_count *= 2          # cached from the start of the file: a long stream
        pc.ra_start[f] = index
        pc.ra_size[f] = min(contig_count + req_count, max_pages)
        pc.ra_async_size[f] = 1
    pc.ra_order[f] = 0
    page_cache_ra_order(pc, f, pc.ra_start[f])


@njit(cache=True)
def page_cache_async_ra(pc, f, index, order, req_count):
    """Readahead when a read reaches the PG_readahead folio at ``index`` of ``order``."""
    ra_pages = pc.ra_pages
    if not ra_pages:
        return
    h = folio_at(pc, f, index)
    if h >= 0:
        pc.flags[h] = int(pc.flags[h]) & ~PG_READAHEAD
    max_pages = ra_pages
    start, size, async_size = pc.ra_start[f], pc.ra_size[f], pc.ra_async_size[f]
    expected = (start + size - async_size) & ~((1 << order) - 1)
    if index == expected:
        start += size
        size = max(size, get_next_ra_size(size, max_pages))
    else:
        # Hit a marked folio without valid readahead state (interleaved reads).
        start = page_cache_next_miss(pc, f, index + 1, max_pages)
        if start <= 0 or start - index > max_pages:
            return
        size = get_next_ra_size(start - index + req_count, max_pages)
    ra_order = int(pc.ra_order[f]) + 2
    pc.ra_order[f] = ra_order
    align = 1 << min(ra_order, ffs0(max_pages))
    end = start + size
    aligned_end = end & ~(align - 1)
    if aligned_end > start:
        size -= end - aligned_end
    pc.ra_start[f] = start
    pc.ra_size[f] = size
    pc.ra_async_size[f] = size
    page_cache_ra_order(pc, f, start)


@njit(cache=True)
def do_sync_mmap_readahead(pc, f, index, vma):
    """Fault miss: read-around of ra_pages centred on ``index``, PG_readahead at
    ``start + size - size/4``; in the VM_EXEC mapping ``vma`` (an entry of exec_start /
    exec_end, -1 for none) a forward read of ra_pages from ``index`` clipped to the VMA, with
    no PG_readahead. None once ``mmap_miss`` passes MMAP_LOTSAMISS."""
    ra_pages = pc.ra_pages
    if not ra_pages:
        return
    if pc.ra_mmap_miss[f] < MMAP_LOTSAMISS * 10:
        pc.ra_mmap_miss[f] += 1
    if pc.ra_mmap_miss[f] > MMAP_LOTSAMISS:
        return
    if vma >= 0:
        start = max(index, pc.exec_start[vma])       # exec_folio_order() == 0: no rounding
        pc.ra_start[f] = start
        pc.ra_size[f] = min(start + ra_pages, pc.exec_end[vma]) - start
        pc.ra_async_size[f] = 0
    else:
        pc.ra_start[f] = max(0, index - ra_pages // 2)
        pc.ra_size[f] = ra_pages
        pc.ra_async_size[f] = ra_pages // 4
    pc.ra_order[f] = 0
    page_cache_ra_order(pc, f, pc.ra_start[f])


@njit(cache=True)
def do_async_mmap_readahead(pc, f, head_index, order, readahead_flag):
    """Fault hit: count down mmap_miss, and push the window on a PG_readahead folio."""
    ra_pages = pc.ra_pages
    if not ra_pages:
        return
    if pc.ra_mmap_miss[f]:
        pc.ra_mmap_miss[f] -= 1
    if readahead_flag:
        page_cache_async_ra(pc, f, head_index, order, ra_pages)
