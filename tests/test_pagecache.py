"""engine/filemap.py, readahead.py, pagecache.py (workingset), vmscan.py: what a user of the
page cache sees, and the cleancache hooks (store on eviction, restore on read, invalidate on
write/truncate)."""

from __future__ import annotations

import pytest

from tagcache.engine.cleancache import make_cleancache
from tagcache.engine.mmzone import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE
from tagcache.engine.page_flags import (
    PG_ACTIVE,
    PG_DIRTY,
    PG_MAPPED,
    PG_READAHEAD,
    PG_REFERENCED,
)
from tagcache.engine.pagecache import (
    NONRESIDENT_AGE,
    NR_ACTIVE_FILE,
    make_page_cache,
    workingset_age_nonresident,
    workingset_counts,
    workingset_eviction,
    workingset_refault,
)
from tagcache.engine.readahead import get_init_ra_size, get_next_ra_size
from tagcache.engine.rules import RULES
from tagcache.workloads.events import FileTable


def clean(s) -> dict[str, int]:
    return dict.fromkeys(RULES, 0)


def cached(pc, f):
    """Head index -> order of every folio of file ``f``."""
    b = int(pc.base[f])
    seg = pc.head[b:b + int(pc.state.span[f])]
    return {int(h) - b: int(pc.order[h]) for h in sorted(set(seg[seg >= 0].tolist()))}


# -- readahead ----------------------------------------------------------------------------------

@pytest.mark.parametrize("req, size", [(1, 4), (2, 4), (4, 8), (8, 16), (9, 32), (32, 32)])
def test_init_ra_size(req, size):
    assert get_init_ra_size(req, 32) == size


@pytest.mark.parametrize("cur, nxt", [(1, 4), (4, 8), (8, 16), (16, 32), (32, 32)])
def test_next_ra_size(cur, nxt):
    assert get_next_ra_size(cur, 32) == nxt


def test_sequential_read_from_zero_reads_ahead(make_system):
    s = make_system()
    pc, ra = s.pc, s.pc.ra
    pc.read(0, 0, 1)
    st = pc.stats
    assert (st.accesses, st.hits, st.misses) == (1, 0, 1)
    assert st.insertions == get_init_ra_size(1, 32) == 4
    assert st.pages_read == 4
    assert (int(ra.start[0]), int(ra.size[0]), int(ra.async_size[0])) == (0, 4, 3)
    assert pc.flags[s.slot(0, 1)] & PG_READAHEAD
    # Reading on reaches the PG_readahead page: the next window (x2) is read asynchronously.
    pc.read(0, 1, 1)
    assert (st.accesses, st.hits, st.misses) == (2, 1, 1)
    assert st.insertions == 4 + get_next_ra_size(4, 32) == 12
    assert (int(ra.start[0]), int(ra.size[0]), int(ra.async_size[0])) == (4, 8, 8)
    assert not pc.flags[s.slot(0, 1)] & PG_READAHEAD
    assert pc.flags[s.slot(0, 4)] & PG_READAHEAD
    assert cached(pc, 0) == {i: 0 for i in range(12)}


def test_big_reads_ramp_to_the_maximum_window(make_system):
    s = make_system()
    s.pc.read(0, 0, 8)
    assert s.pc.stats.insertions == 16                 # init window x2 for a medium read
    assert s.pc.flags[s.slot(0, 8)] & PG_READAHEAD     # async mark: size - req = 8 pages
    s2 = make_system()
    s2.pc.read(0, 0, 32)
    st = s2.pc.stats
    # One maximum window, and reaching its mark halfway reads the next one: all 64 pages.
    assert (st.accesses, st.misses, st.insertions, st.pages_read) == (32, 32, 64, 64)


def test_random_read_reads_only_the_page(make_system):
    s = make_system()
    s.pc.read(0, 40, 1)
    assert s.pc.stats.insertions == 1
    assert cached(s.pc, 0) == {40: 0}


def test_read_past_eof_is_clipped(make_system):
    s = make_system()
    s.pc.read(2, 14, 8)                                # file 2 has 16 pages
    assert s.pc.stats.accesses == 2
    assert max(cached(s.pc, 2)) <= 15
    s.pc.read(2, 16, 4)
    assert s.pc.stats.accesses == 2


def test_large_folio_readahead(make_system):
    s = make_system()
    for i in range(32):
        s.pc.read(1, i, 1)                             # file 1: 32 pages, large folios
    folios = cached(s.pc, 1)
    assert s.pc.stats.insertions == 32 == sum(1 << o for o in folios.values())
    assert max(folios.values()) > 0                    # the stream got large folios
    for index, order in folios.items():
        assert index % (1 << order) == 0               # naturally aligned
        assert order <= 4                              # max_folio_order
    assert s.pc.stats.hits > 0 and s.pc.stats.misses == 1
    s2 = make_system()
    for i in range(64):
        s2.pc.read(0, i, 1)                            # file 0 has no large folio support
    assert set(cached(s2.pc, 0).values()) == {0}


def test_fault_reads_around(make_system):
    s = make_system()
    s.pc.fault(0, 40)
    assert s.pc.stats.insertions == 32                 # ra_pages centred on the fault
    assert sorted(cached(s.pc, 0)) == list(range(24, 56))
    assert s.pc.flags[s.slot(0, 40)] & PG_MAPPED


def test_plain_lru_policy_evicts_exactly_the_tail(make_system):
    files = FileTable.build([1], [1], [16])
    s = make_system(files, limit=4, pc_policy="lru")
    for i in range(5):
        s.pc.read(0, i, 1)
    assert s.pc.stats.evictions == 1 and s.pc.stats.insertions == 5
    assert sorted(cached(s.pc, 0)) == [1, 2, 3, 4]
    assert s.cc.stats.stored == 1


# -- LRU, activation, refaults ------------------------------------------------------------------

def test_second_access_activates(make_system):
    s = make_system()
    pc = s.pc
    pc.read(0, 0, 1)
    h = s.slot(0, 0)
    assert pc.flags[h] & PG_REFERENCED and not pc.flags[h] & PG_ACTIVE
    pc.read(0, 1, 1)
    pc.read(0, 0, 1)                                   # mark_accessed() a second time
    assert pc.flags[h] & PG_ACTIVE and not pc.flags[h] & PG_REFERENCED
    assert pc.lru.nr_pages == [11, 1]
    assert h in list(pc.lru.walk(LRU_ACTIVE_FILE))
    assert h not in list(pc.lru.walk(LRU_INACTIVE_FILE))
    assert pc.ws.nonresident_age == 1                  # activation ages the workingset
    assert pc.verify() == []


def test_rereading_within_the_same_folio_does_not_activate(make_system):
    s = make_system()
    s.pc.read(0, 0, 1)
    s.pc.read(0, 0, 1)                                 # pos_same_folio(): no second mark
    assert not s.pc.flags[s.slot(0, 0)] & PG_ACTIVE
    assert s.pc.stats.hits == 1


def test_eviction_leaves_shadows_and_rereads_are_refaults(make_system):
    files = FileTable.build([1], [1], [128])
    s = make_system(files, limit=40, ra_pages=0)
    pc = s.pc
    for i in range(40):
        pc.read(0, i, 1)
    assert pc.stats.evictions == 0 and pc.nr_pages == 40
    pc.read(0, 40, 1)
    # One page over the limit: reclaim wants SWAP_CLUSTER_MAX (32) and, scanning down the
    # priorities, ends up evicting all 40 inactive pages.
    assert pc.stats.evictions == 40 and pc.nr_pages == 1
    assert int((pc.ws.shadow[:40] >= 0).sum()) == 40
    assert s.cc.stats.stored == 40
    pc.read(0, 0, 1)
    assert pc.stats.refaults == 1 and pc.stats.reinsertions == 1
    assert pc.ws.shadow[0] == -1                       # the shadow is consumed
    assert not pc.flags[0] & PG_ACTIVE                 # distance 40 > active list (0)
    assert s.cc.stats.restored == 1 and pc.stats.pages_read == 41
    assert s.walk() == clean(s)


def test_workingset_refault_distance():
    pc = make_page_cache(FileTable.build([1], [1], [8]), make_cleancache(), ra_pages=0,
                         max_folio_order=0)

    def ws():
        w = workingset_counts(pc)
        return w["refault"], w["activate"], w["restore"]

    workingset_eviction(pc, 0, 1, True)
    workingset_eviction(pc, 1, 1, False)
    workingset_age_nonresident(pc, 3)
    assert pc.c[NONRESIDENT_AGE] == 5
    # Page 0: distance 5 fits an active list of 5 -> activated, and it was workingset.
    pc.c[NR_ACTIVE_FILE] = 5
    assert tuple(workingset_refault(pc, 0, 1)) == (True, True)
    assert ws() == (1, 1, 1)
    # Page 1: distance 6 - 1 = 5 does not fit an active list of 4.
    pc.c[NR_ACTIVE_FILE] = 4
    assert tuple(workingset_refault(pc, 1, 1)) == (False, False)
    assert ws() == (2, 1, 1)
    pc.c[NR_ACTIVE_FILE] = 100
    assert tuple(workingset_refault(pc, 2, 1)) == (False, False)   # no shadow
    assert ws()[0] == 2


# -- dirty pages ------------------------------------------------------------------------------

def test_dirty_pages_are_written_back_then_stored_clean(make_system):
    files = FileTable.build([1], [1], [64])
    s = make_system(files, limit=8, ra_pages=0)
    pc, cc = s.pc, s.cc
    pc.write(0, 0, 4)                                  # full overwrite: nothing read
    assert (pc.stats.insertions, pc.stats.pages_read, pc.nr_dirty) == (4, 0, 4)
    assert all(pc.flags[s.slot(0, i)] & PG_DIRTY for i in range(4))
    for i in range(10, 18):
        pc.read(0, i, 1)
    # The 9th page does not fit: all 8 pages are reclaimed, the 4 dirty ones after writeback.
    assert pc.stats.evictions == 8
    assert pc.stats.pages_written == 4 and pc.nr_dirty == 0
    assert cc.stats.stored == 8
    assert s.violations()["no_dirty_store"] == 0
    pc.read(0, 0, 1)                                   # the written data comes back
    assert cc.stats.restored == 1 and pc.stats.pages_read == 8
    assert s.walk() == clean(s)


def test_reclaim_during_a_write_keeps_no_old_copy(make_system):
    files = FileTable.build([1], [1], [64])
    s = make_system(files, limit=4, ra_pages=0)
    for i in (2, 3, 10, 11):
        s.pc.read(0, i, 1)                             # the page cache is full (limit 4)
    # Page 0 is new: charging it reclaims everything, clean pages 2 and 3 included, before
    # the write reaches them; then pages 2 and 3 are overwritten in the page cache.
    s.pc.write(0, 0, 4)
    assert s.pc.stats.evictions == 4 and s.pc.nr_dirty == 4
    # No copy of what pages 0..3 held before the write may survive it.
    assert s.cc.cached == 2                            # pages 10 and 11
    assert s.backend.slot_tp[s.slot(0, 0):s.slot(0, 4)].tolist() == [-1] * 4
    assert s.walk() == clean(s)


def test_fsync_cleans_and_keeps_pages(make_system):
    s = make_system()
    s.pc.write(0, 0, 4)
    s.pc.fsync(0)
    assert s.pc.stats.pages_written == 4 and s.pc.nr_dirty == 0
    assert s.pc.nr_pages == 4
    assert not any(s.pc.flags[s.slot(0, i)] & PG_DIRTY for i in range(4))


def test_write_grows_the_file_up_to_its_span(make_system):
    s = make_system()
    s.pc.write(0, 70, 2)                               # file 0: 64 pages, span 96
    assert s.pc.isize_pages(0) == 72
    with pytest.raises(ValueError, match="past the span"):
        s.pc.write(0, 95, 2)


# -- invalidation -------------------------------------------------------------------------------

def test_write_invalidates_the_stored_copy(make_system):
    s = make_system()
    pc, cc = s.pc, s.cc.stats
    pc.read(0, 40, 1)
    s.evict(0, 40)
    assert cc.stored == 1 and s.cc.cached == 1
    pc.write(0, 40, 1)
    assert cc.invalidated == 1 and s.cc.cached == 0
    read0, hits0 = pc.stats.pages_read, pc.stats.hits
    pc.read(0, 40, 1)                                  # the new data, from the page cache
    assert pc.stats.hits == hits0 + 1
    assert cc.restored == 0 and pc.stats.pages_read == read0
    s.evict(0, 40)                                     # written back, stored again, fresh
    assert pc.stats.pages_written == 1 and cc.stored == 2
    pc.read(0, 40, 1)
    assert cc.restored == 1
    assert s.walk() == clean(s)


def test_truncate_invalidates_every_stored_copy_of_the_inode(make_system):
    """truncate_inode_pages_range() ends in cleancache_invalidate_inode(): copies below the
    new size go too."""
    s = make_system()
    pc, cc = s.pc, s.cc.stats
    for i in range(8, 16):
        pc.read(0, i, 1)
    for i in range(8, 16):
        s.evict(0, i)
    beyond = pc.nr_pages                               # readahead pages past 16, never stored
    assert beyond > 0 and min(cached(pc, 0)) >= 16
    keep = s.slot(0, 3)
    s.cc.store_folio(keep, 0, dirty=False)             # a copy below the new size
    assert cc.stored == 9
    pc.truncate(0, 8)
    assert cc.invalidated == 9 and s.cc.cached == 0
    assert pc.nr_pages == 0 and pc.isize_pages(0) == 8
    assert pc.stats.evictions == 8                     # truncation is not eviction
    assert (pc.ws.shadow[s.slot(0, 8):s.slot(0, 96)] == -1).all()
    pc.write(0, 15, 1)                                 # the file grows again
    read0 = pc.stats.pages_read
    pc.read(0, 8, 1)                                   # a hole: read from disk, not restored
    assert cc.restored == 0 and pc.stats.pages_read > read0
    assert s.walk() == clean(s)


def test_truncate_keeps_a_folio_straddling_the_new_eof(make_system):
    s = make_system()
    for i in (0, 4, 8):
        s.pc.add_folio(1, i, 2)                        # order-2 folios at 0, 4, 8
    s.pc.truncate(1, 6)
    assert cached(s.pc, 1) == {0: 2, 4: 2}
    assert s.pc.isize_pages(1) == 6 and s.pc.nr_pages == 8
    assert s.pc.verify() == []


def test_unlink_and_unmount_invalidate(make_system):
    s = make_system(ra_pages=0)
    for f in (0, 2):
        for i in range(4):
            s.pc.read(f, i, 1)
            s.evict(f, i)
    assert s.cc.cached == 8
    s.pc.unmount(2)                                    # file 2 is on device 2
    assert s.cc.stats.invalidated == 4 and s.cc.cached == 4
    assert s.pc.isize_pages(2) == 0 and s.pc.isize_pages(0) == 64
    s.pc.unlink(0)
    assert s.cc.stats.invalidated == 8 and s.cc.cached == 0
    assert s.walk() == clean(s)


def test_a_readahead_window_is_one_disk_request(make_system):
    s = make_system()
    pc = s.pc
    pc.read(0, 0, 4)                                   # the initial window: one request
    assert pc.stats.read_requests == pc.stats.read_requests_without_cleancache == 1
    pc.read(0, 40, 1)                                  # a random read of one page: one more
    assert pc.stats.read_requests == 2 and pc.stats.pages_read == pc.nr_pages


def test_a_restored_folio_splits_a_request_and_avoids_pages(make_system):
    s = make_system(limit=64)
    pc = s.pc
    pc.read(0, 10, 1)                                  # page 10 alone
    s.evict(0, 10)                                     # ... stored
    assert s.cc.cached == 1
    read0, req0 = pc.stats.pages_read, pc.stats.read_requests
    pc.read(0, 0, 16)                                  # window [0, 16): 10 comes from the copy
    assert s.cc.stats.restored == 1
    assert pc.stats.pages_read - read0 == pc.nr_pages - 1
    # Without cleancache: one request; with it: [0, 10) and [11, ...) are two.
    assert pc.stats.read_requests - req0 == 2
    assert pc.stats.read_requests_without_cleancache == 2   # page 10 alone, then the window
