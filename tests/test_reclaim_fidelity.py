"""Kernel details of reclaim and of the fault and read paths around it (mm/vmscan.c,
mm/filemap.c of Linux 6.18), each test naming the kernel code it follows, on the engine's page
cache (engine/vmscan.py, engine/filemap.py, engine/readahead.py)."""

from __future__ import annotations

from _uncompiled import run_uncompiled, uncompiled

from tagcache.engine import vmscan
from tagcache.engine.mmzone import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE, SWAP_CLUSTER_MAX
from tagcache.engine.page_flags import (
    PG_ACTIVE,
    PG_MAPPED,
    PG_READAHEAD,
    PG_REFERENCED,
    PG_WORKINGSET,
    PTE_YOUNG,
    VM_EXEC_MAPPED,
)
from tagcache.engine.pagecache import PG_PINNED, REFAULTS_SNAPSHOT
from tagcache.workloads.events import FileTable


def test_broken_engine_uncompiled():
    run_uncompiled(__file__, 1)


@uncompiled
def test_each_priority_compares_its_own_reclaim_with_the_whole_target(make_system,
                                                                       monkeypatch):
    # shrink_lruvec(): `nr_to_reclaim = sc->nr_to_reclaim` against its local nr_reclaimed,
    # not the part of the target still missing after the higher priorities.
    files = FileTable.build([1], [1], [256])
    s = make_system(files, limit=4096, ra_pages=0)
    for i in range(200):
        s.pc.read(0, i, 1)
    calls = []
    real = vmscan.shrink_lruvec

    def spy(pc, priority, nr_to_reclaim, may_deactivate):
        got = real(pc, priority, nr_to_reclaim, may_deactivate)
        calls.append((priority, nr_to_reclaim, got[0]))
        return got

    monkeypatch.setattr(vmscan, "shrink_lruvec", spy)
    reclaimed = vmscan.try_to_free_pages(s.pc.state, 1)   # asks for SWAP_CLUSTER_MAX
    assert calls
    assert {c[1] for c in calls} == {SWAP_CLUSTER_MAX}
    assert reclaimed == sum(c[2] for c in calls) >= SWAP_CLUSTER_MAX
    assert [c[0] for c in calls] == list(range(12, 12 - len(calls), -1))
    assert s.pc.verify() == []


def test_young_mapped_folio_is_kept_then_activated_and_keeps_pg_referenced(make_system):
    # folio_check_references(): young PTE -> folio_set_referenced(); first time KEEP, with
    # PG_referenced already set ACTIVATE (the mark stays on the activated folio).
    files = FileTable.build([1], [1], [64])
    s = make_system(files, ra_pages=0)
    pc = s.pc
    pc.fault(0, 5)
    h = s.slot(0, 5)
    assert pc.flags[h] & (PG_MAPPED | PTE_YOUNG) == PG_MAPPED | PTE_YOUNG
    vmscan.shrink_inactive_list(pc.state, 1)
    assert pc.flags[h] & PG_REFERENCED and not pc.flags[h] & (PTE_YOUNG | PG_ACTIVE)
    pc.map_pages(0, 0, 16)                             # a new fault-around makes it young
    vmscan.shrink_inactive_list(pc.state, 1)
    assert pc.flags[h] & PG_ACTIVE and pc.flags[h] & PG_REFERENCED
    assert pc.lru.nr_pages == [0, 1]
    # shrink_active_list() deactivates it (unmapped use is not checked) and leaves
    # PG_referenced: the next folio_mark_accessed() activates it at once.
    vmscan.shrink_active_list(pc.state, 1)
    assert pc.flags[h] & PG_WORKINGSET and not pc.flags[h] & PG_ACTIVE
    assert pc.flags[h] & PG_REFERENCED
    pc.mark_accessed(h)
    assert pc.flags[h] & PG_ACTIVE and not pc.flags[h] & PG_REFERENCED
    assert pc.verify() == []


def test_young_large_folio_mapped_by_several_ptes_is_activated_at_once(make_system):
    # folio_check_references(): `if (referenced_folio || referenced_ptes > 1)` ACTIVATE.
    # folio_referenced() counts every young PTE, one per mapped page: a large folio that
    # fault-around mapped has several, an order-0 folio mapped once has one (KEEP).
    files = FileTable.build([1], [1], [64], [64], [True])
    s = make_system(files, ra_pages=0)
    pc = s.pc
    big = pc.add_folio(0, 16, 2)                       # pages 16..19, one order-2 folio
    small = pc.add_folio(0, 32, 0)
    pc.map_pages(0, 16, 32)                            # both mapped, young
    assert pc.flags[big] & PTE_YOUNG and pc.flags[small] & PTE_YOUNG
    vmscan.shrink_inactive_list(pc.state, 5)
    assert pc.flags[big] & PG_ACTIVE and pc.flags[big] & PG_REFERENCED
    assert not pc.flags[small] & PG_ACTIVE and pc.flags[small] & PG_REFERENCED
    assert pc.lru.nr_pages == [1, 4]
    assert pc.verify() == []


def test_faulting_folio_is_held_through_async_mmap_readahead(make_system):
    # filemap_fault(): filemap_get_folio() holds a reference on the folio while
    # do_async_mmap_readahead() runs; reclaim in that readahead cannot free it
    # (__remove_mapping() refcount check) and puts it back on the inactive list.
    files = FileTable.build([1], [1], [64])
    s = make_system(files, limit=8, ra_pages=8)
    pc = s.pc
    pc.fault(0, 0)                                     # read-around: pages 0..7, mark on 6
    assert pc.stats.insertions == 8 and pc.flags[s.slot(0, 6)] & PG_READAHEAD
    pc.fault(0, 6)                                     # async readahead of 8..15: reclaim
    h = s.slot(0, 6)
    assert pc.folio_at(0, 6) == h
    assert pc.flags[h] & (PG_MAPPED | PTE_YOUNG) == PG_MAPPED | PTE_YOUNG
    assert not pc.flags[h] & PG_READAHEAD
    # Pages 0..5 and 7 make room for 8..14; the window's own folios are locked and the
    # faulting one is held, so the charge for page 15 finds none: -ENOMEM ends the window.
    assert [i for i in range(16) if pc.folio_at(0, i) >= 0] == [6, *range(8, 15)]
    assert pc.stats.insertions == 15 and pc.nr_pages <= 8
    assert not pc.pinned and not pc.locked
    assert pc.verify() == []


def test_read_batch_is_held_through_async_readahead_then_marked(make_system):
    # filemap_get_pages(): the batch's folios are held while filemap_readahead() runs on
    # its last (PG_readahead) folio; the copy loop marks them accessed afterwards.
    files = FileTable.build([1], [1], [64])
    s = make_system(files, limit=3, ra_pages=8)
    pc = s.pc
    pc.read(0, 0, 1)                                   # pages 0, 1; PG_readahead on 1
    assert pc.stats.insertions == 2 and pc.flags[s.slot(0, 1)] & PG_READAHEAD
    pc.read(0, 1, 1)                                   # async readahead of 2..3: reclaim
    h = s.slot(0, 1)
    assert pc.folio_at(0, 1) == h                      # held: not reclaimed
    assert pc.folio_at(0, 0) < 0                       # page 0 was reclaimed
    assert pc.stats.insertions == 4 and pc.nr_pages <= 3
    assert pc.flags[h] & PG_REFERENCED and not pc.flags[h] & PG_ACTIVE
    assert h in list(pc.lru.walk(LRU_INACTIVE_FILE))
    assert not pc.pinned
    assert pc.verify() == []


def test_nothing_reclaimable_without_deactivation_retries_with_it_forced(make_system):
    # do_try_to_free_pages(): nothing reclaimed and sc->skipped_deactivate -> retry from
    # DEF_PRIORITY with sc->force_deactivate.
    files = FileTable.build([1], [1], [64])
    s = make_system(files, ra_pages=0)
    pc = s.pc
    for _ in range(2):                                 # read twice: 10 active pages
        for i in range(10):
            pc.read(0, i, 1)
    for i in range(30, 50):                            # 20 inactive pages, all held
        pc.read(0, i, 1)
        pc.raw_flags[s.slot(0, i)] |= PG_PINNED
    assert pc.lru.nr_pages == [20, 10] and not vmscan.inactive_is_low(pc.state)
    pc.state.c[REFAULTS_SNAPSHOT] = pc.ws.activate
    reclaimed = vmscan.try_to_free_pages(pc.state, 1)
    assert reclaimed > 0
    assert all(pc.folio_at(0, i) >= 0 for i in range(30, 50))
    pc.raw_flags[:] &= 0xFFFF & ~PG_PINNED
    assert pc.verify() == []


def test_fault_around_counts_mmap_hits(make_system):
    # filemap_map_pages(): each page mapped from a folio without PG_workingset is a hit,
    # ra->mmap_miss -= hits (not below 0); PG_readahead folios are neither mapped nor hits.
    files = FileTable.build([1], [1], [64])
    s = make_system(files, ra_pages=0)
    pc = s.pc
    for i in range(8):
        pc.read(0, i, 1)
    pc.raw_flags[s.slot(0, 3)] |= PG_WORKINGSET
    pc.raw_flags[s.slot(0, 5)] |= PG_READAHEAD
    pc.state.ra_mmap_miss[0] = 10
    pc.map_pages(0, 0, 16)
    assert int(pc.ra.mmap_miss[0]) == 10 - 6
    assert not pc.flags[s.slot(0, 5)] & PG_MAPPED
    assert pc.flags[s.slot(0, 3)] & PG_MAPPED
    pc.map_pages(0, 0, 16)
    assert int(pc.ra.mmap_miss[0]) == 0
    assert pc.lru.nr_pages[LRU_ACTIVE_FILE] == 0


def test_fault_in_an_executable_mapping_reads_forward_within_the_vma(make_system):
    # do_sync_mmap_readahead(), Linux 6.16+: VM_EXEC -> start = pgoff (exec_folio_order() 0
    # on x86), end = min(start + ra_pages, end of the VMA), async_size = 0: no PG_readahead.
    files = FileTable.build([1, 1], [1, 2], [64, 64])
    s = make_system(files, ra_pages=32, exec_vmas={0: [(8, 24)]})
    pc = s.pc
    pc.fault(0, 12)
    assert [i for i in range(64) if pc.folio_at(0, i) >= 0] == list(range(12, 24))
    assert not any(pc.flags[s.slot(0, i)] & PG_READAHEAD for i in range(12, 24))
    assert pc.flags[s.slot(0, 12)] & VM_EXEC_MAPPED
    pc.fault(1, 12)                     # the same fault without VM_EXEC: read-around
    assert [i for i in range(64) if pc.folio_at(1, i) >= 0] == list(range(0, 32))
    assert pc.flags[s.slot(1, 24)] & PG_READAHEAD          # start + size - size / 4
    assert not pc.flags[s.slot(1, 12)] & VM_EXEC_MAPPED
    pc.fault(0, 40)                     # outside the VMA: an ordinary read-around
    assert pc.folio_at(0, 24) >= 0 and pc.folio_at(0, 55) >= 0
    assert pc.verify() == []


def test_young_executable_folio_is_activated_at_once_and_rotated_while_young(make_system):
    # folio_check_references(): young PTE and VM_EXEC -> FOLIOREF_ACTIVATE on the first scan.
    # shrink_active_list(): a referenced VM_EXEC file folio goes back to the active list
    # (its young bit cleared by folio_referenced()); not young, it is deactivated.
    files = FileTable.build([1], [1], [64])
    s = make_system(files, ra_pages=0, exec_vmas={0: [(0, 16)]})
    pc = s.pc
    pc.fault(0, 5)
    h = s.slot(0, 5)
    vmscan.shrink_inactive_list(pc.state, 1)
    assert pc.flags[h] & PG_ACTIVE and pc.lru.nr_pages == [0, 1]
    pc.map_pages(0, 0, 16)                             # the process touches it again
    vmscan.shrink_active_list(pc.state, 1)
    assert pc.flags[h] & PG_ACTIVE and not pc.flags[h] & PTE_YOUNG
    assert pc.lru.nr_pages == [0, 1]
    vmscan.shrink_active_list(pc.state, 1)                   # not young now: deactivated
    assert not pc.flags[h] & PG_ACTIVE and pc.flags[h] & PG_WORKINGSET
    assert pc.lru.nr_pages == [1, 0]
    assert pc.verify() == []


def test_readahead_window_never_evicts_its_own_pages(make_system):
    # page_cache_ra_unbounded(): the window's folios are locked from filemap_add_folio()
    # until their read completes; reclaim run by the window's own charges fails
    # folio_trylock() on them (shrink_folio_list(): keep) and takes older folios instead.
    files = FileTable.build([1, 1], [1, 2], [64, 64])
    s = make_system(files, limit=24, ra_pages=16)
    pc = s.pc
    pc.fault(1, 8)                                     # file 1: pages 0..15, mapped young
    pc.map_pages(1, 0, 16)
    pc.fault(0, 8)                                     # file 0: window 0..15 needs 8 more
    assert [i for i in range(16) if pc.folio_at(0, i) < 0] == []
    assert pc.stats.reinsertions == 0 and pc.stats.insertions == 32
    assert pc.nr_pages <= 24 and not pc.locked
    assert pc.verify() == []


def test_copy_on_write_range_is_read_but_not_left_mapped(make_system):
    # do_cow_fault(): filemap_fault() reads the page, the process maps a private copy; the
    # page-cache folio stays unmapped, so reclaim finds no young PTE and frees it at once.
    files = FileTable.build([1], [1], [64])
    s = make_system(files, ra_pages=0, exec_vmas={0: [(0, 16)]}, cow_vmas={0: [(16, 20)]})
    pc = s.pc
    pc.fault(0, 17)
    pc.map_pages(0, 16, 4)
    pc.fault(0, 5)                                     # text: mapped, young, executable
    cow, text = s.slot(0, 17), s.slot(0, 5)
    assert pc.flags[cow] & (PG_MAPPED | PTE_YOUNG | VM_EXEC_MAPPED) == 0
    assert pc.flags[text] & VM_EXEC_MAPPED and pc.flags[text] & PTE_YOUNG
    vmscan.shrink_inactive_list(pc.state, 2)
    assert pc.folio_at(0, 17) < 0 and pc.folio_at(0, 5) == text
    assert pc.flags[text] & PG_ACTIVE
    assert pc.verify() == []
