"""invariants.py: each rule of DESIGN.md section 3, on a case that breaks it when the code that
enforces the rule is switched off (monkeypatched), and stays at 0 when it is not."""

from __future__ import annotations

import numpy as np
import pytest

from tagcache.cleancache.backend import ReserveWork
from tagcache.cleancache.backends.tagstore import TP_CACHE, TagStorageBackend
from tagcache.cleancache.frontend import Cleancache
from tagcache.invariants import RULES, Checker
from tagcache.mm.anon import TaggedAnon
from tagcache.mm.page_alloc import PageAllocator
from tagcache.mte import TagStorage

BROKEN = pytest.mark.parametrize("broken", [False, True], ids=["enforced", "broken"])


def only(rule: str, n: int) -> dict[str, int]:
    """Counts with ``n`` (or more, see at_least) violations of ``rule`` and none of the rest."""
    return {r: (n if r == rule else 0) for r in RULES}


def at_least(counts: dict[str, int], rule: str) -> bool:
    return counts[rule] >= 1 and all(v == 0 for r, v in counts.items() if r != rule)


# -- 1. tags_reserved ---------------------------------------------------------------------------

@BROKEN
def test_hook_that_writes_tags_without_reserving(make_system, monkeypatch, broken):
    s = make_system()
    if broken:
        monkeypatch.setattr(TagStorage, "set_ptes_at", lambda self, pfns, order=0: None)
    alloc = PageAllocator(s.layout, "sequential")
    alloc.block_refs = s.tags.refs
    anon = TaggedAnon(alloc, s.tags, lambda n: None)
    anon.mte_map(1, 40)                                # PFNs S..S+39: blocks 0 and 1
    counts = s.walk(np.flatnonzero(alloc.tagged) + s.layout.pfn_base)
    if broken:
        assert counts == only("tags_reserved", 1)
        assert s.tags.refs[:2].tolist() == [0, 0]
    else:
        assert counts == only("tags_reserved", 0)
        assert s.tags.refs[:2].tolist() == [32, 8]


@BROKEN
def test_tags_written_before_the_block_is_reserved(make_system, monkeypatch, broken):
    s = make_system()
    if broken:
        orig = TagStorage.reserve_tag_storage

        def tags_first(self, pfns, order=0):
            blocks = self.layout.pfn_to_block[pfns - self.layout.pfn_base]
            self.checker.on_tags_written(blocks, self)    # mte_sync_tags() too early
            orig(self, pfns, order)

        monkeypatch.setattr(TagStorage, "reserve_tag_storage", tags_first)
    s.tags.set_ptes_at(np.array([s.S, s.S + 32]))
    assert s.violations() == only("tags_reserved", 2 if broken else 0)


@BROKEN
def test_leaked_reference_is_caught_by_the_walk(make_system, monkeypatch, broken):
    s = make_system()
    if broken:
        monkeypatch.setattr(TagStorage, "free_tag_storage", lambda self, pfns: None)
    s.tags.set_ptes_at(np.array([s.S, s.S + 1]))
    s.tags.free_tag_storage(np.array([s.S + 1]))
    assert s.walk([s.S]) == only("tags_reserved", 1 if broken else 0)


# -- 2. tags_xor_cache --------------------------------------------------------------------------

@BROKEN
def test_reservation_that_keeps_cached_data(make_system, monkeypatch, broken):
    s = make_system()
    if broken:
        monkeypatch.setattr(TagStorageBackend, "reserve_block", lambda self, b: ReserveWork())
    s.cc.store_folio(s.slot(0, 7), 0, dirty=False)     # lands on tag page 0
    s.tags.set_ptes_at(np.array([s.S]))               # block 0 = tag page 0
    if broken:
        assert s.violations() == only("tags_xor_cache", 1)
        assert s.cc.cached == 1
        assert at_least(s.walk([s.S]), "tags_xor_cache")
    else:
        assert s.walk([s.S]) == only("tags_xor_cache", 0)
        assert s.cc.stats.reclaimed == 1 and s.cc.cached == 0


@BROKEN
def test_store_onto_a_tag_page_holding_tags(make_system, monkeypatch, broken):
    s = make_system()
    if broken:
        # Reservation "forgets" to take free tag pages out of the backend's hands.
        monkeypatch.setattr(TagStorageBackend, "reserve_block", lambda self, b: ReserveWork())
    s.tags.set_ptes_at(np.array([s.S]))               # block 0 holds tags
    s.cc.store_folio(s.slot(0, 7), 0, dirty=False)     # must not land on tag page 0
    tp = int(s.backend.slot_tp[s.slot(0, 7)])
    if broken:
        assert tp == 0
        assert at_least(s.walk([s.S]), "tags_xor_cache")
    else:
        assert tp == 1
        assert s.walk([s.S]) == only("tags_xor_cache", 0)


# -- 3. restore_fresh ---------------------------------------------------------------------------

def _no_invalidate(monkeypatch):
    monkeypatch.setattr(Cleancache, "invalidate_range", lambda self, first, end: None)


@BROKEN
def test_truncate_without_invalidation_restores_stale_data(make_system, monkeypatch, broken):
    s = make_system()
    if broken:
        _no_invalidate(monkeypatch)
    s.pc.read(0, 40, 1)
    s.evict(0, 40)                                     # copy of page 40 stored
    s.pc.truncate(0, 32)                               # ... the page is gone
    s.pc.write(0, 50, 1)                               # the file grows: page 40 is a hole
    s.pc.read(0, 40, 1)
    if broken:
        assert s.cc.stats.restored == 1                # the old contents came back
        assert s.violations() == only("restore_fresh", 1)
    else:
        assert s.cc.stats.restored == 0 and s.cc.stats.invalidated == 1
        assert s.walk() == only("restore_fresh", 0)


@BROKEN
def test_write_without_invalidation_leaves_a_stale_copy(make_system, monkeypatch, broken):
    s = make_system()
    if broken:
        _no_invalidate(monkeypatch)
    s.pc.read(0, 40, 1)
    s.evict(0, 40)
    s.pc.write(0, 40, 1)
    counts = s.walk()
    if broken:
        assert s.cc.cached == 1
        assert at_least(counts, "restore_fresh")
    else:
        assert s.cc.cached == 0
        assert counts == only("restore_fresh", 0)


@BROKEN
def test_stale_restore_through_the_checker_hook(make_system, broken):
    s = make_system()
    slot = s.slot(0, 2)
    s.cc.store_folio(slot, 0, dirty=False)
    if broken:
        s.pc.version[slot] += 1                        # the page changed behind cleancache
    s.cc.restore_folio(slot, 1)
    assert s.violations() == only("restore_fresh", 1 if broken else 0)


# -- 4. reserve_bounded -------------------------------------------------------------------------

@pytest.mark.parametrize("work, failures", [
    (ReserveWork(slept=True), 0),
    (ReserveWork(copied=1), 0),
    (ReserveWork(failed=True), 1),
])
def test_reservation_that_sleeps_copies_or_fails(make_system, monkeypatch, work, failures):
    s = make_system()
    orig = TagStorageBackend.reserve_block

    def bad(self, block):
        w = orig(self, block)
        w.slept, w.copied, w.failed = work.slept, work.copied, work.failed
        return w

    monkeypatch.setattr(TagStorageBackend, "reserve_block", bad)
    s.tags.set_ptes_at(np.array([s.S]))
    assert s.violations() == only("reserve_bounded", 1)
    assert s.tags.stats.reservation_failures == failures


@BROKEN
def test_reservation_that_drops_more_than_its_block_holds(make_system, monkeypatch, broken):
    s = make_system()
    if broken:
        orig = TagStorageBackend.reserve_block

        def greedy(self, block):
            w = orig(self, block)
            other = np.flatnonzero(self.tp_state == TP_CACHE)[0]   # a page of another block
            self._drop_page(int(other))
            w.dropped += 1
            return w

        monkeypatch.setattr(TagStorageBackend, "reserve_block", greedy)
    s.cc.store_folio(s.slot(0, 1), 0, dirty=False)     # tag page 0
    s.cc.store_folio(s.slot(0, 2), 0, dirty=False)     # tag page 1
    s.tags.set_ptes_at(np.array([s.S]))
    assert s.violations() == only("reserve_bounded", 1 if broken else 0)
    assert s.cc.stats.reclaimed == (2 if broken else 1)


@pytest.mark.parametrize("work, bound, n", [
    (ReserveWork(dropped=4, collateral=3, folios=1), 4, 0),
    (ReserveWork(dropped=5, folios=2), 4, 1),
    (ReserveWork(slept=True), 0, 1),
    (ReserveWork(dropped=1, copied=1, failed=True), 0, 2),
])
def test_checker_reserve_bound(work, bound, n):
    c = Checker(8)
    c.on_reserve(0, work, bound)
    assert c.counts == only("reserve_bounded", n)
    assert len(c.reports) == n


# -- 5. no_dirty_store --------------------------------------------------------------------------

@BROKEN
def test_dirty_folio_offered_to_cleancache(make_system, monkeypatch, broken):
    s = make_system()
    if broken:
        def store_anyway(self, head, order, *, dirty):
            self._store(head, order, 1 << order)

        monkeypatch.setattr(Cleancache, "store_folio", store_anyway)
    s.pc.write(0, 3, 1)
    h = s.pc.folio_at(0, 3)
    s.cc.store_folio(h, 0, dirty=True)
    if broken:
        assert s.violations() == only("no_dirty_store", 1)
        assert s.cc.cached == 1
    else:
        assert s.violations() == only("no_dirty_store", 0)
        assert s.cc.cached == 0 and s.cc.stats.stored == 0


def test_checker_reports_name_the_event(make_system):
    s = make_system()
    s.checker.event = 17
    s.pc.write(0, 3, 1)
    s.checker.on_store(s.pc.folio_at(0, 3), 1)
    (v,) = s.checker.reports
    assert (v.rule, v.event) == ("no_dirty_store", 17)
    assert "dirty" in v.detail
    assert s.checker.to_json() == only("no_dirty_store", 1)


def test_clean_run_with_every_kind_of_operation(make_system):
    """All hooks on one small machine, nothing broken: every count stays 0."""
    s = make_system(limit=24, policy="split")
    pc = s.pc
    for i in range(0, 32, 4):
        pc.read(1, i, 4)
    pc.read(0, 0, 16)
    pc.write(0, 4, 4)
    s.tags.set_ptes_at(s.S + 32 * np.arange(8))
    pc.read(2, 0, 16)
    pc.read(1, 0, 32)     # refaults allow deactivation: the dirty folios are written back
    pc.truncate(0, 10)
    pc.read(1, 0, 8)
    s.tags.free_tag_storage(s.S + 32 * np.arange(4))
    pc.read(0, 0, 10)
    cc = s.cc.stats
    assert min(cc.stored, cc.restored, cc.invalidated, cc.reclaimed) > 0
    assert s.pc.stats.pages_written == 4
    # Every stored page is accounted for: restored, invalidated, reclaimed, evicted or cached.
    assert cc.stored - cc.restored - cc.invalidated - cc.reclaimed - s.backend.evicted \
        == s.cc.cached
    assert s.walk(s.S + 32 * np.arange(4, 8)) == only("tags_reserved", 0)
