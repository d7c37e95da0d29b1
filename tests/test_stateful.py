"""Hypothesis state machine: random reads, writes, truncations, faults, memory pressure, direct
stores, tag reservations and frees on a tiny machine (1 MiB of data, 8 tag pages), checking
after every step that no invariant is broken, every structure verifies, and the counters agree
with a simple reference model (tagged pages per block, file sizes, where every stored page
went, where every inserted page came from). It drives the engine (tests/_engine.py: the
engine's step functions over its flat state); the reference model is its own."""

from __future__ import annotations

from collections import Counter

import numpy as np
from _engine import build_system
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tagcache.engine.page_flags import PG_DIRTY
from tagcache.engine.rules import RULES
from tagcache.engine.tagstore import TP_CACHE
from tagcache.hw.layout import simple_layout
from tagcache.workloads.events import FileTable

MIB, KIB = 1 << 20, 1 << 10
SIZES = [40, 24, 16]
SPANS = [48, 24, 16]
FILE = st.integers(0, len(SIZES) - 1)


class TagCacheMachine(RuleBasedStateMachine):
    @initialize(policy=st.sampled_from(["whole", "split"]),
                block=st.sampled_from([4 * KIB, 8 * KIB]),
                limit=st.integers(4, 40))
    def setup(self, policy, block, limit):
        files = FileTable.build(dev=[1, 1, 2], ino=[1, 2, 3], size_pages=SIZES,
                                span_pages=SPANS, large_folios=[False, True, True])
        self.s = build_system(files, layout=simple_layout(MIB, block), limit=limit,
                              policy=policy, max_folio_order=2)
        self.layout = self.s.layout
        self.tagged: set[int] = set()          # reference: data PFN indices tagged now
        self.isize = list(SIZES)               # reference: file sizes
        self.written = 0                       # reference: pages written (may be created)
        self.step = 0

    def _tick(self):
        self.step += 1
        self.s.event = self.step

    def _stored_slots(self) -> np.ndarray:
        return np.flatnonzero(self.s.backend.slot_tp >= 0)

    # -- file operations --------------------------------------------------------------------

    @rule(f=FILE, index=st.integers(0, 48), nr=st.integers(1, 12))
    def read(self, f, index, nr):
        self._tick()
        self.s.pc.read(f, index, nr)

    @rule(f=FILE, index=st.integers(0, 48))
    def fault(self, f, index):
        self._tick()
        self.s.pc.fault(f, index)

    @rule(f=FILE, index=st.integers(0, 47), nr=st.integers(1, 6))
    def write(self, f, index, nr):
        index = min(index, SPANS[f] - 1)
        nr = min(nr, SPANS[f] - index)
        pc, b = self.s.pc, self.s.slot(f, 0)
        self._tick()
        pc.write(f, index, nr)
        self.written += nr
        self.isize[f] = max(self.isize[f], index + nr)
        # The old copies are gone. A written page is stored again only if reclaim wrote it
        # back during the write, and then the copy is fresh.
        rng = slice(b + index, b + index + nr)
        stored = self.s.backend.slot_tp[rng] >= 0
        ck = self.s.ck
        assert (ck.copy[rng][stored] == ck.version[rng][stored]).all()

    @rule(f=FILE, new=st.integers(0, 48))
    def truncate(self, f, new):
        self._tick()
        self.s.pc.truncate(f, new)
        new = min(new, SPANS[f])
        self.isize[f] = min(self.isize[f], new)
        b = self.s.slot(f, 0)
        # cleancache_invalidate_inode(): no copy of the file survives, before EOF or past it
        assert not (self.s.backend.slot_tp[b:b + SPANS[f]] >= 0).any()

    @rule(f=FILE)
    def fsync(self, f):
        self._tick()
        self.s.pc.fsync(f)
        b = self.s.slot(f, 0)
        assert not (self.s.pc.flags[b:b + SPANS[f]] & PG_DIRTY).any()

    @rule(n=st.integers(1, 40))
    def reclaim(self, n):
        self._tick()
        self.s.pc.try_to_free_pages(n)

    @rule(limit=st.integers(0, 40))
    def set_limit(self, limit):
        self.s.limit = limit

    @rule(f=FILE, index=st.integers(0, 47), order=st.integers(0, 2))
    def store_uncached(self, f, index, order):
        """A folio-sized range nobody caches is offered to cleancache (as if just evicted)."""
        nr = 1 << order
        index = index & ~(nr - 1)
        b = self.s.slot(f, index)
        if index + nr > SPANS[f] or not self.s.pc.range_free(f, index, nr) \
                or (self.s.backend.slot_tp[b:b + nr] >= 0).any():
            return
        self._tick()
        self.s.cc.store_folio(self.s.slot(f, index), order, dirty=False)

    # -- tagged memory ------------------------------------------------------------------------

    @rule(pages=st.lists(st.integers(0, 255), min_size=1, max_size=6, unique=True),
          order=st.sampled_from([0, 0, 1]))
    def reserve(self, pages, order):
        new = [p for p in pages if p not in self.tagged]
        if order:
            new = new[:len(new) & ~1]
        if not new:
            return
        self._tick()
        self.s.map_tagged(np.array(new) + self.layout.pfn_base, order)
        self.tagged.update(new)
        refs = self.s.tags.refs
        blocks = self.layout.pfn_to_block[np.array(new)]
        assert (refs[blocks] > 0).all()

    @precondition(lambda self: self.tagged)
    @rule(data=st.data())
    def free(self, data):
        pages = data.draw(st.lists(st.sampled_from(sorted(self.tagged)), min_size=1,
                                   max_size=8, unique=True))
        self._tick()
        self.s.unmap_tagged(np.array(pages) + self.layout.pfn_base)
        self.tagged.difference_update(pages)

    # -- checks after every step ------------------------------------------------------------

    @invariant()
    def nothing_broken(self):
        s = self.s
        assert s.backend.verify() == []
        assert s.pc.verify() == []
        assert s.violations() == dict.fromkeys(RULES, 0), s.reports()
        # The full walk: no stale or duplicate copy, refcounts agree with the tagged pages.
        counts = s.walk(np.array(sorted(self.tagged), np.int64) + self.layout.pfn_base)
        assert counts == dict.fromkeys(RULES, 0), s.reports()

    @invariant()
    def tag_blocks_match_the_reference(self):
        s, layout = self.s, self.layout
        expect = Counter(layout.pfn_to_block[p] for p in self.tagged)
        refs = s.tags.refs
        assert {int(b): int(refs[b]) for b in np.flatnonzero(refs)} == \
            {int(b): n for b, n in expect.items()}
        reserved = np.flatnonzero(refs > 0)
        assert s.tags.stats.reserved_pages == int(layout.block_tag_pages[reserved].sum())
        # No tag page of a reserved block holds cached data.
        on_reserved = np.isin(layout.tag_page_block, reserved)
        assert not (s.backend.tp_state[on_reserved] == TP_CACHE).any()
        assert s.cc.cached <= layout.nr_tag_pages - s.tags.stats.reserved_pages

    @invariant()
    def cleancache_matches_the_reference(self):
        s = self.s
        cc, be = s.cc.stats, s.backend
        stored = self._stored_slots()
        assert len(stored) == s.cc.cached == int((be.tp_state == TP_CACHE).sum())
        # Every page stored went somewhere: back, invalidated, reclaimed, evicted, or is here.
        assert cc.stored - cc.restored - cc.invalidated - cc.reclaimed - be.evicted == s.cc.cached
        assert cc.collateral <= cc.reclaimed
        if be.policy == "split":
            assert cc.collateral == 0
        # Exclusive: a page is in the page cache or in cleancache, never both.
        assert not (s.pc.head[stored] >= 0).any()
        # Every inserted page that had to be read was looked up in cleancache once and came
        # from the disk or from cleancache, a whole folio from one or the other; the pages
        # inserted and not read are pages the writes created.
        filled = s.pc.stats.pages_read + cc.restored
        assert cc.restored + cc.missed == filled
        assert 0 <= s.pc.stats.insertions - filled <= self.written
        assert s.pc.stats.read_requests <= s.pc.stats.read_requests_without_cleancache + \
            cc.restored

    @invariant()
    def page_cache_matches_the_reference(self):
        pc = self.s.pc
        assert pc.isize.tolist() == self.isize
        heads = np.flatnonzero(pc.head == np.arange(pc.nr_slots))
        dirty = heads[(pc.flags[heads] & PG_DIRTY) != 0]
        assert pc.nr_dirty == int((1 << pc.order[dirty].astype(np.int64)).sum())
        st_ = pc.stats
        assert st_.hits + st_.misses == st_.accesses

    def teardown(self):
        if not hasattr(self, "s"):
            return
        cc = self.s.cc.stats
        # Shown by --hypothesis-show-statistics: which paths the examples reached.
        for name, n in (("restored", cc.restored), ("reclaimed", cc.reclaimed),
                        ("collateral", cc.collateral), ("evicted", self.s.backend.evicted),
                        ("skipped", cc.skipped), ("invalidated", cc.invalidated)):
            event(f"{name} > 0" if n else f"{name} == 0")


TagCacheMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=50, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow])
TestTagCache = TagCacheMachine.TestCase
