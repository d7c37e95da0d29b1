"""The compiled cleancache frontend, tag-storage backend, tag reservation, page allocator and
anonymous memory (engine/cleancache.py, tagstore.py, tags.py, page_alloc.py, anon.py) against
the object model they reproduce: the same random operation sequences through both, then every
counter and every array compared; and the same sequence compiled and with NUMBA_DISABLE_JIT=1."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagcache.cleancache.backends.tagstore import TagStorageBackend
from tagcache.cleancache.frontend import Cleancache
from tagcache.costs import CostTable
from tagcache.engine import cleancache as ecc
from tagcache.engine import rc
from tagcache.engine import tags as etg
from tagcache.engine import tagstore as ets
from tagcache.hw.layout import simple_layout
from tagcache.mte import TagStorage

KIB, MIB = 1 << 10, 1 << 20

NR_SLOTS = 48
LAYOUTS = {blk: simple_layout(1 * MIB, blk) for blk in (4 * KIB, 8 * KIB, 16 * KIB)}
"""256 data pages, 8 tag pages, in blocks of 1, 2 or 4 tag pages."""

BACKEND_ARRAYS = ("tp_state", "tp_order", "tp_slot", "tp_prev", "tp_next", "in_stack",
                  "free_stack", "slot_tp")


def backend_state(be: TagStorageBackend) -> dict:
    d = {k: getattr(be, k).tolist() for k in BACKEND_ARRAYS}
    d.update(free_top=be.free_top, nr_free=be.nr_free, nr_cached=be.nr_cached,
             peak_cached=be.peak_cached, evicted=be.evicted)
    return d


def compiled_backend_state(cc) -> dict:
    d = {k: getattr(cc, k).tolist() for k in BACKEND_ARRAYS}
    c = cc.c
    d.update(free_top=int(c[ets.FREE_TOP]), nr_free=int(c[ets.NR_FREE]),
             nr_cached=int(c[ets.NR_CACHED]), peak_cached=int(c[ets.PEAK_CACHED]),
             evicted=int(c[ets.EVICTED]))
    return d


def cc_op():
    slot = st.integers(0, NR_SLOTS - 1)
    return st.one_of(
        st.tuples(st.just("store"), slot, st.integers(0, 3), st.booleans()),
        st.tuples(st.just("restore"), slot, st.integers(1, 8)),
        st.tuples(st.just("invalidate"), slot, st.integers(0, 9)),
        st.tuples(st.just("reserve"), st.integers(0, 7)),
        st.tuples(st.just("release"), st.integers(0, 7)))


def run_frontends(ops, blk: int, policy: str):
    """The ops through Cleancache(TagStorageBackend) and the compiled state: results and
    states after every op. A release is of a reserved block only (the object asserts)."""
    layout = LAYOUTS[blk]
    be = TagStorageBackend(layout, NR_SLOTS, policy)
    obj = Cleancache(be)
    cc = ecc.make_cleancache("cleancache", layout, NR_SLOTS, policy)
    reserved: set[int] = set()
    out_o, out_c = [], []
    for op in ops:
        kind = op[0]
        if kind == "store":
            _, head, order, dirty = op
            head = min(head, NR_SLOTS - (1 << order))
            obj.store_folio(head, order, dirty=dirty)
            ecc.cleancache_store_folio(cc, head, order, dirty)
        elif kind == "restore":
            _, head, nr = op
            nr = min(nr, NR_SLOTS - head)
            out_o.append(obj.restore_folio(head, nr))
            out_c.append(bool(ecc.cleancache_restore_folio(cc, head, nr)))
        elif kind == "invalidate":
            _, first, n = op
            obj.invalidate_range(first, first + n)
            ecc.cleancache_invalidate_range(cc, first, first + n)
        else:
            b = op[1] % layout.nr_tag_blocks
            if kind == "reserve" and b not in reserved:
                w = be.reserve_block(b)
                ets.tagstore_reserve_block(cc, b)
                out_o.append([w.dropped, w.collateral, w.folios, w.copied, int(w.slept),
                              int(w.failed)])
                out_c.append(cc.c[ets.W_DROPPED:ets.W_FAILED + 1].tolist())
                reserved.add(b)
            elif kind == "release" and b in reserved:
                be.release_block(b)
                ets.tagstore_release_block(cc, b)
                reserved.discard(b)
        out_o.append(backend_state(be))
        out_c.append(compiled_backend_state(cc))
    s = obj.stats
    out_o.append([getattr(s, k) for k in ets.FRONTEND_COUNTERS] + [obj.cached, obj.evicted])
    rep = ecc.cleancache_report(cc)
    out_c.append([rep[k] for k in ets.FRONTEND_COUNTERS] + [rep["cached"], rep["evicted"]])
    assert be.verify() == []
    assert ecc.cleancache_errors(cc) == 0
    return out_o, out_c


@settings(max_examples=150, deadline=None)
@given(st.lists(cc_op(), max_size=60), st.sampled_from(sorted(LAYOUTS)),
       st.sampled_from(["whole", "split"]))
def test_compiled_cleancache_is_the_object_cleancache(ops, blk, policy):
    """Stores (clean and dirty, orders 0-3, heads anywhere), restores, invalidations, block
    reservations and releases on 8 tag pages in blocks of 1, 2 or 4, both large-folio
    policies: after every op every backend array and counter is equal, and so are each
    restore's answer, each claim's ReserveWork and the frontend's counters at the end."""
    out_o, out_c = run_frontends(ops, blk, policy)
    assert out_c == out_o


def test_no_backend_counts_nothing():
    cc = ecc.make_cleancache()
    ecc.cleancache_store_folio(cc, 0, 2, False)
    assert not ecc.cleancache_restore_folio(cc, 0, 4)
    ecc.cleancache_invalidate_range(cc, 0, 9)
    assert ecc.cleancache_cached(cc) == 0
    assert set(ecc.cleancache_report(cc).values()) == {0}
    assert ecc.simulator_bytes_per_tag_page(cc) == 0.0


def test_reporting_figures_match_the_object_backend():
    layout = LAYOUTS[8 * KIB]
    be = TagStorageBackend(layout, NR_SLOTS)
    cc = ecc.make_cleancache("cleancache", layout, NR_SLOTS)
    assert ecc.simulator_bytes_per_tag_page(cc) == be.simulator_bytes_per_tag_page()
    assert ecc.metadata_bytes_per_tag_page(cc) == be.metadata_bytes_per_tag_page()
    with pytest.raises(ValueError, match="policy"):
        ecc.make_cleancache("cleancache", layout, NR_SLOTS, "halves")


def test_the_single_door_refuses_an_edge_the_diagram_lacks():
    """Releasing a block that holds no tags (FREE -> FREE): the object backend asserts, the
    compiled one refuses, leaves the state as it was and counts it."""
    layout = LAYOUTS[4 * KIB]
    be = TagStorageBackend(layout, NR_SLOTS)
    with pytest.raises(AssertionError, match="not an edge"):
        be.release_block(3)
    cc = ecc.make_cleancache("cleancache", layout, NR_SLOTS)
    before = compiled_backend_state(cc)
    ets.tagstore_release_block(cc, 3)
    assert compiled_backend_state(cc) == before
    assert int(cc.c[ets.BAD_EDGES]) == 1 and int(cc.c[ets.BAD_EDGE_TP]) == 3


# -- (b) tag storage: reserve_tag_storage / free_tag_storage -----------------------------------

def tags_op():
    pfn = st.integers(0, 255)
    return st.one_of(
        st.tuples(st.just("reserve"), st.lists(pfn, min_size=0, max_size=12),
                  st.integers(0, 3)),
        st.tuples(st.just("free"), st.lists(pfn, min_size=0, max_size=8)),
        st.tuples(st.just("store"), st.integers(0, NR_SLOTS - 1), st.integers(0, 2)),
        st.tuples(st.just("restore"), st.integers(0, NR_SLOTS - 1), st.integers(1, 4)))


def run_tag_storage(ops, blk: int, policy: str | None, costs=None):
    """The ops through TagStorage(Cleancache(TagStorageBackend)) (``policy`` None: no
    backend) and the compiled states; both sides' full state at the end."""
    layout = LAYOUTS[blk]
    costs = costs or CostTable()
    be = TagStorageBackend(layout, NR_SLOTS, policy) if policy else None
    obj_cc = Cleancache(be)
    obj = TagStorage(layout, obj_cc, costs)
    cc = (ecc.make_cleancache("cleancache", layout, NR_SLOTS, policy) if policy
          else ecc.make_cleancache())
    ts = etg.make_tag_storage(layout, cc, costs, calls=2)      # grows under test
    base = layout.pfn_base
    for op in ops:
        if op[0] == "reserve":
            pfns = np.array(op[1], np.int64) + base
            obj.reserve_tag_storage(pfns, op[2])
            assert etg.reserve_tag_storage(ts, pfns, op[2]) == 0
        elif op[0] == "free":
            pfns = np.array(op[1], np.int64) + base
            obj.free_tag_storage(pfns)
            assert etg.free_tag_storage(ts, pfns) == 0
        elif op[0] == "store":
            head = min(op[1], NR_SLOTS - (1 << op[2]))
            obj_cc.store_folio(head, op[2], dirty=False)
            ecc.cleancache_store_folio(cc, head, op[2], False)
        else:
            nr = min(op[2], NR_SLOTS - op[1])
            obj_cc.restore_folio(op[1], nr)
            ecc.cleancache_restore_folio(cc, op[1], nr)
    s = obj.stats
    o = {k: getattr(s, k) for k in etg.STAT_NAMES}
    o.update(refs=obj.refs.tolist(),
             calls=[np.concatenate(x).tolist() if x else [] for x in (s.latency, s.claimed,
                                                                     s.dropped)],
             cc=[getattr(obj_cc.stats, k) for k in ets.FRONTEND_COUNTERS])
    o["backend"] = backend_state(be) if be is not None else None
    c = etg.tag_storage_report(ts)
    c.update(refs=ts.refs.tolist(), calls=[a.tolist() for a in etg.reservation_calls(ts)],
             cc=[int(cc.c[k]) for k in range(len(ets.FRONTEND_COUNTERS))])
    c["backend"] = compiled_backend_state(cc) if policy else None
    return o, c


@settings(max_examples=150, deadline=None)
@given(st.lists(tags_op(), max_size=40), st.sampled_from(sorted(LAYOUTS)),
       st.sampled_from(["whole", "split", None]))
def test_compiled_tag_storage_is_the_object_tag_storage(ops, blk, policy):
    """Reservations of folios of orders 0-3 (PFNs repeated, in any order), frees (unbalanced
    ones too), stores and restores in between, with and without the backend: refcounts,
    counters, every call's latency, claim flag and drop count, the frontend's counters and
    the backend's arrays all equal."""
    o, c = run_tag_storage(ops, blk, policy)
    assert c == o


def test_every_cost_moves_the_latency_alike():
    """Each cost entry changed in turn gives the same per-call latencies on both sides."""
    ops = [("store", 0, 2), ("store", 8, 0), ("reserve", [0, 1, 40, 33], 1),
           ("reserve", [64, 65, 66, 67], 2), ("free", [0, 1, 40, 33]),
           ("reserve", [0], 0)]
    for k in CostTable.keys():
        costs = replace(CostTable(), **{k: 7.25})
        o, c = run_tag_storage(ops, 8 * KIB, "whole", costs)
        assert c == o


def test_untaggable_pfn_is_refused_before_anything_changes():
    layout = simple_layout(1 * MIB)
    obj = TagStorage(layout, Cleancache(None), CostTable())
    bad = np.array([layout.pfn_base + 3, layout.pfn_base + 256], np.int64)   # a tag page
    with pytest.raises(ValueError, match="no tag region"):
        obj.reserve_tag_storage(bad)
    ts = etg.make_tag_storage(layout, ecc.make_cleancache())
    assert etg.reserve_tag_storage(ts, bad, 0) == rc.ERR_UNTAGGABLE
    assert etg.tag_storage_report(ts)["reservations"] == 0 and not ts.refs.any()
