"""The compiled cleancache frontend, tag-storage backend, tag reservation, page allocator and
anonymous memory (engine/cleancache.py, tagstore.py, tags.py, page_alloc.py, anon.py) against
the object model they reproduce: the same random operation sequences through both, then every
counter and every array compared; and the same sequence compiled and with NUMBA_DISABLE_JIT=1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


# -- (c) page allocator and anonymous memory ---------------------------------------------------

def split_layout(blk: int):
    """3 untaggable pages (so PFN alignment is not index alignment), 256 tagged pages, their
    8 tag pages, 32 more untaggable pages: one DRAM bank."""
    from tagcache.hw.layout import MachineLayout, TagRegion
    base = 0x8000_0000
    return MachineLayout(dram=[(base - 0x3000, 0x3000 + 1 * MIB + 32 * KIB + 128 * KIB)],
                         regions=[TagRegion("tags0", base + 1 * MIB, 32 * KIB, blk, base,
                                            1 * MIB)])


SPLIT = {blk: split_layout(blk) for blk in (4 * KIB, 16 * KIB)}
ALLOC_POLICIES = ("sequential", "random", "pack")


def alloc_op():
    return st.one_of(
        st.tuples(st.just("alloc"), st.integers(0, 40), st.booleans(), st.integers(0, 4)),
        st.tuples(st.just("free"), st.integers(0, 10 ** 6), st.integers(1, 24)),
        st.tuples(st.just("refs"), st.integers(0, 7), st.integers(0, 2)))


@settings(max_examples=150, deadline=None)
@given(st.lists(alloc_op(), max_size=30), st.sampled_from(ALLOC_POLICIES),
       st.integers(1, 40), st.integers(0, 3))
def test_compiled_page_allocator_is_the_object_allocator(ops, policy, chunk, seed):
    """Allocations of orders 0-4, tagged or not (counts not a whole number of blocks, and
    out of memory, too), frees of held frames, tag blocks reserved and released between
    (pack): the same PFNs in the same order, the same memmap, free count and random state."""
    from tagcache.engine import page_alloc as epa
    from tagcache.mm.page_alloc import OutOfMemory, PageAllocator

    layout = SPLIT[4 * KIB]
    refs = np.zeros(layout.nr_tag_blocks, np.int32)
    obj = PageAllocator(layout, policy, chunk, seed)
    obj.block_refs = refs
    pa = epa.make_page_alloc(layout, refs, policy, chunk, seed)
    held: list[int] = []
    for op in ops:
        if op[0] == "alloc":
            _, n, tagged, order = op
            try:
                want = ("ok", obj.alloc(n, tagged=tagged, order=order).tolist())
            except OutOfMemory:
                want = ("oom", [])
            except ValueError:
                want = ("value", [])
            rcode, pfns = epa.page_alloc(pa, n, tagged, order)
            got = ({rc.OK: "ok", rc.OUT_OF_MEMORY: "oom", rc.ERR_NOT_WHOLE: "value"}[rcode],
                   pfns.tolist())
            assert got == want
            held += want[1]
        elif op[0] == "free" and held:
            k = op[1] % len(held)
            out = np.array(held[k:k + op[2]], np.int64)
            del held[k:k + op[2]]
            obj.free_pfns(out)
            assert epa.free_pfns(pa, out) == rc.OK
        elif op[0] == "refs":
            refs[op[1]] = op[2]
        assert pa.free.tolist() == obj.free.tolist()
        assert pa.tagged.tolist() == obj.tagged.tolist()
        assert int(pa.c[epa.NR_FREE]) == obj.nr_free
    assert pa.rng.bit_generator.state == obj.rng.bit_generator.state


def test_double_free_is_refused():
    from tagcache.engine import page_alloc as epa
    from tagcache.mm.page_alloc import PageAllocator

    layout = SPLIT[4 * KIB]
    obj = PageAllocator(layout, "sequential")
    pa = epa.make_page_alloc(layout, np.zeros(layout.nr_tag_blocks, np.int32), "sequential")
    pfns = obj.alloc(2, tagged=True)
    assert epa.page_alloc(pa, 2, True, 0)[1].tolist() == pfns.tolist()
    with pytest.raises(AssertionError, match="double free"):
        obj.free_pfns(np.concatenate([pfns, pfns[:1] + 5]))
    assert epa.free_pfns(pa, np.concatenate([pfns, pfns[:1] + 5])) == rc.ERR_DOUBLE_FREE
    assert pa.free.tolist() == obj.free.tolist()


def anon_op():
    pid = st.integers(0, 5)
    return st.one_of(
        st.tuples(st.just("map"), pid, st.integers(0, 90), st.integers(0, 90)),
        st.tuples(st.just("fork"), pid, pid),
        st.tuples(st.sampled_from(["cow", "swap_out", "swap_in", "migrate"]), pid,
                  st.integers(-3, 24)),
        st.tuples(st.just("exit"), pid),
        st.tuples(st.sampled_from(["tag", "untag"]), st.integers(0, 300), st.integers(0, 2)),
        st.tuples(st.just("store"), st.integers(0, NR_SLOTS - 1), st.integers(0, 2)))


class FakeReclaim:
    """A make_room that frees a fixed count of page-cache pages per call, and logs."""

    def __init__(self, each: int | None) -> None:
        self.each, self.pages, self.log = each, 100, []

    def __call__(self, n: int) -> None:
        if self.each is not None:
            self.pages -= min(self.pages, self.each)
        self.log.append((n, self.pages))


OBJ_OPS = {"map": "mte_map", "fork": "fork", "cow": "cow", "swap_out": "swap_out",
           "swap_in": "swap_in", "migrate": "migrate", "exit": "exit", "tag": "tag_pfns",
           "untag": "untag_pfns"}


def run_anon(ops, policy: str, folio_order: int, blk: int, cc_policy: str | None,
             reclaim_each: int | None, *, seed: int = 1, chunk: int = 8):
    """The ops through AnonMemory (PageAllocator, TagStorage, Cleancache) and the compiled
    states; a list of both sides' full state after every op."""
    from tagcache.engine import anon as ean
    from tagcache.engine import page_alloc as epa
    from tagcache.mm.anon import AnonMemory
    from tagcache.mm.page_alloc import OutOfMemory, PageAllocator

    layout = SPLIT[blk]
    be = TagStorageBackend(layout, NR_SLOTS, cc_policy) if cc_policy else None
    o_cc = Cleancache(be)
    o_tags = TagStorage(layout, o_cc, CostTable())
    o_alloc = PageAllocator(layout, policy, chunk, seed)
    o_alloc.block_refs = o_tags.refs
    o_room, c_room = FakeReclaim(reclaim_each), FakeReclaim(reclaim_each)
    obj = AnonMemory(o_alloc, o_tags, o_room, folio_order)

    cc = (ecc.make_cleancache("cleancache", layout, NR_SLOTS, cc_policy) if cc_policy
          else ecc.make_cleancache())
    ts = etg.make_tag_storage(layout, cc, CostTable(), calls=4)
    pa = epa.make_page_alloc(layout, ts.refs, policy, chunk, seed)
    an = ean.make_anon(pa, ts, folio_order, nr_pids=2, pool_pages=16)   # both grow
    fns = {"map": ean.anon_mte_map, "fork": ean.anon_fork, "cow": ean.anon_cow,
           "swap_out": ean.anon_swap_out, "swap_in": ean.anon_swap_in,
           "migrate": ean.anon_migrate, "exit": ean.anon_exit, "tag": ean.anon_tag_pfns,
           "untag": ean.anon_untag_pfns}
    takes_room = {"map", "cow", "swap_in", "migrate", "tag"}
    names = {rc.OK: None, rc.OUT_OF_MEMORY: "oom", rc.ERR_UNTAGGABLE: "value",
             rc.ERR_DOUBLE_FREE: "assert"}
    out_o, out_c = [], []
    for op in ops:
        kind, args = op[0], list(op[1:])
        if kind == "store":
            head = min(args[0], NR_SLOTS - (1 << args[1]))
            o_cc.store_folio(head, args[1], dirty=False)
            ecc.cleancache_store_folio(cc, head, args[1], False)
            continue
        if kind in ("tag", "untag"):
            args[0] += layout.pfn_base              # index 0: the span's first frame
        try:
            getattr(obj, OBJ_OPS[kind])(*args)
            o_err = None
        except OutOfMemory:
            o_err = "oom"
        except ValueError:
            o_err = "value"
        except AssertionError:       # a captured free of a process's frame, then its exit
            o_err = "assert"
        if kind in takes_room:
            code = ean.anon_call(an, fns[kind], *args, make_room=c_room)
        else:
            code = int(fns[kind](an, *args))
        out_o.append((kind, o_err))
        out_c.append((kind, names[code]))
        out_o.append(anon_state_obj(obj, o_room))
        out_c.append(anon_state_compiled(an, c_room))
        if o_err == "assert":
            break                    # the run stops there
    return out_o, out_c


def anon_state_obj(obj, room) -> dict:
    alloc, tags = obj.alloc, obj.tags
    s = tags.stats
    return {"procs": {p: v.tolist() for p, v in obj.procs.items()},
            "swapped": {p: v for p, v in obj.swapped.items() if v},
            "swapped_tagged": {p: v for p, v in obj.swapped_tagged.items() if v},
            "mapcount": obj.mapcount.tolist(), "free": alloc.free.tolist(),
            "tagged": alloc.tagged.tolist(), "nr_free": alloc.nr_free,
            "anon": [obj.nr_pages, obj.peak_pages, obj.nr_tagged, obj.peak_tagged, obj.copies],
            "refs": tags.refs.tolist(), "tags": [getattr(s, k) for k in etg.STAT_NAMES],
            "calls": [np.concatenate(x).tolist() if x else []
                      for x in (s.latency, s.claimed, s.dropped)],
            "cc": [getattr(tags.cleancache.stats, k) for k in ets.FRONTEND_COUNTERS]
            + [tags.cleancache.cached],
            "room": list(room.log), "rng": alloc.rng.bit_generator.state["state"]}


def anon_state_compiled(an, room) -> dict:
    from tagcache.engine import anon as ean
    from tagcache.engine import page_alloc as epa

    pa, ts = an.pa, an.ts
    sw, swt = ean.anon_swapped(an)
    rep = ean.anon_report(an)
    cc = ts.cc
    return {"procs": {p: v.tolist() for p, v in ean.anon_procs(an).items()},
            "swapped": sw, "swapped_tagged": swt,
            "mapcount": an.mapcount.tolist(), "free": pa.free.tolist(),
            "tagged": pa.tagged.tolist(), "nr_free": int(pa.c[epa.NR_FREE]),
            "anon": [rep[k] for k in ean.STAT_NAMES],
            "refs": ts.refs.tolist(), "tags": list(etg.tag_storage_report(ts).values()),
            "calls": [a.tolist() for a in etg.reservation_calls(ts)],
            "cc": [int(cc.c[k]) for k in range(len(ets.FRONTEND_COUNTERS))]
            + [int(ecc.cleancache_cached(cc))],
            "room": list(room.log), "rng": pa.rng.bit_generator.state["state"]}


@settings(max_examples=150, deadline=None)
@given(st.lists(anon_op(), max_size=30), st.sampled_from(ALLOC_POLICIES), st.integers(0, 2),
       st.sampled_from(sorted(SPLIT)), st.sampled_from(["whole", "split", None]),
       st.sampled_from([None, 7]))
def test_compiled_anon_memory_is_the_object_anon_memory(ops, policy, folio_order, blk,
                                                        cc_policy, reclaim_each):
    """map (up to 90 pages), fork, CoW, swap-out and -in, migration (counts negative too),
    exit, captured tag/untag (outside the tagged memory too) and stores into the cleancache
    between, on 291 data pages (out of memory comes soon), folios of order 0-2, every
    allocation policy, with and without the backend, make_room doing nothing or freeing a
    fixed count: after every op the same outcome, PFN lists, swap counts, mapcount, memmap,
    refcounts, reservation calls, cleancache counters, make_room calls and random state."""
    out_o, out_c = run_anon(ops, policy, folio_order, blk, cc_policy, reclaim_each)
    assert out_c == out_o


# -- the step functions as plain Python ----------------------------------------------------------

SCRIPT = """
import json, numpy as np
from tagcache.costs import CostTable
from tagcache.engine import anon as ean, cleancache as ecc, page_alloc as epa, tags as etg
from tagcache.hw.layout import MachineLayout, TagRegion
base = 0x8000_0000
layout = MachineLayout(dram=[(base - 0x3000, 0x3000 + (1 << 20) + (160 << 10))],
                       regions=[TagRegion("t", base + (1 << 20), 32 << 10, 8192, base, 1 << 20)])
out = []
for policy, cc_policy in (("random", "whole"), ("pack", "split"), ("sequential", "whole")):
    cc = ecc.make_cleancache("cleancache", layout, 64, cc_policy)
    ts = etg.make_tag_storage(layout, cc, CostTable(), calls=4)
    pa = epa.make_page_alloc(layout, ts.refs, policy, 8, 3)
    an = ean.make_anon(pa, ts, 1, nr_pids=2, pool_pages=16)
    rng = np.random.default_rng(11)
    room = []
    for i in range(400):
        k = int(rng.integers(0, 8))
        pid, n = int(rng.integers(0, 6)), int(rng.integers(0, 40))
        if k == 0:
            code = ean.anon_call(an, ean.anon_mte_map, pid, n, int(rng.integers(0, 40)),
                                 make_room=room.append)
        elif k == 1:
            code = ean.anon_fork(an, pid, int(rng.integers(0, 6)))
        elif k == 2:
            code = ean.anon_call(an, ean.anon_cow, pid, n, make_room=room.append)
        elif k == 3:
            code = ean.anon_swap_out(an, pid, n)
        elif k == 4:
            code = ean.anon_call(an, ean.anon_swap_in, pid, n, make_room=room.append)
        elif k == 5:
            code = ean.anon_call(an, ean.anon_migrate, pid, n, make_room=room.append)
        elif k == 6:
            code = ean.anon_exit(an, pid)
        else:
            h, o = int(rng.integers(0, 60)), int(rng.integers(0, 3))
            ecc.cleancache_store_folio(cc, h - h % (1 << o), o, False)
            code = int(ecc.cleancache_restore_folio(cc, int(rng.integers(0, 64)), 1))
        out.append(int(code))
    out += [sorted((p, v.tolist()) for p, v in ean.anon_procs(an).items()),
            an.mapcount.tolist(), pa.free.tolist(), pa.tagged.tolist(), ts.refs.tolist(),
            list(etg.tag_storage_report(ts).values()), ean.anon_report(an),
            [a.tolist() for a in etg.reservation_calls(ts)], ecc.cleancache_report(cc),
            cc.tp_state.tolist(), cc.slot_tp.tolist(), room]
print(json.dumps(out))
"""


def test_uncompiled_engine_gives_the_same_results():
    """The step functions as plain Python (NUMBA_DISABLE_JIT=1, in a subprocess) and
    compiled give identical states after the same sequence, on every allocation policy."""
    runs = []
    for jit_off in ("0", "1"):
        env = dict(os.environ, NUMBA_DISABLE_JIT=jit_off)
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                             text=True, timeout=300, check=True)
        runs.append(json.loads(out.stdout))
    assert runs[0] == runs[1]
    codes = runs[0][:400]
    assert rc.OUT_OF_MEMORY in codes and rc.OK in codes
