"""engine/checker.py: each rule of DESIGN.md section 3, on a case that breaks it when the code
that enforces the rule is switched off, and stays at 0 when it is not.

A case is broken by replacing an engine step function (monkeypatch), which only the uncompiled
engine calls through its module's globals: the broken cases run under NUMBA_DISABLE_JIT=1 in a
subprocess (conftest.run_uncompiled), the enforced ones on the compiled engine. Whole replays
broken the same way, with each breach counted at its event, are tests/test_engine_checker.py."""

from __future__ import annotations

import numpy as np
import pytest
from _uncompiled import UNCOMPILED_MARKS, run_uncompiled

from tagcache.engine import anon as anon_mod
from tagcache.engine import checker, filemap, tags, tagstore
from tagcache.engine import cleancache as cc_mod
from tagcache.engine.anon import anon_call, anon_step, make_anon
from tagcache.engine.page_alloc import make_page_alloc
from tagcache.engine.rules import RULES
from tagcache.engine.tagstore import (
    NR_CACHED,
    TP_CACHE,
    TP_FREE,
    TP_TAGS,
    W_COPIED,
    W_FAILED,
    W_SLEPT,
)
from tagcache.workloads.events import Op

BROKEN = pytest.mark.parametrize("broken", [False, pytest.param(True, marks=UNCOMPILED_MARKS)],
                                 ids=["enforced", "broken"])
NR_BROKEN = 13
"""The broken cases below (run by test_broken_engine_uncompiled)."""


def test_broken_engine_uncompiled():
    run_uncompiled(__file__, NR_BROKEN)


def only(rule: str, n: int) -> dict[str, int]:
    """Counts with ``n`` violations of ``rule`` and none of the rest."""
    return {r: (n if r == rule else 0) for r in RULES}


def at_least(counts: dict[str, int], rule: str) -> bool:
    return counts[rule] >= 1 and all(v == 0 for r, v in counts.items() if r != rule)


def _anon(s):
    """Anonymous memory over the system's tag storage, frames placed from the lowest up."""
    pa = make_page_alloc(s.layout, s.tags.state.refs, "sequential")
    return pa, make_anon(pa, s.tags.state)


def _no_claim(cc, block):
    """A backend whose claim gives up nothing (and declares nothing)."""


# -- 1. tags_reserved ---------------------------------------------------------------------------

@BROKEN
def test_hook_that_writes_tags_without_reserving(make_system, monkeypatch, broken):
    s = make_system()
    if broken:
        monkeypatch.setattr(anon_mod, "set_ptes_at", lambda ts, pfns, order: 0)
    pa, an = _anon(s)
    assert anon_call(an, anon_step, int(Op.MTE_MAP), 1, 40, 40) == 0   # PFNs S..S+39
    if broken:
        assert s.violations() == only("tags_reserved", 40)     # every page written
        assert s.tags.refs[:2].tolist() == [0, 0]
    else:
        assert s.violations() == only("tags_reserved", 0)
        assert s.tags.refs[:2].tolist() == [32, 8]
    counts = s.walk(np.flatnonzero(pa.tagged) + s.layout.pfn_base)
    assert counts["tags_reserved"] == (40 + 2 if broken else 0)   # + two refcounts wrong


@BROKEN
def test_reservation_that_claims_no_tag_page(make_system, monkeypatch, broken):
    """The refcount goes up, but the backend keeps the tag page: tags cannot be written."""
    s = make_system()
    if broken:
        monkeypatch.setattr(tagstore, "tagstore_reserve_block", _no_claim)
    s.map_tagged([s.S, s.S + 1, s.S + 32])
    expect = only("tags_reserved", 3 if broken else 0)
    expect["reserve_bounded"] = 2 if broken else 0     # both claims left their pages free
    assert s.violations() == expect


@BROKEN
def test_leaked_reference_is_caught_by_the_walk(make_system, monkeypatch, broken):
    s = make_system()
    if broken:
        monkeypatch.setattr(tags, "free_tag_storage", lambda ts, pfns: 0)
    s.map_tagged([s.S, s.S + 1])
    s.unmap_tagged([s.S + 1])
    assert s.walk([s.S]) == only("tags_reserved", 1 if broken else 0)


# -- 2. tags_xor_cache --------------------------------------------------------------------------

@BROKEN
def test_reservation_that_keeps_cached_data(make_system, monkeypatch, broken):
    s = make_system()
    if broken:
        monkeypatch.setattr(tagstore, "tagstore_reserve_block", _no_claim)
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
        monkeypatch.setattr(tagstore, "tagstore_reserve_block", _no_claim)
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
    monkeypatch.setattr(filemap, "cleancache_invalidate_range", lambda cc, first, end: None)


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


@pytest.mark.parametrize("broken", [False, True], ids=["enforced", "broken"])
def test_page_changed_behind_cleancache(make_system, broken):
    s = make_system()
    slot = s.slot(0, 2)
    s.cc.store_folio(slot, 0, dirty=False)
    if broken:
        checker.pages_written(s.ck, slot, slot + 1)    # written, and cleancache not told
        checker.pages_cleaned(s.ck, slot, 1)
    s.cc.restore_folio(slot, 1)
    assert s.violations() == only("restore_fresh", 1 if broken else 0)


# -- 4. reserve_bounded -------------------------------------------------------------------------

@pytest.mark.parametrize("declared, failures", [
    pytest.param({W_SLEPT: 1}, 0, marks=UNCOMPILED_MARKS, id="slept"),
    pytest.param({W_COPIED: 1}, 0, marks=UNCOMPILED_MARKS, id="copied"),
    pytest.param({W_FAILED: 1}, 1, marks=UNCOMPILED_MARKS, id="failed"),
])
def test_reservation_that_declares_sleeping_copying_or_failing(make_system, monkeypatch,
                                                                declared, failures):
    s = make_system()
    orig = tagstore.tagstore_reserve_block

    def bad(cc, block):
        orig(cc, block)
        for k, v in declared.items():
            cc.c[k] = v

    monkeypatch.setattr(tagstore, "tagstore_reserve_block", bad)
    s.map_tagged([s.S])
    assert s.violations() == only("reserve_bounded", 1)
    assert s.tags.stats.reservation_failures == failures


@BROKEN
def test_reservation_that_drops_more_than_its_block_holds(make_system, monkeypatch, broken):
    """The backend drops a page of another block and reports nothing: measured, not told."""
    s = make_system()
    if broken:
        orig = tagstore.tagstore_reserve_block

        def greedy(cc, block):
            orig(cc, block)
            other = np.flatnonzero(cc.tp_state == TP_CACHE)[0]   # a page of another block
            tagstore._drop_page(cc, int(other), TP_FREE)          # ... and says nothing

        monkeypatch.setattr(tagstore, "tagstore_reserve_block", greedy)
    s.cc.store_folio(s.slot(0, 1), 0, dirty=False)     # tag page 0
    s.cc.store_folio(s.slot(0, 2), 0, dirty=False)     # tag page 1
    s.map_tagged([s.S])
    assert s.violations() == only("reserve_bounded", 1 if broken else 0)
    if broken:
        assert "dropped more stored pages than were on it" in s.reports()[0].detail
    assert s.cc.stats.reclaimed == (2 if broken else 1)


@BROKEN
def test_reservation_that_takes_more_tag_pages_than_its_block(make_system, monkeypatch, broken):
    """The backend quietly takes two free tag pages of other blocks for tags: nothing cached
    is dropped, but the claim changed more tag pages than it may."""
    s = make_system()
    if broken:
        orig = tagstore.tagstore_reserve_block

        def grabby(cc, block):
            orig(cc, block)
            for tp in (100, 101):
                tagstore.tp_set_state(cc, tp, TP_TAGS)

        monkeypatch.setattr(tagstore, "tagstore_reserve_block", grabby)
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
        orig = cc_mod.cleancache_store_folio

        def store_anyway(cc, head, order, dirty, workingset):
            orig(cc, head, order, False, workingset)   # the dirty state is ignored

        monkeypatch.setattr(cc_mod, "cleancache_store_folio", store_anyway)
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
    s.event = 17
    s.pc.write(0, 3, 1)
    s.cc.store_folio(s.pc.folio_at(0, 3), 0, dirty=False)   # a caller that lies about it
    (v,) = s.reports()
    assert (v.rule, v.event) == ("no_dirty_store", 17)
    assert "not on disk" in v.detail
    assert s.breach_events()["no_dirty_store"] == [17]
    assert s.violations() == only("no_dirty_store", 1)


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
        == s.cc.cached == int(s.cc.state.c[NR_CACHED])
    assert s.walk(s.S + 32 * np.arange(4, 8)) == only("tags_reserved", 0)
