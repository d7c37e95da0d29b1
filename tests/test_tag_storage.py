"""engine/tags.py: reference-counted tag blocks, cache maintenance, the arch hooks, modelled
latency."""

from __future__ import annotations

import numpy as np

from tagcache.engine.rc import ERR_UNTAGGABLE
from tagcache.engine.rules import RULES
from tagcache.engine.tagstore import TP_FREE, TP_TAGS


def states(s, n):
    return s.backend.tp_state[:n].tolist()


def test_block_shared_by_three_tagged_pages_is_refcounted(make_system):
    s = make_system()
    S = s.S
    s.tags.reserve_tag_storage(np.array([S, S + 5, S + 31]))
    assert int(s.tags.refs[0]) == 3
    assert s.tags.stats.blocks_claimed == 1
    assert s.tags.stats.reserved_pages == 1 and s.tags.stats.reserved_peak == 1
    assert s.tags.stats.reservations == 3                  # one call per order-0 folio
    assert s.tags.stats.cmo_pages == 1                     # data lines of the tag page invalidated
    assert states(s, 3) == [TP_TAGS, TP_FREE, TP_FREE]

    s.tags.free_tag_storage(np.array([S, S + 31]))
    assert int(s.tags.refs[0]) == 1
    assert s.tags.stats.reserved_pages == 1
    assert states(s, 1) == [TP_TAGS]
    assert s.tags.stats.cmo_pages == 1                     # nothing released yet

    s.tags.free_tag_storage(np.array([S + 5]))
    assert int(s.tags.refs[0]) == 0
    assert s.tags.stats.reserved_pages == 0 and s.tags.stats.reserved_peak == 1
    assert states(s, 1) == [TP_FREE]
    assert s.tags.stats.cmo_pages == 2                     # tag lines invalidated on release
    assert s.walk() == dict.fromkeys(RULES, 0)


def test_block_of_two_tag_pages_is_claimed_and_released_as_a_unit(make_system, layout64_8k):
    s = make_system(layout=layout64_8k)
    S = s.S
    s.tags.reserve_tag_storage(np.array([S, S + 40, S + 63]))
    assert int(s.tags.refs[0]) == 3 and int(s.tags.refs[1]) == 0
    assert s.tags.stats.blocks_claimed == 1
    assert s.tags.stats.reserved_pages == 2   # the unit: lcm(4 KiB, 8 KiB) = 2 tag pages
    assert s.tags.stats.cmo_pages == 2
    assert states(s, 3) == [TP_TAGS, TP_TAGS, TP_FREE]
    s.tags.free_tag_storage(np.array([S, S + 40]))
    assert states(s, 2) == [TP_TAGS, TP_TAGS] and s.tags.stats.reserved_pages == 2
    s.tags.free_tag_storage(np.array([S + 63]))
    assert states(s, 2) == [TP_FREE, TP_FREE]
    assert s.tags.stats.reserved_pages == 0 and s.tags.stats.cmo_pages == 4


def test_second_reservation_of_a_reserved_block_claims_nothing(make_system):
    s = make_system()
    S = s.S
    s.tags.reserve_tag_storage(np.array([S]))
    s.tags.reserve_tag_storage(np.array([S + 1, S + 32]))
    assert s.tags.refs[:2].tolist() == [2, 1]
    st = s.tags.stats
    assert st.blocks_claimed == 2 and st.reserved_pages == 2 and st.cmo_pages == 2
    assert s.tags.stats.reservations == 3


def test_one_reservation_call_per_folio(make_system):
    s = make_system()
    s.tags.set_ptes_at(np.arange(s.S, s.S + 8), order=2)
    assert s.tags.stats.reservations == 2
    assert int(s.tags.refs[0]) == 8


def test_idle_design_counts_reservations_but_no_cache_maintenance(make_system):
    s = make_system(backend=False)
    S = s.S
    s.tags.reserve_tag_storage(np.array([S, S + 5, S + 31]))
    assert int(s.tags.refs[0]) == 3
    assert s.tags.stats.blocks_claimed == 1 and s.tags.stats.reserved_pages == 1
    s.tags.free_tag_storage(np.array([S, S + 5, S + 31]))
    assert s.tags.stats.reserved_pages == 0 and s.tags.stats.reserved_peak == 1
    assert s.tags.stats.cmo_pages == 0
    assert s.cc.stats.reclaimed == 0
    assert s.walk() == dict.fromkeys(RULES, 0)


def test_each_hook_reserves_before_tags_are_written(make_system):
    s = make_system()
    S = s.S
    s.tags.set_ptes_at(np.array([S]))                        # PROT_MTE mapping
    s.tags.copy_highpage(np.array([S + 32]), np.array([S]))  # CoW / migration destination
    s.tags.arch_swap_restore(np.array([S + 64]))             # swap-in
    assert s.tags.refs[:3].tolist() == [1, 1, 1]
    assert states(s, 3) == [TP_TAGS] * 3
    assert s.tags.stats.reservations == 3
    assert s.violations() == dict.fromkeys(RULES, 0)


def test_reserving_a_page_no_region_covers_is_refused(make_system):
    s = make_system()
    rc = s.tags.reserve_tag_storage(np.array([s.S, s.layout.regions[0].tag_pfn]))
    assert rc == ERR_UNTAGGABLE
    assert not s.tags.refs.any() and s.tags.stats.reservations == 0   # nothing changed


def test_freeing_an_unreserved_page_is_counted_not_fatal(make_system):
    s = make_system()
    s.tags.free_tag_storage(np.array([s.S]))          # a hook that never reserved it
    assert s.tags.stats.unbalanced_releases == 1
    assert s.tags.refs[0] == 0                        # never negative


def test_reservation_drops_clean_copy_and_models_latency(make_system):
    s = make_system()
    # A clean page evicted from the page cache lands on tag page 0 (the first free one).
    s.pc.read(0, 40, 1)                          # a random read: exactly one page cached
    assert s.pc.nr_pages == 1
    s.evict(0, 40)
    assert s.cc.stats.stored == 1
    assert int(s.backend.slot_tp[s.slot(0, 40)]) == 0
    c = s.tags.costs
    s.tags.reserve_tag_storage(np.array([s.S + 1]))       # block 0: the cached page must go
    s.tags.reserve_tag_storage(np.array([s.S + 32]))      # block 1: free, nothing dropped
    assert s.cc.stats.reclaimed == 1 and s.cc.stats.collateral == 0
    assert s.cc.cached == 0
    assert s.tags.stats.reservation_failures == 0
    assert s.tags.stats.dropped.tolist() == [1, 0]
    assert s.tags.stats.claimed.tolist() == [True, True]
    lat = s.tags.stats.latency.tolist()
    assert lat == [c.tag_lookup + c.tag_page_claim + c.cmo_page + c.cleancache_drop,
                   c.tag_lookup + c.tag_page_claim + c.cmo_page]
    s.tags.reserve_tag_storage(np.array([s.S + 2]))       # block 0 again: a lookup only
    assert s.tags.stats.latency.tolist()[-1] == c.tag_lookup
    assert not s.tags.stats.claimed[-1]
    # The page is read from disk again: the copy is gone.
    read_before = s.pc.stats.pages_read
    s.pc.read(0, 40, 1)
    assert s.cc.stats.restored == 0
    assert s.pc.stats.pages_read == read_before + 1
    assert s.walk([s.S + 1, s.S + 2, s.S + 32]) == dict.fromkeys(RULES, 0)
