"""filemap_add_folio() and the read that follows it (mm/filemap.c), compiled, over the flat
state of engine/pagecache.py.

A folio is charged first (try_charge_memcg(): readahead's __GFP_NORETRY allocations get one
reclaim pass, everything else the full retries), then added: a fill whose head slot has a
shadow entry is a refault and workingset_refault() decides whether it goes to the active
list with PG_workingset; every other insertion drops the slots' shadows. A fill is then read:
restored from cleancache whole (PG_RESTORED, no I/O) or from the disk, into the running
readahead window's batch of requests or as a request of its own. Its own module so that
readahead (which adds folios) and the system calls sit above it and reclaim below it.
"""

from __future__ import annotations

from numba import njit

from tagcache.engine.cleancache import cleancache_restore_folio
from tagcache.engine.mmzone import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE
from tagcache.engine.page_flags import PG_ACTIVE, PG_READAHEAD, PG_RESTORED, PG_WORKINGSET
from tagcache.engine.pagecache import (
    EMPTY,
    FOLIO_ORDER_SHIFT,
    INSERTIONS,
    NR_PAGES,
    PAGES_READ,
    REFAULTS,
    REINSERTIONS,
    account_read,
    has_shadow,
    lruvec_add_folio,
    workingset_forget,
    workingset_refault,
)
from tagcache.engine.vmscan import MAX_RECLAIM_RETRIES, MEMCG_NORETRY_RECLAIMS, try_charge_memcg


@njit(cache=True)
def filemap_add_folio(pc, f, index, order, readahead, fill, noretry):
    """Add a folio of ``order`` at page ``index`` of file ``f`` and, with ``fill``, read it
    in (without, it is created for a full overwrite). ``readahead`` gives it PG_readahead.
    Returns its head slot, or -1 when the charge failed (nothing added)."""
    nr = 1 << order
    if not try_charge_memcg(pc, nr, MEMCG_NORETRY_RECLAIMS if noretry else MAX_RECLAIM_RETRIES):
        return -1
    head = pc.base[f] + index
    if fill and has_shadow(pc, head):      # writes never refault (__GFP_WRITE)
        pc.c[REFAULTS] += nr
        active, workingset = workingset_refault(pc, head, nr)
    else:
        active = workingset = False
        workingset_forget(pc, head, head + nr)
    fl = (PG_ACTIVE if active else 0) | (PG_WORKINGSET if workingset else 0)
    if readahead:
        fl |= PG_READAHEAD
    again = 0
    fl |= order << FOLIO_ORDER_SHIFT
    for s in range(head, head + nr):      # the shadows are gone: EMPTY or EMPTY_EVER
        if pc.head[s] != EMPTY:
            again += 1
        pc.head[s] = head
    pc.flags[head] = fl
    lruvec_add_folio(pc, LRU_ACTIVE_FILE if active else LRU_INACTIVE_FILE, head, nr)
    pc.c[NR_PAGES] += nr
    pc.c[INSERTIONS] += nr
    pc.c[REINSERTIONS] += again
    pc.file_insertions[f] += nr
    pc.file_reinsertions[f] += again
    pc.file_orders[f, order] += 1
    if fill:
        from_disk = not cleancache_restore_folio(pc.cc, head, nr)
        if from_disk:
            pc.c[PAGES_READ] += nr
        else:
            pc.flags[head] = fl | PG_RESTORED
        account_read(pc, head, order, from_disk)
    return head
