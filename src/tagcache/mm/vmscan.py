"""Reclaim of file folios under a memory limit (mm/vmscan.c, one lruvec, no anon scan).

try_to_free_pages() lowers the scan priority from DEF_PRIORITY (12) towards 0; at each
priority shrink_lruvec() scans ``lru_size >> priority`` pages of each list, SWAP_CLUSTER_MAX
(32) at a time, and stops once ``nr_to_reclaim`` pages are reclaimed:

  * The active list is scanned only when deactivation is allowed: the inactive list is low
    (inactive * int_sqrt(10 * GiB) < active, inactive_is_low()) or file refaults activated
    pages since the last reclaim (sc->may_deactivate). shrink_active_list() moves scanned
    folios to the inactive head with PG_workingset set, clearing their PTE young bits.
  * shrink_inactive_list() isolates folios from the inactive tail and applies
    folio_check_references(): a mapped folio with a young PTE is activated if it was also
    PG_referenced, else kept (rotated) with PG_referenced set; everything else is reclaimed.
    Activation ages nonresident_age, as move_folios_to_lru() does.

Departures: dirty folios met at the tail are written back synchronously and then reclaimed (the
kernel tags them PG_reclaim, lets the flusher write them and rotates them back to the tail);
VM_EXEC protection of mapped executables is not modelled; no anon lists, so all pressure falls
on the file lists, as in a memory cgroup without swap.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tagcache.mm.lru import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE
from tagcache.mm.page_flags import PG_ACTIVE, PG_REFERENCED, PG_WORKINGSET, PTE_YOUNG

if TYPE_CHECKING:
    from tagcache.mm.filemap import PageCache

DEF_PRIORITY = 12
SWAP_CLUSTER_MAX = 32



def inactive_is_low(pc: PageCache) -> bool:
    inactive, active = pc.lru.nr_pages[LRU_INACTIVE_FILE], pc.lru.nr_pages[LRU_ACTIVE_FILE]
    gb = (inactive + active) >> (30 - 12)
    ratio = math.isqrt(10 * gb) if gb else 1
    return inactive * ratio < active


def try_to_free_pages(pc: PageCache, nr_to_reclaim: int) -> int:
    """Reclaim at least ``nr_to_reclaim`` pages if possible; return pages reclaimed."""
    nr_to_reclaim = max(nr_to_reclaim, SWAP_CLUSTER_MAX)
    reclaimed = 0
    may_deactivate = pc.ws.activate != pc.refaults_snapshot or inactive_is_low(pc)
    for priority in range(DEF_PRIORITY, -1, -1):
        reclaimed += shrink_lruvec(pc, priority, nr_to_reclaim - reclaimed, may_deactivate)
        if reclaimed >= nr_to_reclaim or pc.nr_pages == 0:
            break
        may_deactivate = may_deactivate or inactive_is_low(pc)
    pc.refaults_snapshot = pc.ws.activate
    return reclaimed


def shrink_lruvec(pc: PageCache, priority: int, nr_to_reclaim: int, may_deactivate: bool) -> int:
    lru = pc.lru
    nr_inactive = lru.nr_pages[LRU_INACTIVE_FILE] >> priority
    nr_active = (lru.nr_pages[LRU_ACTIVE_FILE] >> priority) if may_deactivate else 0
    reclaimed = 0
    while nr_inactive > 0 or nr_active > 0:
        if nr_inactive > 0:
            n = min(nr_inactive, SWAP_CLUSTER_MAX)
            nr_inactive -= n
            reclaimed += shrink_inactive_list(pc, n)
        if nr_active > 0:
            n = min(nr_active, SWAP_CLUSTER_MAX)
            nr_active -= n
            shrink_active_list(pc, n)
        if reclaimed >= nr_to_reclaim:
            break
    return reclaimed


def shrink_active_list(pc: PageCache, nr_to_scan: int) -> None:
    lru, flags = pc.lru, pc.flags
    scanned = 0
    while scanned < nr_to_scan:
        head = lru.tail(LRU_ACTIVE_FILE)
        if head < 0:
            break
        nr = 1 << int(pc.order[head])
        scanned += nr
        lru.delete(LRU_ACTIVE_FILE, head, nr)
        f = int(flags[head])
        flags[head] = (f & ~(PG_ACTIVE | PTE_YOUNG)) | PG_WORKINGSET
        lru.add(LRU_INACTIVE_FILE, head, nr)


def shrink_inactive_list(pc: PageCache, nr_to_scan: int) -> int:
    lru, flags = pc.lru, pc.flags
    scanned = reclaimed = 0
    while scanned < nr_to_scan:
        head = lru.tail(LRU_INACTIVE_FILE)
        if head < 0:
            break
        nr = 1 << int(pc.order[head])
        scanned += nr
        lru.delete(LRU_INACTIVE_FILE, head, nr)
        f = int(flags[head])
        if f & PTE_YOUNG:                       # folio_check_references(), mapped folio
            f &= ~PTE_YOUNG
            if f & PG_REFERENCED:
                flags[head] = (f & ~PG_REFERENCED) | PG_ACTIVE
                lru.add(LRU_ACTIVE_FILE, head, nr)
                pc.ws.age_nonresident(nr)
            else:
                flags[head] = f | PG_REFERENCED
                lru.add(LRU_INACTIVE_FILE, head, nr)
            continue
        pc.evict_folio(head)
        reclaimed += nr
    return reclaimed
