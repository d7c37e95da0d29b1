"""Readahead windows (mm/readahead.c), compiled: mm/readahead.py over the flat state of
engine/pagecache.py, one file_ra_state per file (ra_start, ra_size, ra_async_size,
ra_prev_pos, ra_mmap_miss, ra_order).

A read that misses calls page_cache_sync_ra(): a window ``[start, start + size)`` with
PG_readahead at ``start + size - async_size``; reaching that folio calls
page_cache_async_ra(), which pushes the window on (``start += size``) and ramps it
(get_init_ra_size() / get_next_ra_size(), capped at ``ra_pages``). A non-sequential miss
with no cached history before it reads only the pages asked for. mmap faults read around
(do_sync_mmap_readahead(): ``ra_pages`` centred on the fault, or forward within a VM_EXEC
VMA). Large folios: page_cache_ra_order() fills the window with naturally aligned folios of
``ra_order`` (reset by sync readahead, +2 per async window), falling back to order 0 page
by page (page_cache_ra_unbounded()) at the first cached page. A window's folios stay locked
(PG_LOCKED) until it returns, and its allocations are __GFP_NORETRY: a failed charge ends it.

Departures (mm/readahead.py's, unchanged): one readahead state per file (the kernel has one
per open file); no congestion back-off; no per-device io_pages (``bdi->io_pages`` is taken
equal to ``ra_pages``); every mapping is non-executable unless the caller names its VM_EXEC
VMA; exec_folio_order() is 0 (as on x86); a retried fault (FAULT_FLAG_TRIED) runs
do_async_mmap_readahead() like any other.
"""

from __future__ import annotations

from numba import njit

from tagcache.engine.filemap_add import filemap_add_folio
from tagcache.engine.pagecache import (
    PG_LOCKED,
    begin_read,
    end_read,
    folio_at,
    page_cache_next_miss,
    page_cache_prev_miss,
    range_free,
)
from tagcache.mm.page_flags import PG_READAHEAD
from tagcache.mm.readahead import MMAP_LOTSAMISS


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
