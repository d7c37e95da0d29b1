"""engine/cleancache.py + engine/tagstore.py: store, exclusive restore, eviction when full,
the two large-folio policies when tags claim a tag page, and the backend's own checks."""

from __future__ import annotations

import numpy as np
import pytest

from tagcache.engine.cleancache import make_cleancache, metadata_bytes_per_tag_page
from tagcache.engine.rules import RULES
from tagcache.engine.tagstore import BAD_EDGE_TP, BAD_EDGES, NR_CACHED, TP_CACHE, TP_FREE, TP_TAGS
from tagcache.hw.layout import simple_layout
from tagcache.workloads.events import FileTable

MIB, KIB = 1 << 20, 1 << 10
LARGE = 1            # tiny_files: file 1 supports large folios


def clean(s) -> dict[str, int]:
    return dict.fromkeys(RULES, 0)


# -- large folios hit by a tag claim ----------------------------------------------------------

def _large_folio_stored(s):
    """Readahead brings in an order-2 folio at page 0 of file 1; reclaim evicts it: its 4
    pages go to the first free tag pages, 0..3."""
    h = s.pc.add_folio(LARGE, 0, 2)
    assert s.pc.stats.pages_read == 4
    s.evict(LARGE, 0)
    assert s.cc.stats.stored == 4
    assert s.backend.slot_tp[h:h + 4].tolist() == [0, 1, 2, 3]
    return h


@pytest.mark.parametrize(
    "policy, block, reclaimed, collateral, cached_after, restored, read_again",
    [
        # 4 KiB blocks: block 0 is tag page 0, one page of the folio.
        # A folio is restored whole or not at all: split leaves copies that cannot be restored
        # on their own (the folio is read from disk and they are invalidated).
        ("whole", 4 * KIB, 4, 3, 0, 0, 4),
        ("split", 4 * KIB, 1, 0, 3, 0, 4),
        # 8 KiB blocks: block 0 is tag pages 0 and 1, two pages of the folio.
        ("whole", 8 * KIB, 4, 2, 0, 0, 4),
        ("split", 8 * KIB, 2, 0, 2, 0, 4),
    ])
def test_large_folio_policy(make_system, policy, block, reclaimed, collateral, cached_after,
                            restored, read_again):
    s = make_system(layout=simple_layout(64 * MIB, block), policy=policy)
    h = _large_folio_stored(s)
    unit = block // (4 * KIB)

    s.map_tagged([s.S])                              # block 0 now needs its tag pages
    cc = s.cc.stats
    assert cc.reclaimed == reclaimed
    assert cc.collateral == collateral
    assert s.cc.cached == cached_after
    assert s.backend.tp_state[:unit].tolist() == [TP_TAGS] * unit
    expect_rest = TP_FREE if policy == "whole" else TP_CACHE
    assert s.backend.tp_state[unit:4].tolist() == [expect_rest] * (4 - unit)
    assert s.tags.stats.dropped.tolist() == [reclaimed]
    assert s.tags.stats.reservation_failures == 0

    # Readahead brings the folio back: restored only if every page survived, else read.
    read0 = s.pc.stats.pages_read
    assert s.pc.add_folio(LARGE, 0, 2) == h
    assert s.cc.stats.restored == restored
    assert s.pc.stats.pages_read - read0 == read_again
    assert s.cc.cached == 0
    assert s.walk([s.S]) == clean(s)
    assert s.backend.verify() == [] and s.pc.verify() == []


def test_split_policy_leaves_the_rest_restorable(make_system):
    s = make_system(policy="split")
    h = _large_folio_stored(s)
    s.tags.set_ptes_at(np.array([s.S]))
    assert s.backend.restore_range(h, h + 4).tolist() == [h + 1, h + 2, h + 3]
    assert s.backend.restore_range(h, h + 4) is None
    assert s.backend.verify() == []


def test_whole_policy_frees_the_collateral_tag_pages(make_system):
    s = make_system(policy="whole")
    h = _large_folio_stored(s)
    s.tags.set_ptes_at(np.array([s.S]))
    assert s.backend.restore_range(h, h + 4) is None
    assert s.backend.nr_free == 511 and s.backend.cached_pages == 0


def test_reservation_with_two_folios_on_one_block(make_system, layout64_8k):
    # Two order-0 pages stored on tag pages 0 and 1 (one 8 KiB block): both go, no collateral.
    s = make_system(layout=layout64_8k)
    a, b = s.slot(0, 3), s.slot(0, 9)
    s.cc.store_folio(a, 0, dirty=False)
    s.cc.store_folio(b, 0, dirty=False)
    s.map_tagged([s.S])
    assert s.cc.stats.reclaimed == 2 and s.cc.stats.collateral == 0
    c = s.tags.costs
    assert s.tags.stats.latency.tolist() == [
        c.tag_lookup + 2 * (c.tag_page_claim + c.cmo_page) + 2 * c.cleancache_drop]
    assert s.violations() == clean(s)


# -- exclusive restore --------------------------------------------------------------------------

def test_restore_is_exclusive(make_system):
    s = make_system()
    slot = s.slot(0, 5)
    s.cc.store_folio(slot, 0, dirty=False)
    assert s.cc.cached == 1
    assert s.cc.restore_folio(slot, 1) == 1
    assert s.cc.restore_folio(slot, 1) == 0          # the copy went with the first hit
    cc = s.cc.stats
    assert (cc.stored, cc.skipped, cc.restored, cc.missed, cc.invalidated) == (1, 0, 1, 1, 0)
    assert s.cc.cached == 0
    assert s.backend.tp_state[0] == TP_FREE


def test_restore_through_the_page_cache_is_exclusive(make_system):
    s = make_system()
    s.pc.read(0, 40, 1)                              # random read: one page, from disk
    s.evict(0, 40)
    s.pc.read(0, 40, 1)                              # restored, no I/O
    assert s.pc.stats.pages_read == 1
    assert (s.cc.stats.stored, s.cc.stats.restored, s.cc.stats.missed) == (1, 1, 1)
    assert s.cc.cached == 0 and s.backend.slot_tp[s.slot(0, 40)] == -1
    assert s.walk() == clean(s)


def test_disabled_frontend_counts_nothing(make_system):
    s = make_system(backend=False)
    s.cc.store_folio(s.slot(0, 1), 0, dirty=False)
    assert s.cc.restore_folio(s.slot(0, 1), 1) == 0
    s.cc.invalidate_range(0, 10)
    assert not s.cc.enabled and s.cc.cached == 0
    counts = s.cc.stats.asdict()
    assert counts and counts == dict.fromkeys(counts, 0)


# -- a full tag storage -------------------------------------------------------------------------

@pytest.fixture
def small(make_system):
    """4 MiB of data memory: 32 tag pages in 32 blocks; one 256-page file."""
    files = FileTable.build([1], [1], [256])
    return make_system(files, layout=simple_layout(4 * MIB))


def test_store_when_full_evicts_the_oldest(small):
    s = small
    for i in range(32):
        s.cc.store_folio(s.slot(0, i), 0, dirty=False)
    assert s.backend.nr_free == 0 and s.cc.cached == 32
    s.cc.store_folio(s.slot(0, 100), 0, dirty=False)
    assert s.backend.evicted == 1 and s.cc.cached == 32
    assert s.cc.restore_folio(s.slot(0, 0), 1) == 0       # the oldest went
    assert s.cc.restore_folio(s.slot(0, 1), 1) == 1
    # An order-2 folio needs 4 pages: 31 cached + 1 free -> the 3 oldest go.
    s.cc.store_folio(s.slot(0, 128), 2, dirty=False)
    assert s.backend.evicted == 4 and s.cc.cached == 32
    assert [s.cc.restore_folio(s.slot(0, i), 1) for i in (2, 3, 4, 5)] == [0, 0, 0, 1]
    assert s.cc.stats.stored == 32 + 1 + 4
    assert s.backend.verify() == []


def test_store_larger_than_all_non_tag_pages_is_skipped(small):
    s = small
    s.tags.set_ptes_at(s.S + 32 * np.arange(30))          # 30 of the 32 blocks hold tags
    s.cc.store_folio(s.slot(0, 0), 2, dirty=False)
    assert s.cc.stats.skipped == 4 and s.cc.stats.stored == 0 and s.cc.cached == 0
    s.cc.store_folio(s.slot(0, 8), 1, dirty=False)
    assert s.cc.stats.stored == 2 and s.cc.cached == 2


def test_a_page_is_never_stored_twice(make_system):
    s = make_system()
    slot = s.slot(0, 7)
    s.cc.store_folio(slot, 0, dirty=False)
    s.cc.store_folio(slot, 0, dirty=False)
    assert s.cc.cached == 1
    assert s.backend.verify() == []


def test_released_block_takes_stores_again(small):
    s = small
    s.tags.set_ptes_at(s.S + 32 * np.arange(32))          # every tag page holds tags
    s.cc.store_folio(s.slot(0, 0), 0, dirty=False)
    assert s.cc.stats.skipped == 1
    s.tags.free_tag_storage(np.array([s.S + 32 * 7]))
    s.cc.store_folio(s.slot(0, 0), 0, dirty=False)
    assert s.cc.stats.stored == 1
    assert int(s.backend.slot_tp[s.slot(0, 0)]) == 7


# -- the backend's own checks -------------------------------------------------------------------

def test_illegal_state_change_is_refused(make_system):
    s = make_system()
    s.backend.release_block(3)                             # block 3 holds no tags
    c = s.backend.state.c
    assert c[BAD_EDGES] == 1 and c[BAD_EDGE_TP] == 3       # FREE -> FREE is not an edge
    assert s.backend.tp_state[3] == TP_FREE and s.backend.nr_free == 512


def test_verify_reports_corruption(make_system):
    s = make_system()
    s.cc.store_folio(s.slot(0, 1), 0, dirty=False)
    assert s.backend.verify() == []
    c = s.backend.state.c
    c[NR_CACHED] += 1
    assert any("nr_cached" in e for e in s.backend.verify())
    c[NR_CACHED] -= 1
    s.backend.slot_tp[s.slot(0, 1)] = 5                    # index points at the wrong page
    assert any("disagree" in e for e in s.backend.verify())


def test_unknown_policy_is_rejected(layout64):
    with pytest.raises(ValueError, match="unknown large-folio policy"):
        make_cleancache("cleancache", layout64, 16, "halve")


def test_metadata_is_far_smaller_than_a_struct_page(make_system):
    s = make_system()
    b = metadata_bytes_per_tag_page(s.cc.state)
    assert 0 < b < 64
