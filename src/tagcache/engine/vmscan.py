"""Reclaim of file folios under the charge limit (mm/vmscan.c, one lruvec, no anon scan),
compiled over the flat state of engine/pagecache.py.

Capacity: page-cache folios are charged against a limit that the memory model supplies (the
memory cgroup's limit, or free memory less the anonymous pages); over it, reclaim runs before
the new folio is added, as try_charge() does. Folios are accounted, not placed at PFNs: only
tagged pages need a PFN, because the PFN selects the tag block.

try_charge_memcg() reclaims until ``nr`` more pages fit under ``c[LIMIT]``, at most
``retries`` passes of try_to_free_pages() (MEMCG_NORETRY_RECLAIMS for readahead's
__GFP_NORETRY allocations, MAX_RECLAIM_RETRIES otherwise). try_to_free_pages() is
do_try_to_free_pages() for a memory cgroup: priorities DEF_PRIORITY..0, at each
shrink_lruvec() scanning ``lru_size >> priority`` pages of each list SWAP_CLUSTER_MAX at a
time, until ``max(nr, SWAP_CLUSTER_MAX)`` pages are reclaimed; the active list only when
deactivation is allowed (inactive_is_low() or refaults since the last snapshot), with one
forced retry when nothing was reclaimed and deactivation was skipped.
shrink_inactive_list() keeps locked folios (a running readahead's: PG_LOCKED), activates or
keeps young mapped folios (folio_check_references()), keeps pinned ones unmapped
(PG_PINNED: __remove_mapping() fails on the extra reference) and reclaims the rest through
remove_mapping(): write back if dirty, offer to cleancache, leave a shadow, free.

Departures: dirty folios met at the tail are written back
synchronously and then reclaimed (the kernel tags them PG_reclaim, lets the flusher write
them and rotates them back to the tail); PTE young bits set by the CPU's own accesses to
mapped pages are invisible in a trace, so PTE_YOUNG is set only by the fault and map_pages
events; no anon lists, so all pressure falls on the file lists, as in a memory cgroup without
swap; global (non-cgroup) reclaim's proportional scan at DEF_PRIORITY is not modelled.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tagcache.engine.cleancache import cleancache_store_folio
from tagcache.engine.mmzone import (
    DEF_PRIORITY,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_FILE,
    SWAP_CLUSTER_MAX,
)
from tagcache.engine.page_flags import (
    PG_ACTIVE,
    PG_DIRTY,
    PG_MAPPED,
    PG_REFERENCED,
    PG_WORKINGSET,
    PTE_YOUNG,
    VM_EXEC_MAPPED,
)
from tagcache.engine.pagecache import (
    EVICTIONS,
    LIMIT,
    NR_ACTIVE_FILE,
    NR_INACTIVE_FILE,
    NR_PAGES,
    PG_LOCKED,
    PG_PINNED,
    REFAULTS_SNAPSHOT,
    WORKINGSET_ACTIVATE,
    folio_nr_pages,
    folio_order,
    folio_writeback,
    lru_tail,
    lruvec_add_folio,
    lruvec_del_folio,
    page_cache_delete,
    workingset_age_nonresident,
    workingset_eviction,
)

MAX_RECLAIM_RETRIES = 16
"""try_charge_memcg(): reclaim passes before a charge gives up (then OOM)."""
MEMCG_NORETRY_RECLAIMS = 1
"""A __GFP_NORETRY charge (readahead) fails after one reclaim pass that leaves no room."""


@njit(cache=True)
def remove_mapping(pc, head):
    """__remove_mapping() of an isolated folio: write back if dirty, offer it to cleancache,
    leave a shadow, free the pages."""
    nr = folio_nr_pages(pc, head)
    fl = int(pc.flags[head])
    if fl & PG_DIRTY:
        folio_writeback(pc, head, nr)
        fl &= ~PG_DIRTY
        pc.flags[head] = fl
    # An up-to-date, clean folio is stored; anything else is invalidated.
    cleancache_store_folio(pc.cc, head, folio_order(pc, head), (fl & PG_DIRTY) != 0,
                           (fl & PG_WORKINGSET) != 0)
    page_cache_delete(pc, head, nr)       # the shadow then takes the folio's slots
    workingset_eviction(pc, head, nr, (fl & PG_WORKINGSET) != 0)
    pc.c[EVICTIONS] += nr


@njit(cache=True)
def isolate_lru_folios(pc, lru, nr_to_scan):
    """Take folios off the tail of ``lru`` into ``pc.isolated`` (oldest first) until
    ``nr_to_scan`` pages are taken; return how many folios."""
    taken = 0
    scanned = 0
    while scanned < nr_to_scan:
        head = lru_tail(pc, lru)
        if head < 0:
            break
        nr = folio_nr_pages(pc, head)
        scanned += nr
        lruvec_del_folio(pc, lru, head, nr)
        pc.isolated[taken] = head
        taken += 1
    return taken


@njit(cache=True)
def shrink_active_list(pc, nr_to_scan):
    """Deactivate a batch from the active tail (PG_workingset set, young bits cleared); a
    young executable folio gets one more trip round the active list."""
    for k in range(isolate_lru_folios(pc, LRU_ACTIVE_FILE, nr_to_scan)):
        head = int(pc.isolated[k])
        f = int(pc.flags[head])
        nr = folio_nr_pages(pc, head)
        if f & PTE_YOUNG and f & VM_EXEC_MAPPED:
            pc.flags[head] = f & ~PTE_YOUNG
            lruvec_add_folio(pc, LRU_ACTIVE_FILE, head, nr)
            workingset_age_nonresident(pc, nr)
            continue
        pc.flags[head] = (f & ~(PG_ACTIVE | PTE_YOUNG)) | PG_WORKINGSET
        lruvec_add_folio(pc, LRU_INACTIVE_FILE, head, nr)


@njit(cache=True)
def shrink_inactive_list(pc, nr_to_scan):
    """Reclaim a batch from the inactive tail; return the pages reclaimed."""
    reclaimed = 0
    for k in range(isolate_lru_folios(pc, LRU_INACTIVE_FILE, nr_to_scan)):
        head = int(pc.isolated[k])
        nr = folio_nr_pages(pc, head)
        f = int(pc.flags[head])
        if f & PG_LOCKED:                       # folio_trylock() fails: I/O in flight
            lruvec_add_folio(pc, LRU_INACTIVE_FILE, head, nr)
            continue
        if f & PTE_YOUNG:                       # folio_check_references(), mapped folio
            # Referenced before, executable, or more than one young PTE: activate.
            if f & (PG_REFERENCED | VM_EXEC_MAPPED) or nr > 1:
                pc.flags[head] = (f & ~PTE_YOUNG) | PG_REFERENCED | PG_ACTIVE
                lruvec_add_folio(pc, LRU_ACTIVE_FILE, head, nr)
                workingset_age_nonresident(pc, nr)
            else:
                pc.flags[head] = (f & ~PTE_YOUNG) | PG_REFERENCED
                lruvec_add_folio(pc, LRU_INACTIVE_FILE, head, nr)
            continue
        if f & PG_PINNED:
            # __remove_mapping() fails on the extra reference: keep_locked, back to the
            # inactive head, unmapped; PG_referenced was test-and-cleared.
            pc.flags[head] = f & ~(PG_REFERENCED | PG_MAPPED | VM_EXEC_MAPPED)
            lruvec_add_folio(pc, LRU_INACTIVE_FILE, head, nr)
            continue
        remove_mapping(pc, head)
        reclaimed += nr
    return reclaimed


@njit(cache=True)
def shrink_lruvec(pc, priority, nr_to_reclaim, may_deactivate):
    """One priority's scan; return (pages reclaimed, whether deactivation was skipped)."""
    nr_inactive = pc.c[NR_INACTIVE_FILE] >> priority
    nr_active = pc.c[NR_ACTIVE_FILE] >> priority
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


@njit(cache=True)
def int_sqrt(x):
    r = int(np.sqrt(x))
    while r * r > x:
        r -= 1
    while (r + 1) * (r + 1) <= x:
        r += 1
    return r


@njit(cache=True)
def inactive_is_low(pc):
    inactive, active = pc.c[NR_INACTIVE_FILE], pc.c[NR_ACTIVE_FILE]
    gb = (inactive + active) >> (30 - 12)
    ratio = int_sqrt(10 * gb) if gb else 1
    return inactive * ratio < active


@njit(cache=True)
def try_to_free_pages(pc, nr_to_reclaim):
    """Reclaim at least ``nr_to_reclaim`` pages if possible; return the pages reclaimed."""
    nr_to_reclaim = max(nr_to_reclaim, SWAP_CLUSTER_MAX)
    refaults_changed = pc.c[WORKINGSET_ACTIVATE] != pc.c[REFAULTS_SNAPSHOT]
    reclaimed = 0
    force_deactivate = False
    while True:
        skipped_deactivate = False
        for priority in range(DEF_PRIORITY, -1, -1):
            may_deactivate = force_deactivate or refaults_changed or inactive_is_low(pc)
            got, skipped = shrink_lruvec(pc, priority, nr_to_reclaim, may_deactivate)
            reclaimed += got
            skipped_deactivate = skipped_deactivate or skipped
            if reclaimed >= nr_to_reclaim or pc.c[NR_PAGES] == 0:
                break
        if reclaimed or force_deactivate or not skipped_deactivate:
            break
        force_deactivate = True      # do_try_to_free_pages(): retry, forcing deactivation
    pc.c[REFAULTS_SNAPSHOT] = pc.c[WORKINGSET_ACTIVATE]
    return reclaimed


@njit(cache=True)
def try_charge_memcg(pc, nr, retries):
    """Reclaim until ``nr`` more pages fit under the limit, at most ``retries`` reclaim
    passes; False if they still do not fit."""
    limit = pc.c[LIMIT]
    excess = pc.c[NR_PAGES] + nr - limit
    tries = 0
    while excess > 0 and pc.c[NR_PAGES] > 0:
        if tries == retries:
            return False
        try_to_free_pages(pc, excess)
        excess = pc.c[NR_PAGES] + nr - limit
        tries += 1
    return excess <= 0 or pc.c[NR_PAGES] == 0
