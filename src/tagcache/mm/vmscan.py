"""Reclaim of file folios under a memory limit (mm/vmscan.c, one lruvec, no anon scan).

try_to_free_pages() is do_try_to_free_pages() for a memory cgroup's limit
(try_to_free_mem_cgroup_pages(): ``nr_to_reclaim = max(nr_pages, SWAP_CLUSTER_MAX)``). It lowers
the scan priority from DEF_PRIORITY (12) towards 0 until the pages reclaimed so far reach
``nr_to_reclaim``; at each priority shrink_lruvec() scans ``lru_size >> priority`` pages of each
list, SWAP_CLUSTER_MAX (32) at a time, and stops early only once the pages reclaimed *by this
call of shrink_lruvec()* reach the whole ``nr_to_reclaim`` (its local ``nr_reclaimed`` against
``sc->nr_to_reclaim``, cgroup reclaim: no proportional scan):

  * The active list is scanned only when deactivation is allowed (prepare_scan_control(), at
    every priority): the inactive list is low (inactive * int_sqrt(10 * GiB) < active,
    inactive_is_low()) or file refaults activated pages since the last reclaim's snapshot
    (snapshot_refaults()). If nothing at all was reclaimed and deactivation was skipped, the
    whole descent is retried with deactivation forced (sc->force_deactivate).
    shrink_active_list() isolates a batch from the active tail and moves it to the inactive
    head with PG_workingset set, clearing the PTE young bits (folio_referenced()).
  * shrink_inactive_list() isolates a batch of up to ``nr_to_scan`` pages from the inactive
    tail and keeps the folios a running readahead holds locked (``pc.locked``), then applies
    folio_check_references() to each: a mapped folio with a young PTE gets PG_referenced
    and is activated if it had PG_referenced already, is mapped executable, or is a large
    folio (more than one young PTE: referenced_ptes > 1, one PTE per mapped page), else kept
    (back to the inactive head); everything else is reclaimed, PG_referenced or not, except a folio
    that somebody holds a reference to (``pc.pinned``: the folio a fault, or the batch a
    read, holds while it runs async readahead): __remove_mapping() refuses it (refcount) and
    it goes back to the inactive head, unmapped, its PG_referenced consumed. Activation ages
    nonresident_age, as move_folios_to_lru() does.

Executable mappings (VM_EXEC_MAPPED, known only where the caller gives the VMAs): a young folio
of one is activated at its first inactive scan, and shrink_active_list() gives a young one
another trip round the active list instead of deactivating it (clearing its young bit), so
that code stays in memory under moderate pressure.

Departures: dirty folios met at the tail are written back synchronously and then reclaimed (the
kernel tags them PG_reclaim, lets the flusher write them and rotates them back to the tail);
PTE young bits set by the
CPU's own accesses to mapped pages are invisible in a trace, so PTE_YOUNG is set only by the
fault and map_pages events (filemap.py); no anon lists, so all pressure falls on the file
lists, as in a memory cgroup without swap; global (non-cgroup) reclaim's proportional scan at
DEF_PRIORITY is not modelled.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tagcache.mm.lru import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE
from tagcache.mm.page_flags import (
    PG_ACTIVE,
    PG_MAPPED,
    PG_REFERENCED,
    PG_WORKINGSET,
    PTE_YOUNG,
    VM_EXEC_MAPPED,
)

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
    refaults_changed = pc.ws.activate != pc.refaults_snapshot
    reclaimed = 0
    force_deactivate = False
    while True:
        skipped_deactivate = False
        for priority in range(DEF_PRIORITY, -1, -1):
            may_deactivate = force_deactivate or refaults_changed or inactive_is_low(pc)
            got, skipped = shrink_lruvec(pc, priority, nr_to_reclaim, may_deactivate)
            reclaimed += got
            skipped_deactivate |= skipped
            if reclaimed >= nr_to_reclaim or pc.nr_pages == 0:
                break
        if reclaimed or force_deactivate or not skipped_deactivate:
            break
        force_deactivate = True      # do_try_to_free_pages(): retry, forcing deactivation
    pc.refaults_snapshot = pc.ws.activate
    return reclaimed


def shrink_lruvec(pc: PageCache, priority: int, nr_to_reclaim: int,
                  may_deactivate: bool) -> tuple[int, bool]:
    """One priority's scan; returns (pages reclaimed, whether deactivation was skipped)."""
    lru = pc.lru
    nr_inactive = lru.nr_pages[LRU_INACTIVE_FILE] >> priority
    nr_active = lru.nr_pages[LRU_ACTIVE_FILE] >> priority
    reclaimed = 0
    skipped = False
    while nr_inactive > 0 or nr_active > 0:
        if nr_inactive > 0:
            n = min(nr_inactive, SWAP_CLUSTER_MAX)
            nr_inactive -= n
            reclaimed += shrink_inactive_list(pc, n)
        if nr_active > 0:
            n = min(nr_active, SWAP_CLUSTER_MAX)
            nr_active -= n
            if may_deactivate:
                shrink_active_list(pc, n)
            else:
                skipped = True           # shrink_list(): sc->skipped_deactivate
        if reclaimed >= nr_to_reclaim:
            break
    return reclaimed, skipped


def _isolate(pc: PageCache, lru_id: int, nr_to_scan: int) -> list[int]:
    """isolate_lru_folios(): take folios off the tail of ``lru_id`` until ``nr_to_scan``
    pages are taken (oldest first)."""
    lru = pc.lru
    taken: list[int] = []
    scanned = 0
    while scanned < nr_to_scan:
        head = lru.tail(lru_id)
        if head < 0:
            break
        nr = 1 << int(pc.order[head])
        scanned += nr
        lru.delete(lru_id, head, nr)
        taken.append(head)
    return taken


def shrink_active_list(pc: PageCache, nr_to_scan: int) -> None:
    lru, flags = pc.lru, pc.flags
    for head in _isolate(pc, LRU_ACTIVE_FILE, nr_to_scan):
        f = int(flags[head])
        nr = 1 << int(pc.order[head])
        if f & PTE_YOUNG and f & VM_EXEC_MAPPED:
            # Referenced executable folio: one more trip round the active list
            # (nr_rotated); move_folios_to_lru() ages nonresident for it.
            flags[head] = f & ~PTE_YOUNG
            lru.add(LRU_ACTIVE_FILE, head, nr)
            pc.ws.age_nonresident(nr)
            continue
        flags[head] = (f & ~(PG_ACTIVE | PTE_YOUNG)) | PG_WORKINGSET
        lru.add(LRU_INACTIVE_FILE, head, nr)


def shrink_inactive_list(pc: PageCache, nr_to_scan: int) -> int:
    lru, flags = pc.lru, pc.flags
    reclaimed = 0
    for head in _isolate(pc, LRU_INACTIVE_FILE, nr_to_scan):
        nr = 1 << int(pc.order[head])
        f = int(flags[head])
        if head in pc.locked:                   # folio_trylock() fails: I/O in flight
            lru.add(LRU_INACTIVE_FILE, head, nr)
            continue
        if f & PTE_YOUNG:                       # folio_check_references(), mapped folio
            # folio_set_referenced() either way: an activated folio keeps the mark, so that
            # once deactivated it is activated again by its next use.
            flags[head] = (f & ~PTE_YOUNG) | PG_REFERENCED
            # Activate if referenced before, if executable, or if more than one PTE was
            # young (referenced_ptes > 1): a mapped large folio has one PTE per page mapped.
            if f & (PG_REFERENCED | VM_EXEC_MAPPED) or nr > 1:
                flags[head] |= PG_ACTIVE
                lru.add(LRU_ACTIVE_FILE, head, nr)
                pc.ws.age_nonresident(nr)
            else:
                lru.add(LRU_INACTIVE_FILE, head, nr)
            continue
        if head in pc.pinned:
            # try_to_unmap() succeeds, __remove_mapping() fails on the extra reference:
            # keep_locked, back to the inactive head; PG_referenced was test-and-cleared.
            flags[head] = f & ~(PG_REFERENCED | PG_MAPPED | VM_EXEC_MAPPED)
            lru.add(LRU_INACTIVE_FILE, head, nr)
            continue
        pc.evict_folio(head)
        reclaimed += nr
    return reclaimed
