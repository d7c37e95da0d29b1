"""invariants.py: each rule of DESIGN.md section 3, on a case that breaks it when the code that
enforces the rule is switched off (monkeypatched), and stays at 0 when it is not.

The ``test_teeth_*`` tests run whole replays with a deliberately broken variant of the model
(made here, never in the product), break a rule a known number of times at known events, and
check that the checker counts at least that many breaches, each at its event."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tagcache import invariants
from tagcache.cleancache.backend import ReserveWork
from tagcache.cleancache.backends.tagstore import TP_CACHE, TagStorageBackend
from tagcache.cleancache.frontend import Cleancache
from tagcache.hw.layout import simple_layout
from tagcache.invariants import RULES
from tagcache.mm.anon import AnonMemory
from tagcache.mm.filemap import PageCache
from tagcache.mm.page_alloc import PageAllocator
from tagcache.mte import TagStorage
from tagcache.replay import Design, MachineConfig, replay
from tagcache.workloads.events import FileTable, Op, TraceBuilder

MIB = 1 << 20
BROKEN = pytest.mark.parametrize("broken", [False, True], ids=["enforced", "broken"])


def only(rule: str, n: int) -> dict[str, int]:
    """Counts with ``n`` violations of ``rule`` and none of the rest."""
    return {r: (n if r == rule else 0) for r in RULES}


def at_least(counts: dict[str, int], rule: str) -> bool:
    return counts[rule] >= 1 and all(v == 0 for r, v in counts.items() if r != rule)


def _anon(s) -> tuple[PageAllocator, AnonMemory]:
    alloc = PageAllocator(s.layout, "sequential")
    alloc.block_refs = s.tags.refs
    anon = AnonMemory(alloc, s.tags, lambda n: None)
    anon.observer = s.checker
    return alloc, anon


# -- 1. tags_reserved ---------------------------------------------------------------------------

@BROKEN
def test_hook_that_writes_tags_without_reserving(make_system, monkeypatch, broken):
    s = make_system()
    if broken:
        monkeypatch.setattr(TagStorage, "set_ptes_at", lambda self, pfns, order=0: None)
    alloc, anon = _anon(s)
    anon.mte_map(1, 40, 40)                            # PFNs S..S+39: blocks 0 and 1
    if broken:
        assert s.violations() == only("tags_reserved", 40)     # every page written
        assert s.tags.refs[:2].tolist() == [0, 0]
    else:
        assert s.violations() == only("tags_reserved", 0)
        assert s.tags.refs[:2].tolist() == [32, 8]
    counts = s.walk(np.flatnonzero(alloc.tagged) + s.layout.pfn_base)
    assert counts["tags_reserved"] == (40 + 2 if broken else 0)   # + two refcounts wrong


@BROKEN
def test_reservation_that_claims_no_tag_page(make_system, monkeypatch, broken):
    """The refcount goes up, but the backend keeps the tag page: tags cannot be written."""
    s = make_system()
    if broken:
        monkeypatch.setattr(TagStorageBackend, "reserve_block", lambda self, b: ReserveWork())
    s.map_tagged([s.S, s.S + 1, s.S + 32])
    expect = only("tags_reserved", 3 if broken else 0)
    expect["reserve_bounded"] = 2 if broken else 0     # both claims left their pages free
    assert s.violations() == expect


@BROKEN
def test_leaked_reference_is_caught_by_the_walk(make_system, monkeypatch, broken):
    s = make_system()
    if broken:
        monkeypatch.setattr(TagStorage, "free_tag_storage", lambda self, pfns: None)
    s.map_tagged([s.S, s.S + 1])
    s.unmap_tagged([s.S + 1])
    assert s.walk([s.S]) == only("tags_reserved", 1 if broken else 0)


# -- 2. tags_xor_cache --------------------------------------------------------------------------

@BROKEN
def test_reservation_that_keeps_cached_data(make_system, monkeypatch, broken):
    s = make_system()
    if broken:
        monkeypatch.setattr(TagStorageBackend, "reserve_block", lambda self, b: ReserveWork())
    s.cc.store_folio(s.slot(0, 7), 0, dirty=False)     # lands on tag page 0
    s.map_tagged([s.S])                               # block 0 = tag page 0
    if broken:
        assert s.cc.cached == 1
        assert s.violations()["tags_reserved"] == 1
        assert s.walk([s.S])["tags_xor_cache"] >= 1
    else:
        assert s.walk([s.S]) == only("tags_xor_cache", 0)
        assert s.cc.stats.reclaimed == 1 and s.cc.cached == 0


@BROKEN
def test_store_onto_a_tag_page_holding_tags(make_system, monkeypatch, broken):
    s = make_system()
    if broken:
        # Reservation "forgets" to take free tag pages out of the backend's hands.
        monkeypatch.setattr(TagStorageBackend, "reserve_block", lambda self, b: ReserveWork())
    s.map_tagged([s.S])                               # block 0 holds tags
    s.cc.store_folio(s.slot(0, 7), 0, dirty=False)     # must not land on tag page 0
    tp = int(s.backend.slot_tp[s.slot(0, 7)])
    if broken:
        assert tp == 0
        assert s.violations()["tags_xor_cache"] == 1
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
def test_page_changed_behind_cleancache(make_system, broken):
    s = make_system()
    slot = s.slot(0, 2)
    s.cc.store_folio(slot, 0, dirty=False)
    if broken:
        s.checker.pages_written(slot, slot + 1)        # written, and cleancache not told
        s.checker.pages_cleaned(slot, 1)
    s.cc.restore_folio(slot, 1)
    assert s.violations() == only("restore_fresh", 1 if broken else 0)


# -- 4. reserve_bounded -------------------------------------------------------------------------

@pytest.mark.parametrize("work, failures", [
    (ReserveWork(slept=True), 0),
    (ReserveWork(copied=1), 0),
    (ReserveWork(failed=True), 1),
])
def test_reservation_that_declares_sleeping_copying_or_failing(make_system, monkeypatch, work,
                                                                failures):
    s = make_system()
    orig = TagStorageBackend.reserve_block

    def bad(self, block):
        w = orig(self, block)
        w.slept, w.copied, w.failed = work.slept, work.copied, work.failed
        return w

    monkeypatch.setattr(TagStorageBackend, "reserve_block", bad)
    s.map_tagged([s.S])
    assert s.violations() == only("reserve_bounded", 1)
    assert s.tags.stats.reservation_failures == failures


@BROKEN
def test_reservation_that_drops_more_than_its_block_holds(make_system, monkeypatch, broken):
    """The backend drops a page of another block and reports nothing: measured, not told."""
    s = make_system()
    if broken:
        orig = TagStorageBackend.reserve_block

        def greedy(self, block):
            w = orig(self, block)
            other = np.flatnonzero(self.tp_state == TP_CACHE)[0]   # a page of another block
            self._drop_page(int(other))
            return w                                   # ... and says nothing of it

        monkeypatch.setattr(TagStorageBackend, "reserve_block", greedy)
    s.cc.store_folio(s.slot(0, 1), 0, dirty=False)     # tag page 0
    s.cc.store_folio(s.slot(0, 2), 0, dirty=False)     # tag page 1
    s.map_tagged([s.S])
    assert s.violations() == only("reserve_bounded", 1 if broken else 0)
    if broken:
        assert "dropped 2 pages, only 1" in s.checker.reports[0].detail
    assert s.cc.stats.reclaimed == (2 if broken else 1)


@BROKEN
def test_reservation_that_takes_more_tag_pages_than_its_block(make_system, monkeypatch, broken):
    """The backend quietly takes two free tag pages of other blocks for tags: nothing cached
    is dropped, but the claim changed more tag pages than it may."""
    s = make_system()
    if broken:
        orig = TagStorageBackend.reserve_block

        def grabby(self, block):
            w = orig(self, block)
            for tp in (100, 101):
                self._set_state(tp, 2)
            return w

        monkeypatch.setattr(TagStorageBackend, "reserve_block", grabby)
    s.map_tagged([s.S])
    assert s.violations() == only("reserve_bounded", 1 if broken else 0)


def test_whole_folio_drop_is_within_the_bound(make_system):
    """Dropping a whole order-2 folio for one of its tag pages is the bound, not a breach."""
    s = make_system(policy="whole")
    h = s.pc.add_folio(1, 0, 2)
    s.evict(1, 0)
    assert s.backend.slot_tp[h:h + 4].tolist() == [0, 1, 2, 3]
    s.map_tagged([s.S])
    assert s.cc.stats.reclaimed == 4 and s.cc.stats.collateral == 3
    assert s.violations() == only("reserve_bounded", 0)


# -- 5. no_dirty_store --------------------------------------------------------------------------

@BROKEN
def test_dirty_folio_offered_to_cleancache(make_system, monkeypatch, broken):
    s = make_system()
    if broken:
        orig = Cleancache.store_folio

        def store_anyway(self, head, order, *, dirty):
            orig(self, head, order, dirty=False)       # the dirty state is ignored

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
    s.cc.store_folio(s.pc.folio_at(0, 3), 0, dirty=False)   # a caller that lies about it
    (v,) = s.checker.reports
    assert (v.rule, v.event) == ("no_dirty_store", 17)
    assert "not on disk" in v.detail
    assert s.checker.events["no_dirty_store"] == [17]
    assert s.checker.to_json() == only("no_dirty_store", 1)


def test_clean_run_with_every_kind_of_operation(make_system):
    """All hooks on one small machine, nothing broken: every count stays 0."""
    s = make_system(limit=24, policy="split")
    pc = s.pc
    for i in range(0, 32, 4):
        pc.read(1, i, 4)
    pc.read(0, 0, 16)
    pc.write(0, 4, 4)
    s.map_tagged(s.S + 32 * np.arange(8))
    pc.read(2, 0, 16)
    pc.read(1, 0, 32)     # refaults allow deactivation: the dirty folios are written back
    pc.truncate(0, 10)
    pc.read(1, 0, 8)
    s.unmap_tagged(s.S + 32 * np.arange(4))
    pc.read(0, 0, 10)
    cc = s.cc.stats
    assert min(cc.stored, cc.invalidated, cc.reclaimed) > 0
    assert s.pc.stats.pages_written == 4
    # Every stored page is accounted for: restored, invalidated, reclaimed, evicted or cached.
    assert cc.stored - cc.restored - cc.invalidated - cc.reclaimed - s.backend.evicted \
        == s.cc.cached
    assert s.walk(s.S + 32 * np.arange(4, 8)) == only("tags_reserved", 0)


# -- teeth: whole replays with a broken variant, breaches counted at their events ---------------

LAYOUT = simple_layout(64 * MIB)          # 16384 data pages, 512 tag pages, 4 KiB blocks
FILES = FileTable.build(dev=[1], ino=[1], size_pages=[256], span_pages=[256],
                        large_folios=[False])


def _run(events, *, capacity: int = 1, policy: str = "whole"):
    """Replay ``events`` ((op, a0, a1, a2) rows) with the checker on: one 256-page file,
    order-0 folios, no readahead, a page cache of ``capacity`` pages, anonymous memory placed
    from the lowest PFN up."""
    b = TraceBuilder()
    for row in events:
        b.add(*row)
    cfg = MachineConfig(layout=LAYOUT, page_cache_limit_pages=capacity, ra_pages=0,
                        max_folio_order=0, alloc_policy="sequential", min_free_pages=0)
    return replay(cfg, Design("cleancache", policy), b.build(FILES, "teeth"), check=True,
                  engine="object")


def _breaches(r, rule: str) -> Counter:
    return Counter(v for v in r.invariant_events[rule])


def _clean_replay_gives_zero(events, **kw):
    r = _run(events, **kw)
    assert r.invariants == dict.fromkeys(RULES, 0), r.violations
    return r


def test_teeth_tags_reserved(monkeypatch):
    """A backend whose claim takes no tag page: each of 40 + 40 pages mapped at events 3 and 7
    has its tags written on tag pages still free, and a copy_highpage() that reserves nothing
    writes 16 more at event 10 (under a block its parent reserved: each page must hold its
    own reference)."""
    events = [(Op.READ, 0, 0, 1), (Op.READ, 0, 1, 1), (Op.READ, 0, 2, 1),
              (Op.MTE_MAP, 1, 40, 40), (Op.READ, 0, 3, 1), (Op.READ, 0, 4, 1),
              (Op.READ, 0, 5, 1), (Op.MTE_MAP, 2, 40, 40), (Op.MTE_MAP, 3, 64, 64),
              (Op.MTE_FORK, 3, 4, 0), (Op.MTE_COW, 4, 16, 0), (Op.MTE_EXIT, 4, 0, 0),
              (Op.READ, 0, 6, 1)]
    _clean_replay_gives_zero(events)
    monkeypatch.setattr(TagStorageBackend, "reserve_block", lambda self, b: ReserveWork())
    r = _run(events)
    got = _breaches(r, "tags_reserved")
    assert got[3] >= 40 and got[7] >= 40
    monkeypatch.undo()
    monkeypatch.setattr(TagStorage, "copy_highpage", lambda self, to, frm: None)
    r = _run(events)                                   # the run completes: no exception
    got = _breaches(r, "tags_reserved")
    assert got[10] >= 16
    # The child's exit at event 11 released block 4 under its parent's tagged pages: the
    # final walk (event 13) finds the refcounts wrong.
    assert got[len(events)] >= 1


def test_teeth_tags_xor_cache(monkeypatch):
    """Tags on blocks 0-7 (256 pages at event 0) with a claim that leaves the tag pages to the
    backend: with room for one page, each read from event 2 on evicts the page before it,
    stored on the next free tag page, 0 to 7 at events 2 to 9: eight bad stores."""
    events = [(Op.MTE_MAP, 1, 256, 256)] + [(Op.READ, 0, i, 1) for i in range(20)]
    _clean_replay_gives_zero(events)
    monkeypatch.setattr(TagStorageBackend, "reserve_block", lambda self, b: ReserveWork())
    r = _run(events)
    got = _breaches(r, "tags_xor_cache")
    assert sum(got[e] for e in range(2, 10)) >= 8
    assert all(got[e] >= 1 for e in range(2, 10))


def test_teeth_restore_fresh(monkeypatch):
    """Truncation and writes that do not invalidate: pages 40-47 stored at events 1-8, the file
    truncated to 32 pages at event 9 and grown at event 10; reads of 40-47 at events 11-18
    restore contents that no longer exist, one breach each."""
    events = ([(Op.READ, 0, 40 + i, 1) for i in range(8)] + [(Op.READ, 0, 0, 1),
              (Op.TRUNCATE, 0, 32, 0), (Op.WRITE, 0, 60, 1)]
              + [(Op.READ, 0, 40 + i, 1) for i in range(8)])
    r = _clean_replay_gives_zero(events)
    assert r.cleancache["restored"] == 0
    _no_invalidate(monkeypatch)
    r = _run(events)
    got = _breaches(r, "restore_fresh")
    assert r.cleancache["restored"] == 8
    assert all(got[e] >= 1 for e in range(11, 19))


def test_teeth_reserve_bounded(monkeypatch):
    """A claim that also drops the oldest stored page of another block, and says nothing: the
    claims at events 10-13 each drop one page more than their block held."""
    events = [(Op.READ, 0, i, 1) for i in range(10)] + [
        (Op.MTE_MAP, p, 32, 32) for p in range(1, 5)]
    _clean_replay_gives_zero(events)
    orig = TagStorageBackend.reserve_block

    def greedy(self, block):
        w = orig(self, block)
        cached = np.flatnonzero(self.tp_state == TP_CACHE)
        if len(cached):
            self._drop_page(int(cached[0]))
        return w

    monkeypatch.setattr(TagStorageBackend, "reserve_block", greedy)
    r = _run(events)
    got = _breaches(r, "reserve_bounded")
    assert [got[e] for e in range(10, 14)] == [1, 1, 1, 1]
    assert r.invariants["conservation"] == 0         # the drops are measured and accounted


def test_teeth_no_dirty_store(monkeypatch):
    """Writeback that never reaches the disk: with room for one page, each write from event 1
    on evicts the previous, still-dirty page, which goes to cleancache: four breaches."""
    events = [(Op.WRITE, 0, i, 1) for i in range(5)]
    _clean_replay_gives_zero(events)
    monkeypatch.setattr(PageCache, "writeback", lambda self, head, nr: None)
    r = _run(events)
    got = _breaches(r, "no_dirty_store")
    assert all(got[e] >= 1 for e in range(1, 5))


def test_teeth_conservation(monkeypatch):
    """A backend that silently forgets the oldest page at every store from the fourth: the
    counters stop adding up at event 4 and at every check after."""
    monkeypatch.setattr(invariants, "CONSERVATION_INTERVAL", 1)
    events = [(Op.READ, 0, i, 1) for i in range(12)]
    _clean_replay_gives_zero(events)
    orig = TagStorageBackend.store_folio

    def forgetful(self, head, order):
        ok = orig(self, head, order)
        if self.nr_cached > 3:
            self._drop_page(int(self.tp_next[self.nr_tag_pages]))   # not counted anywhere
        return ok

    monkeypatch.setattr(TagStorageBackend, "store_folio", forgetful)
    r = _run(events)
    got = _breaches(r, "conservation")
    assert min(got) == 4                               # the first silent drop
    assert all(got[e] >= 1 for e in range(4, 12))
