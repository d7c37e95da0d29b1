"""The designs' own rules: replacement inside the tag-page store (FIFO, LRU, S3-FIFO), the
2025 GCMA frontend, the CMA design's fallbacks, failures and migrations, the oracle bound, and
`tagcache compare` on the default scenario with its report opened in a browser."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _engine import MIB, build_system
from hypothesis import given, settings
from hypothesis import strategies as st
from test_report_html import check_plots, chromium, dump_doms, expected_traces  # noqa: F401

from tagcache.backends.claim import (
    _PROJECTION,
    ACTIVE,
    CELL_FRAME0,
    CELL_INTS,
    CELL_STATE,
    CELL_TAGGED,
    CLAIMED,
    INACTIVE,
    NR_IDLE,
    cell_set,
)
from tagcache.cli import main
from tagcache.engine.cleancache import (
    FIELDS,
    CleancacheState,
    _unpack,
    backend_report,
    backend_waits,
    cleancache_attach_frames,
    cleancache_lend,
)
from tagcache.engine.tags import make_tag_storage, set_ptes_at
from tagcache.engine.tagstore import BAD_EDGES, NR_MOVABLE, TP_MOVABLE
from tagcache.hw.layout import simple_layout
from tagcache.workloads.events import FileTable

SMALL = simple_layout(16 * MIB)          # 128 tag pages


def _files(n: int = 2, size: int = 1024) -> FileTable:
    return FileTable.build(np.ones(n, np.int64), np.arange(1, n + 1), np.full(n, size))


def _gcma(replacement: str):
    return build_system(_files(), layout=SMALL, backend="gcma",
                        params={"replacement": replacement})


def _present(s, slots) -> int:
    where = np.asarray(s.cc.state.slot_tp)
    return int(np.count_nonzero(where[np.asarray(slots)] >= 0))


@pytest.mark.parametrize("replacement, kept", [("fifo", 0), ("lru", 1)])
def test_lru_keeps_what_was_used_and_fifo_does_not(replacement, kept):
    """Non-exclusive (gcma): page A stored first and read since; a full cache makes room
    for one more. FIFO drops A (oldest in), LRU the page never read again."""
    s = _gcma(replacement)
    t = SMALL.nr_tag_pages
    slots = [s.slot(0, i) for i in range(t + 1)]
    for x in slots[:t]:
        s.cc.store_folio(x, 0, dirty=False)
    assert s.cc.restore_folio(slots[0], 1)               # A read: rotated under LRU
    s.cc.store_folio(slots[t], 0, dirty=False)           # one more: something must go
    assert _present(s, [slots[0]]) == kept
    assert _present(s, [slots[1]]) == 1 - kept
    assert s.backend.verify() == []


def test_s3fifo_resists_a_scan_that_flushes_lru():
    """A hot set read again and again, then a scan of once-used pages three times the
    cache: S3-FIFO keeps the hot set (frequencies promote it to the main queue, the scan
    passes through the small queue), LRU loses all of it."""
    kept = {}
    for replacement in ("lru", "s3fifo"):
        s = _gcma(replacement)
        hot = [s.slot(0, i) for i in range(16)]
        for x in hot:
            s.cc.store_folio(x, 0, dirty=False)
        for _ in range(3):
            for x in hot:
                assert s.cc.restore_folio(x, 1)
        for i in range(3 * SMALL.nr_tag_pages):
            s.cc.store_folio(s.slot(1, i), 0, dirty=False)
        kept[replacement] = _present(s, hot)
        assert s.backend.verify() == []
        assert sum(s.violations().values()) == 0
    assert kept["lru"] == 0
    assert kept["s3fifo"] == 16


def test_s3fifo_ghost_admits_a_returning_page_to_the_main_queue():
    """A page evicted unread from the small queue and stored again while remembered goes to
    the main queue: it then outlives a scan that a page first seen does not."""
    s = build_system(_files(), layout=SMALL, backend="cleancache",
                     params={"replacement": "s3fifo"})
    t = SMALL.nr_tag_pages
    a = s.slot(0, 0)
    s.cc.store_folio(a, 0, dirty=False)
    for i in range(1, t + 8):                            # a falls out, into the ghost
        s.cc.store_folio(s.slot(0, i), 0, dirty=False)
    assert _present(s, [a]) == 0
    assert s.cc.restore_folio(a, 1) is False
    s.cc.store_folio(a, 0, dirty=False)                  # back: to main
    for i in range(t, t + t // 2):                       # half a cache of new pages
        s.cc.store_folio(s.slot(1, i), 0, dirty=False)
    assert _present(s, [a]) == 1
    assert s.backend.verify() == []


def test_under_exclusive_restore_lru_takes_fifos_steps():
    """The 2011 frontend hands a copy back on a hit, so nothing stored is ever touched:
    LRU and FIFO end with the same pages on the same tag pages."""
    rng = np.random.default_rng(3)
    ops = [(int(rng.integers(0, 2)), int(rng.integers(0, 400))) for _ in range(3000)]
    states = []
    for replacement in ("fifo", "lru"):
        s = build_system(_files(), layout=SMALL, backend="cleancache",
                         params={"replacement": replacement})
        for op, i in ops:
            if op:
                s.cc.store_folio(s.slot(0, i), 0, dirty=False)
            else:
                s.cc.restore_folio(s.slot(0, i), 1)
        states.append(np.asarray(s.cc.state.slot_tp).copy())
    assert np.array_equal(states[0], states[1])


@pytest.mark.parametrize("placement", ["first", "cold"])
def test_cold_placement_keeps_copies_off_pages_tags_just_gave_back(placement):
    """Tags take tag page 0 and give it back: "first" puts the next copy there (the top of
    the free stack), "cold" anywhere else while another page is free, and there last."""
    s = build_system(_files(), layout=SMALL, backend="cleancache",
                     params={"placement": placement})
    assert s.map_tagged([s.S]) == 0 and s.unmap_tagged([s.S]) == 0
    s.cc.store_folio(s.slot(0, 0), 0, dirty=False)
    first_copy = int(s.backend.slot_tp[s.slot(0, 0)])
    assert (first_copy == 0) == (placement == "first")
    for i in range(1, SMALL.nr_tag_pages):
        s.cc.store_folio(s.slot(0, i), 0, dirty=False)
    assert s.backend.nr_free == 0 and s.cc.cached == SMALL.nr_tag_pages
    if placement == "cold":
        assert int(s.backend.slot_tp[s.slot(0, SMALL.nr_tag_pages - 1)]) == 0   # the last
    assert s.backend.verify() == [] and sum(s.violations().values()) == 0


def test_gcma_stores_only_workingset_order0_folios():
    s = build_system(_files(), layout=SMALL, backend="gcma")
    a, b, c = s.slot(0, 0), s.slot(0, 1), s.slot(0, 16)
    s.cc.store_folio(a, 0, dirty=False, workingset=False)
    s.cc.store_folio(b, 0, dirty=False, workingset=True)
    s.cc.store_folio(c, 2, dirty=False, workingset=True)  # an order-2 folio: not stored
    assert _present(s, [a, b, c, c + 1]) == 1
    st = s.cc.stats
    assert (st.stored, st.skipped) == (1, 1 + 4)
    assert s.cc.restore_folio(b, 1) and s.cc.restore_folio(b, 1)   # the copy stays
    s.cc.store_folio(b, 0, dirty=False, workingset=False)  # no longer workingset: dropped
    assert _present(s, [b]) == 0
    assert sum(s.violations().values()) == 0


def _cma(pin_rate: float):
    s = build_system(_files(), layout=SMALL, backend="cma", params={"pin_rate": pin_rate})
    cleancache_lend(s.cc.state, SMALL.nr_tag_pages, 0)  # every lent page holds data
    assert int(s.cc.state.c[NR_MOVABLE]) == SMALL.nr_tag_pages
    return s


def test_cma_migrates_sleeping_outside_atomic_context():
    s = _cma(0.0)
    assert s.map_tagged([s.S]) == 0                      # set_ptes_at: at allocation
    ts = s.tags.stats
    nr_tp = int(SMALL.block_tag_pages[0])
    assert (ts.reservation_failures, ts.claims_slept) == (0, 1)
    rep = s.tags.state.cc
    assert int(rep.c[NR_MOVABLE]) == SMALL.nr_tag_pages - nr_tp
    assert len(backend_waits(rep)) == 0                  # it slept, nobody waited on a fault
    assert ts.latency[-1] >= s.tags.costs.page_migrate * nr_tp
    assert sum(s.violations().values()) == 0             # declared: may sleep


def test_cma_falls_back_in_atomic_context_and_fails_on_pins():
    s = _cma(1.0)                                        # every page pinned
    pfn = s.S + 32 * 5
    rc = s.tags.copy_highpage([pfn], [s.S])             # atomic: cannot migrate
    assert rc == 0
    cc = s.cc.state
    nr_tp = int(SMALL.block_tag_pages[0])
    ts = s.tags.stats
    assert ts.reservation_failures == nr_tp              # each lent page was pinned
    assert ts.claims_slept == 0
    waits = backend_waits(cc)
    assert len(waits) == nr_tp
    assert (waits >= s.tags.costs.tag_fault + s.tags.costs.page_migrate).all()
    assert (np.asarray(cc.tp_state) != TP_MOVABLE).sum() >= nr_tp
    assert sum(s.violations().values()) == 0             # declared: may fail


def test_a_backend_that_does_not_declare_sleeping_is_caught_sleeping():
    """Rule 4 is held against what a backend declares: the same cma claim, with the
    declaration taken away, is a violation."""
    s = _cma(0.0)
    fields = list(_unpack(s.cc.state))
    names = [f for f, _ in FIELDS]
    fields[names.index("may_sleep")] = fields[names.index("can_fail")] = 0
    undeclared = CleancacheState(*fields)                # the same arrays, no declaration
    ts = make_tag_storage(SMALL, undeclared, s.tags.costs)
    assert set_ptes_at(ts, np.array([s.S], np.int64), 0) == 0
    assert s.violations()["reserve_bounded"] == 1


def _claim(**params):
    return build_system(_files(), layout=SMALL, backend="claim", params=params)


def _cell_states(cc) -> np.ndarray:
    return np.asarray(cc.cells)[CELL_STATE::CELL_INTS]


def _with_free_frames(cc, per_cell) -> np.ndarray:
    """The allocator's free frames, ``per_cell[b]`` at the start of tag block b's frames."""
    free = np.zeros(SMALL.nr_pfns, np.bool_)
    block_map = np.asarray(SMALL.block_map)
    frames = [int(np.flatnonzero(block_map == b)[0]) << SMALL.block_shift
              for b in range(SMALL.nr_tag_blocks)]
    if len(cc.cells):
        assert (np.asarray(cc.cells)[CELL_FRAME0::CELL_INTS] == frames).all()
    for b, n in enumerate(per_cell):
        free[frames[b]:frames[b] + n] = True
    cleancache_attach_frames(cc, free)
    return free


def test_claim_lends_the_fewest_free_cells_and_activates_the_most_free():
    """C.1 takes inactive cells covering at most 8 free frames, bucket 0 first, then 1-8;
    the refill thread activates the cells with the most free frames until its target of
    free frames under active cells is met; the allocator sees exactly the active ones."""
    s = _claim(free_target=40, reserve=0)
    cc = s.cc.state
    _with_free_frames(cc, [b % 33 for b in range(SMALL.nr_tag_blocks)])
    cleancache_lend(cc, 5, 1 << 20)                # no page cache: every free frame counts
    states = _cell_states(cc)
    assert set(np.flatnonzero(states == CLAIMED)) == {0, 33, 66, 99, 1}
    assert set(np.flatnonzero(states == ACTIVE)) == {32, 65}      # 32 free each: 64 >= 40
    assert set(np.flatnonzero(np.asarray(cc.block_active))) == {32, 65}
    first = np.asarray(cc.block_first_tag_page)
    assert (np.asarray(cc.tp_state)[first] == _PROJECTION[states]).all()
    assert int(cc.c[NR_MOVABLE]) == 5
    cleancache_lend(cc, 0, 1 << 20)                # the page cache shrank: F.1
    assert not (_cell_states(cc) == CLAIMED).any() and int(cc.c[NR_MOVABLE]) == 0
    assert sum(s.violations().values()) == 0


def test_claim_reserves_by_the_cells_state_and_drains_idle_cells():
    """A tagged page on a claimed cell waits for its relocation (sleeps, migrates); on an
    inactive one it is activated at once; freeing it leaves the cell active and idle, and
    the refill thread drains it when more than ``reserve`` are idle. No fallbacks: every
    reservation is made where XNU may wait, at allocation, also for copy_highpage()."""
    s = _claim(pin_rate=0.0, reserve=0)
    cc = s.cc.state
    cleancache_lend(cc, 4, 0)                      # no allocator: every cell claimable
    assert (_cell_states(cc)[:4] == CLAIMED).all()
    assert s.map_tagged([s.S]) == 0                # cell 0: claimed
    ts = s.tags.stats
    assert (ts.claims_slept, ts.reservation_failures) == (1, 0)
    assert ts.latency[-1] >= s.tags.costs.page_migrate
    rep = backend_report(cc)
    assert (rep["reclaimed_inline"], rep["migrated"]) == (1, 1)
    assert _cell_states(cc)[0] == ACTIVE and int(cc.c[NR_MOVABLE]) == 3
    assert s.tags.copy_highpage([s.S + 32 * 10], [s.S]) == 0     # cell 10: inactive
    rep = backend_report(cc)
    assert rep["activated_inline"] == 1 and rep["fallbacks"] == 0
    assert s.tags.stats.claims_slept == 1
    assert s.unmap_tagged([s.S]) == 0
    assert _cell_states(cc)[0] == ACTIVE and backend_report(cc)["active_idle"] == 1
    cleancache_lend(cc, 3, 0)                      # the refill thread: above reserve 0
    assert _cell_states(cc)[0] != ACTIVE and _cell_states(cc)[10] == ACTIVE
    assert backend_report(cc)["deactivated"] == 1
    assert sum(s.violations().values()) == 0


def test_claim_waits_for_a_pin_before_relocating():
    s = _claim(pin_rate=1.0, pin_ms=5.0)
    cc = s.cc.state
    cleancache_lend(cc, 1, 0)
    assert s.map_tagged([s.S]) == 0
    assert s.tags.stats.reservation_failures == 1
    waits = backend_waits(cc)
    assert len(waits) == 1 and 0 <= waits[0] <= 5e6
    assert backend_report(cc)["pinned"] == 1 and _cell_states(cc)[0] == ACTIVE
    assert sum(s.violations().values()) == 0


def test_claim_refuses_an_edge_off_the_diagram():
    s = _claim()
    cc = s.cc.state
    assert not cell_set(cc, 3, ACTIVE)             # INACTIVE -> ACTIVE skips ACTIVATING
    assert _cell_states(cc)[3] == INACTIVE and int(cc.c[BAD_EDGES]) == 1


@settings(max_examples=60, deadline=None)
@given(free=st.lists(st.integers(0, 32), min_size=128, max_size=128),
       ops=st.lists(st.tuples(st.sampled_from("lrf"), st.integers(0, 127),
                              st.integers(0, 1 << 20)), max_size=40),
       pin=st.sampled_from([0.0, 0.5]))
def test_claim_cells_keep_their_invariants(free, ops, pin):
    """Whatever the sequence of lends, reservations and frees: the tag pages show what
    their cell's state projects to, the allocator sees the active cells, the idle count
    and the lent pages are what the cells say, no transitional state outlives a step, no
    edge is refused and the checker sees nothing wrong."""
    s = _claim(pin_rate=pin, free_target=64, reserve=4)
    cc = s.cc.state
    _with_free_frames(cc, free)
    tagged: set[int] = set()
    for op, b, x in ops:
        if op == "l":
            cleancache_lend(cc, x % 64, x)
        elif op == "r" and b not in tagged:
            assert s.map_tagged([s.S + 32 * b]) == 0
            tagged.add(b)
        elif op == "f" and b in tagged:
            assert s.unmap_tagged([s.S + 32 * b]) == 0
            tagged.discard(b)
        states = _cell_states(cc)
        used = np.asarray(cc.cells)[CELL_TAGGED::CELL_INTS]
        assert set(np.unique(states)) <= {INACTIVE, CLAIMED, ACTIVE}
        assert (np.asarray(cc.tp_state) == _PROJECTION[states]).all()
        assert (np.asarray(cc.block_active) == (states == ACTIVE)).all()
        assert all(states[t] == ACTIVE for t in tagged)
        assert set(np.flatnonzero(used)) == tagged
        assert int(cc.c[NR_IDLE]) == int(((states == ACTIVE) & (used == 0)).sum())
        assert int(cc.c[NR_MOVABLE]) == int((states == CLAIMED).sum())
    assert int(cc.c[BAD_EDGES]) == 0
    assert sum(s.violations().values()) == 0


@pytest.mark.parametrize("placement", ["first", "occupancy"])
def test_occupancy_placement_stores_where_no_frame_is_free(placement):
    """Placement "occupancy" puts copies first on the tag pages whose 32 data frames have the
    fewest free, where tagged memory (allocated into free frames) is least likely to claim
    them; "first" does not look."""
    per_block = [(7 * b) % 33 for b in range(SMALL.nr_tag_blocks)]
    best = sorted(range(SMALL.nr_tag_blocks), key=lambda b: (per_block[b], b))
    s = build_system(_files(), layout=SMALL, backend="cleancache",
                     params={"placement": placement})
    _with_free_frames(s.cc.state, per_block)
    slots = [s.slot(0, i) for i in range(10)]
    for x in slots:
        s.cc.store_folio(x, 0, dirty=False)
    used = set(np.asarray(s.cc.state.slot_tp)[slots].tolist())
    assert (used == set(best[:10])) == (placement == "occupancy")
    assert sum(s.violations().values()) == 0


def test_tagged_placement_is_a_design_axis_with_its_own_oracle():
    """``[designs] tagged_placement``: each design once per placement of its tagged pages
    (claim, which steers them itself, once); packing them under reserved tag blocks claims
    fewer blocks than placing them at random, and each row is held to the oracle that saw
    the same placement."""
    from tagcache.compare import Comparison
    from tagcache.engine.warm import _tiny
    from tagcache.experiment import run_scenario
    from tagcache.scenario import ScenarioError, parse_scenario

    scn = parse_scenario({"designs": {"backends": ["cleancache", "claim", "oracle"],
                                      "policies": ["whole"],
                                      "tagged_placement": ["random", "pack"]}}, "t.toml")
    assert [(d.backend, d.alloc) for d in scn.designs] == [
        ("cleancache", "random"), ("cleancache", "pack"), ("claim", ""),
        ("oracle", "random"), ("oracle", "pack")]
    assert len({d.key for d in scn.designs}) == len({d.label for d in scn.designs}) == 5
    with pytest.raises(ScenarioError, match=r"designs\.tagged_placement"):
        parse_scenario({"designs": {"tagged_placement": ["everywhere"]}}, "t.toml")
    tiny, _ = _tiny()
    tiny.designs = scn.designs
    exp = run_scenario(tiny, check=True)
    by = {(r.backend, r.policy["alloc"]): r for r in exp.results}
    rand, pack = by["cleancache", "random"], by["cleancache", "pack"]
    assert pack.tag_storage["blocks_claimed"] < rand.tag_storage["blocks_claimed"]
    assert pack.tag_storage["reserved_peak"] < rand.tag_storage["reserved_peak"]
    cmp = Comparison(exp)
    assert cmp.problems() == []
    for row in cmp.rows():
        if row["design"] == "cleancache" and row["tagged_share"] > 0:
            alloc = row["key"].rsplit("alloc=", 1)[1]
            oracle = by["oracle", alloc]
            r = by["cleancache", alloc]
            assert row["oracle_gap"] == pytest.approx(
                (oracle.cleancache["restored"] - r.cleancache["restored"])
                / r.page_cache["accesses"])


def test_tmem_follows_the_hosts_target_and_tags_never_touch_it():
    """The region shrinks to its target (clean copies dropped, counted as reclaimed), grows
    back, and a tag claim takes nothing from it."""
    from tagcache.engine.cleancache import cleancache_tick

    s = build_system(_files(), layout=SMALL, backend="tmem",
                     params={"shrink_to": 0.25, "shrink_at": 0.5, "grow_at": 0.75})
    t = SMALL.nr_tag_pages
    for i in range(t):
        s.cc.store_folio(s.slot(0, i), 0, dirty=False)
    assert s.cc.cached == t
    assert s.map_tagged([s.S]) == 0 and s.cc.cached == t      # tags: the static carve-out
    cleancache_tick(s.cc.state, 60, 100)                       # shrunk to a quarter
    assert s.cc.cached == t // 4 and s.cc.stats.reclaimed == t - t // 4
    for i in range(t, t + t // 2):                             # no room beyond the target
        s.cc.store_folio(s.slot(0, i), 0, dirty=False)
    assert s.cc.cached == t // 4
    cleancache_tick(s.cc.state, 80, 100)                       # given back
    for i in range(t + t // 2, 2 * t + t // 2):
        s.cc.store_folio(s.slot(1, i - t), 0, dirty=False)
    assert s.cc.cached == t
    assert s.backend.verify() == []
    assert sum(s.violations().values()) == 0


def test_zswap_packs_by_its_ratio_and_writes_back_before_tags_take_a_page():
    s = build_system(_files(), layout=SMALL, backend="zswap", params={"ratio": 2.0})
    cc = s.cc.state
    assert len(cc.tp_state) == 2 * SMALL.nr_tag_pages          # two pages per tag page
    for i in range(8):
        s.cc.store_folio(s.slot(0, i), 0, dirty=False)         # units 0..7: tag pages 0..3
    assert s.map_tagged([s.S]) == 0                            # block 0: tag page 0, units 0-1
    rep = backend_report(cc)
    assert rep["writebacks"] == 2 and s.cc.cached == 6
    assert s.tags.stats.claims_slept == 1                      # set_ptes_at may sleep
    assert s.tags.copy_highpage([s.S + 32], [s.S]) == 0       # atomic: tag page 1
    rep = backend_report(cc)
    assert rep["writebacks"] == 4 and rep["fallbacks"] == 1
    assert len(backend_waits(cc)) == 1
    assert sum(s.violations().values()) == 0


def test_compare_on_the_default_scenario(tmp_path, chromium):  # noqa: F811
    """`tagcache compare` on the default scenario: every registered design,
    no violations, cleancache and gcma never fail nor sleep, cma shows its fallbacks and
    failures under pins, the oracle never below a cleancache row; its report renders every
    plot with data in a browser."""
    out, rep = tmp_path / "c.json", tmp_path / "report"
    assert main(["compare", "--tagged-share", "0.1", "--no-progress", "--json", str(out),
                 "--report", str(rep)]) == 0
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert {r["design"] for r in rows} == {"idle", "cleancache", "gcma", "cma", "claim", "tmem",
                                           "zswap", "oracle"}
    assert data["problems"] == []
    for r in rows:
        assert r["violations"] == 0
        if r["design"] in ("cleancache", "gcma"):
            assert r["failures"] == 0 and r["claims_slept"] == 0
    tagged = [r for r in rows if r["design"] == "cma" and r["tagged_share"] > 0]
    assert tagged and all(r["fallbacks"] > 0 and r["failures"] > 0 for r in tagged)
    for share in {r["tagged_share"] for r in rows}:
        at = [r for r in rows if r["tagged_share"] == share]
        oracle = next(r for r in at if r["design"] == "oracle")
        for r in at:
            if r["design"] in ("cleancache", "gcma"):
                assert r["restored"] <= oracle["restored"]
                assert r["oracle_gap"] >= 0
    html = rep / "index.html"
    dom, = dump_doms(chromium, [html], tmp_path)
    assert check_plots(dom, expected_traces(data)) == []
