"""The compiled plain-LRU page cache (engine/lru.py) against the object model it ports
(mm/filemap.py with policy="lru", mm/vmscan.py's reclaim of it): the same counters, pages,
list order, shadows, cleancache state and checker ground truth after every sequence of
events, on random sequences, the pinned reader traces' lru designs, compiled and
interpreted (NUMBA_DISABLE_JIT=1)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagcache.cleancache.backends.tagstore import TagStorageBackend
from tagcache.cleancache.frontend import Cleancache
from tagcache.engine import checker, lru
from tagcache.engine import pagecache as kernel_pc
from tagcache.engine.checker import make_checker
from tagcache.engine.cleancache import cleancache_report, make_cleancache
from tagcache.engine.lru import (
    CACHED_SUM,
    ERROR,
    LIMIT,
    NR_PAGES,
    cached_sum,
    check_page_cache_error,
    file_counts,
    folio_arrays,
    lru_preload_foreign,
    lru_try_charge,
    lru_try_to_free_pages,
    lru_walk,
    make_lru_page_cache,
    nr_dirty,
    nr_pages,
    page_cache_stats,
    replay_columns,
    replay_lru_page_cache,
    set_limit,
    verify_lru_page_cache,
    workingset_counts,
)
from tagcache.experiment import run_trace
from tagcache.mm import vmscan as object_vmscan
from tagcache.mm.filemap import MAX_RECLAIM_RETRIES, PageCache
from tagcache.mm.lru import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE
from tagcache.scenario import parse_scenario
from tagcache.traces import read_trace
from tagcache.workloads.events import FileTable, Op, Trace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from expected_counts import (  # noqa: E402
    EXPECTED,
    READER_CASES,
    TRACE_CAPACITY,
    TRACE_SCENARIO,
    TRACES,
)
from test_engine_pagecache import (  # noqa: E402
    BACKENDS,
    CHARGE,
    FREE_PAGES,
    LAYOUTS,
    PRELOAD,
    SET_LIMIT,
    Backend,
    columns,
    compiled_cleancache,
    mixed_ops,
)

replay_mod = importlib.import_module("tagcache.replay")   # the module, not tagcache.replay()
CHECK_LAYOUT = LAYOUTS[4096]


# -- the two engines, driven alike -------------------------------------------------------------

class PageContents:
    """The object checker's page-contents ground truth (invariants.Checker's version and disk
    generations), as the object page cache's observer."""

    def __init__(self, n: int) -> None:
        self.version = np.zeros(n, np.uint32)
        self.disk = np.zeros(n, np.uint32)

    def pages_written(self, first: int, end: int) -> None:
        self.version[first:end] += 1

    def pages_cleaned(self, head: int, nr: int) -> None:
        self.disk[head:head + nr] = self.version[head:head + nr]

    def pages_truncated(self, first: int, end: int) -> None:
        self.version[first:end] += 1
        self.disk[first:end] = self.version[first:end]


def object_run(files: FileTable, ops, limit: int, backend: Backend = None,
               check: bool = False, steps: bool = True) -> tuple[PageCache, str | None]:
    """PageCache(policy="lru") after ``ops`` (stopping at the first ValueError, returned),
    with the tag-storage cleancache ``backend`` (None: none); ``pc.cached_sum`` sums the
    pages cleancache held after each page-cache event, ``pc.freed`` what each
    try_to_free_pages() returned, ``pc.steps`` (with ``steps``) the state after each event;
    with ``check`` the page contents are observed."""
    lim = [limit]
    be = None
    n = PageCache.slots_needed(files)
    if backend is not None:
        be = TagStorageBackend(backend[0], n, backend[1])
    pc = PageCache(files, Cleancache(be), lambda: lim[0], policy="lru")
    if check:
        pc.observer = PageContents(n)
    pc.cached_sum = 0
    pc.freed = []
    pc.steps = []
    table = {Op.READ: pc.read, Op.GET_PAGES: pc.get_pages, Op.WRITE: pc.write,
             Op.FAULT: lambda f, i, _: pc.fault(f, i), Op.MAP_PAGES: pc.map_pages,
             Op.TRUNCATE: lambda f, n, _: pc.truncate(f, n),
             Op.UNLINK: lambda f, _a, _b: pc.unlink(f), Op.FSYNC: lambda f, _a, _b: pc.fsync(f),
             Op.UNMOUNT: lambda d, _a, _b: pc.unmount(d),
             Op.KERNEL_ADD: lambda *_: None, Op.KERNEL_DELETE: lambda *_: None,
             PRELOAD: pc.preload_foreign,
             SET_LIMIT: lambda n, _a, _b: lim.__setitem__(0, n),
             FREE_PAGES: lambda n, _a, _b: pc.freed.append(
                 object_vmscan.try_to_free_pages(pc, n)),
             CHARGE: lambda *_: pc.charge(0)}
    for o, a, b, c in ops:
        try:
            table[o](a, b, c)
        except ValueError as e:
            return pc, str(e)
        if o not in (PRELOAD, SET_LIMIT, FREE_PAGES, CHARGE):
            pc.cached_sum += pc.cleancache.cached
        ob = pc.observer
        if steps:
            pc.steps.append((tuple(dataclasses.asdict(pc.stats).values()), pc.nr_pages,
                             pc.nr_dirty, pc.cleancache.cached,
                             tuple(pc.lru.walk(LRU_INACTIVE_FILE)),
                             ob.version.tobytes() if ob else b"",
                             ob.disk.tobytes() if ob else b""))
    return pc, None


def compiled_run(files: FileTable, ops, limit: int, backend: Backend = None,
                 check: bool = False, steps: bool = True):
    """The compiled plain LRU after ``ops``: replay_lru_page_cache() over the columns (one
    event at a time with ``steps``), the driver running the events it stops at; ``freed`` is
    what each lru_try_to_free_pages() returned, ``trail`` the state after each event (as the
    object run's ``pc.steps``; with ``steps``)."""
    cc = compiled_cleancache(files, backend)
    if check:
        ck = make_checker(CHECK_LAYOUT if backend is None else backend[0],
                          PageCache.slots_needed(files), True)
        if backend is None:
            cc = make_cleancache("idle", ck=ck)
        else:
            cc = make_cleancache("cleancache", backend[0], PageCache.slots_needed(files),
                                 backend[1], ck)
    pc = make_lru_page_cache(files, cc)
    set_limit(pc, limit)
    op, a0, a1, a2 = columns(ops)
    c = pc.c
    freed: list[int] = []
    trail: list[tuple] = []
    ck = pc.cc.ck

    def step() -> None:
        if steps:
            trail.append((tuple(page_cache_stats(pc).values()), nr_pages(pc), nr_dirty(pc),
                          cleancache_report(pc.cc)["cached"], tuple(lru_walk(pc)),
                          ck.version.tobytes(), ck.disk.tobytes()))

    i, n = 0, len(op)
    while i < n:
        stop = i + 1 if steps else n
        j = replay_lru_page_cache(pc, op, a0, a1, a2, i, stop)
        if j == stop:
            step()
            i = j
            continue
        i = j
        if c[ERROR]:
            try:
                check_page_cache_error(pc)
            except ValueError as e:
                return pc, str(e), freed, trail
        o, x, y, z = int(op[i]), int(a0[i]), int(a1[i]), int(a2[i])
        if o == PRELOAD:
            lru_preload_foreign(pc, x, y, z)
        elif o == SET_LIMIT:
            set_limit(pc, x)
        elif o == FREE_PAGES:
            freed.append(int(lru_try_to_free_pages(pc, x)))
        elif o == CHARGE:
            assert lru_try_charge(pc, 0, MAX_RECLAIM_RETRIES)
        else:
            raise AssertionError(f"replay_lru_page_cache() stopped at op {o}")
        step()
        i += 1
    return pc, None, freed, trail


def assert_same(obj: PageCache, pc) -> None:
    """Every counter and array of the compiled state equals the object model's."""
    assert page_cache_stats(pc) == dataclasses.asdict(obj.stats)
    assert (nr_pages(pc), nr_dirty(pc)) == (obj.nr_pages, obj.nr_dirty)
    assert workingset_counts(pc) == {"refault": obj.ws.refault, "activate": obj.ws.activate,
                                     "restore": obj.ws.restore,
                                     "nonresident_age": obj.ws.nonresident_age}
    assert int(pc.c[kernel_pc.REFAULTS_SNAPSHOT]) == obj.refaults_snapshot
    assert [int(pc.c[kernel_pc.NR_INACTIVE_FILE]),
            int(pc.c[kernel_pc.NR_ACTIVE_FILE])] == obj.lru.nr_pages
    arrays = folio_arrays(pc)
    for k in ("head", "order", "flags", "ever"):
        np.testing.assert_array_equal(arrays[k], getattr(obj, k), err_msg=k)
    np.testing.assert_array_equal(arrays["shadow"], obj.ws.shadow >= 0)
    assert lru_walk(pc) == list(obj.lru.walk(LRU_INACTIVE_FILE))
    assert list(obj.lru.walk(LRU_ACTIVE_FILE)) == []
    ins, reins, orders = file_counts(pc)
    np.testing.assert_array_equal(ins, obj.file_insertions)
    np.testing.assert_array_equal(reins, obj.file_reinsertions)
    np.testing.assert_array_equal(orders, obj.file_orders)
    np.testing.assert_array_equal(pc.isize, obj.isize)
    assert verify_lru_page_cache(pc) == [] and obj.verify() == []
    occ, cc = obj.cleancache, pc.cc
    assert cached_sum(pc) == obj.cached_sum
    assert cleancache_report(cc) == dataclasses.asdict(occ.stats) | {
        "evicted": occ.evicted, "cached": occ.cached,
        "peak_cached": occ.backend.peak_cached if occ.backend is not None else 0}
    if occ.backend is not None:
        for k in ("tp_state", "tp_order", "tp_slot", "slot_tp"):
            np.testing.assert_array_equal(getattr(cc, k), getattr(occ.backend, k), err_msg=k)
    if obj.observer is not None:
        np.testing.assert_array_equal(cc.ck.version, obj.observer.version)
        np.testing.assert_array_equal(cc.ck.disk, obj.observer.disk)
        assert set(checker.counts(cc.ck).values()) == {0}      # a sound run breaks no rule


def both(files: FileTable, ops, limit: int, backend: Backend = None, check: bool = False,
         steps: bool = True) -> tuple[PageCache, object]:
    """Both engines on ``ops``: equal after every event (with ``steps``) and at the end."""
    obj, err = object_run(files, ops, limit, backend, check, steps)
    pc, err2, freed, trail = compiled_run(files, ops, limit, backend, check, steps)
    assert err2 == err
    assert freed == obj.freed
    assert len(trail) == len(obj.steps)
    for k, (a, b) in enumerate(zip(trail, obj.steps, strict=True)):
        assert a == b, f"after event {k} {ops[k]}"
    assert_same(obj, pc)
    return obj, pc


# -- random sequences of every event -----------------------------------------------------------

@st.composite
def scenarios(draw):
    """Three files; a limit small enough that most misses evict; every event, reclaim and
    charges from outside, limit changes, preloaded foreign pages; the sequence repeated so
    pages are hit, refaulted and restored; no backend or the tag-storage one; the checker's
    page-contents observation on or off."""
    n = 3
    span = [draw(st.sampled_from([0, 1, 7, 40, 130])) for _ in range(n)]
    size = [draw(st.one_of(st.just(s), st.integers(0, s))) for s in span]
    dev = [draw(st.sampled_from([1, 2])) for _ in range(n)]
    files = FileTable.build(dev, list(range(n)), size, span)
    limit = draw(st.integers(0, 60))

    def on_file(g: int):
        idx = st.integers(0, span[g] + 8)
        return st.one_of(
            st.tuples(st.sampled_from([Op.READ, Op.GET_PAGES, Op.MAP_PAGES]), st.just(g), idx,
                      st.integers(0, 40)),
            st.tuples(st.just(Op.FAULT), st.just(g), idx, st.just(0)),
            st.integers(0, max(0, span[g] - 1)).flatmap(lambda i: st.tuples(
                st.just(Op.WRITE), st.just(g), st.just(i),
                st.integers(0, max(0, min(12, span[g] - i))))),
            st.tuples(st.just(Op.TRUNCATE), st.just(g), idx | st.integers(-3, 0), st.just(0)),
            st.tuples(st.sampled_from([Op.UNLINK, Op.FSYNC, Op.KERNEL_ADD]), st.just(g),
                      st.just(0), st.just(0)),
            st.tuples(st.just(PRELOAD), st.just(g), idx, st.integers(1, 30)))

    f = st.integers(0, n - 1)
    event = st.one_of(
        *[f.flatmap(on_file)] * 8,
        st.tuples(st.just(Op.UNMOUNT), st.sampled_from([1, 2]), st.just(0), st.just(0)),
        st.tuples(st.just(Op.WRITE), f, st.integers(0, 130), st.integers(1, 12)),  # past?
        st.tuples(st.just(SET_LIMIT), st.integers(0, 80), st.just(0), st.just(0)),
        st.tuples(st.sampled_from([FREE_PAGES, CHARGE]), st.integers(0, 100), st.just(0),
                  st.just(0)))
    backend = draw(st.sampled_from([None, *BACKENDS]))
    ops = draw(st.lists(event, min_size=4, max_size=40)) * draw(st.integers(1, 3))
    runs = draw(st.lists(st.tuples(f, st.integers(0, 130), st.integers(2, 40),
                                   st.sampled_from([Op.READ, Op.FAULT])), max_size=3))
    for g, start, length, o in runs:
        at = draw(st.integers(0, len(ops)))
        ops[at:at] = [(o, g, start + k, 1 if o == Op.READ else 0) for k in range(length)]
    return files, [(int(o), a, b, c) for o, a, b, c in ops], limit, backend, draw(st.booleans())


@settings(max_examples=250, deadline=None)
@given(scenarios())
def test_compiled_lru_page_cache_is_the_object_model(case):
    """Reads, batches, faults, fault-around, writes (past the span too), truncation,
    deletion, fsync, unmount, foreign pages, limit changes, try_to_free_pages() and charge(0)
    from outside, with no cleancache or the tag-storage one (both large-folio policies), the
    checker observing or not: every counter, page, shadow, the list's order, the reclaim's
    results, the cleancache's counters and arrays, the checker's page generations."""
    files, ops, limit, backend, check = case
    both(files, ops, limit, backend, check)


def _pressure_case(seed: int):
    """A long mixed sequence under pressure on three files, the limit moving, reclaim and
    charges from outside."""
    rng = np.random.default_rng(seed)
    files = FileTable.build([1, 1, 2], [1, 2, 3], [300, 600, 90], [320, 600, 100])
    ops = mixed_ops(rng, files, [(0.35, "reads"), (0.55, "faults"), (0.6, "map"),
                                 (0.7, "get"), (0.8, "write"), (0.85, "fsync"),
                                 (0.88, "truncate"), (0.92, "limit"), (0.95, "free"),
                                 (0.97, "charge")])
    return files, ops, 80


@pytest.mark.parametrize("seed, backend, check", [(1, None, False), (2, None, True),
                                                  (1, BACKENDS[0], True),
                                                  (2, BACKENDS[1], False)])
def test_long_sequences_under_pressure(seed, backend, check):
    """Thousands of events with the limit moving and reclaim from outside, with and without
    the tag-storage cleancache and the checker."""
    files, ops, limit = _pressure_case(seed)
    obj, _ = both(files, ops, limit, backend, check)
    st_ = obj.stats
    assert st_.evictions and st_.refaults and st_.reinsertions and st_.pages_written
    assert any(obj.freed)
    if backend is not None:
        assert obj.cleancache.stats.restored and obj.cleancache.stats.invalidated


@pytest.mark.parametrize("cached", [0, 1, 31, 32, 33, 100, 1000, 5000])
@pytest.mark.parametrize("nr", [0, 1, 32, 33, 100, 4096])
def test_try_to_free_pages_reclaims_what_vmscan_reclaims(cached, nr):
    """try_to_free_pages() on a plain LRU of ``cached`` pages, some dirty: the priority
    descent's batches take exactly the pages mm/vmscan.py takes (at least
    SWAP_CLUSTER_MAX, more where a priority's batches overshoot), oldest first."""
    files = FileTable.build([1], [1], [6000])
    ops = [(int(Op.READ), 0, 0, cached), (int(Op.WRITE), 0, 0, min(cached, 50)),
           (int(Op.READ), 0, cached // 2, 3), (FREE_PAGES, nr, 0, 0), (FREE_PAGES, nr, 0, 0)]
    obj, _ = both(files, ops, 6000)
    assert obj.stats.evictions == sum(obj.freed)


def test_charge_follows_a_shrinking_limit():
    """charge(0) as capacity.follow_room() calls it when the room shrinks below what the
    page cache holds: the tail is evicted down to the limit, exactly, step by step."""
    files = FileTable.build([1, 1], [1, 2], [200, 100])
    ops = [(int(Op.READ), 0, 0, 150), (int(Op.WRITE), 1, 0, 40), (int(Op.READ), 0, 10, 20)]
    for limit in (180, 150, 149, 120, 64, 1, 0):
        ops += [(SET_LIMIT, limit, 0, 0), (CHARGE, 0, 0, 0)]
    _, pc = both(files, ops, 200)
    assert nr_pages(pc) == 0 and page_cache_stats(pc)["evictions"] == 190


def test_write_past_the_span_stops_alike():
    files = FileTable.build([1], [1], [4], [6])
    ops = [(int(Op.READ), 0, 0, 2), (int(Op.WRITE), 0, 5, 2), (int(Op.READ), 0, 2, 2)]
    obj, pc = both(files, ops, 10)
    assert page_cache_stats(pc)["accesses"] == 2
    pc = make_lru_page_cache(files)
    with pytest.raises(ValueError, match="write past the span of file 0"):
        replay_columns(pc, *columns(ops))


def test_replay_stops_at_foreign_events_and_sums_cached_pages():
    """replay_lru_page_cache() returns the index of the first event not the page cache's,
    passes over the kernel's own add/delete events and fault-around, and adds
    cleancache_cached() per event it consumed."""
    files = FileTable.build([1], [1], [8])
    pc = make_lru_page_cache(files, compiled_cleancache(files, BACKENDS[0]))
    set_limit(pc, 1)
    op, a0, a1, a2 = columns([(int(Op.READ), 0, 0, 2), (int(Op.KERNEL_ADD), 0, 0, 0),
                              (int(Op.MTE_FORK), 1, 2, 0), (int(Op.MAP_PAGES), 0, 0, 8),
                              (int(Op.READ), 0, 2, 1)])
    assert replay_lru_page_cache(pc, op, a0, a1, a2, 0, 5) == 2
    assert replay_lru_page_cache(pc, op, a0, a1, a2, 3, 5) == 5
    assert page_cache_stats(pc)["accesses"] == 3 and int(pc.c[CACHED_SUM]) == 1 + 1 + 1 + 2


def test_the_record_numbers_its_counters_as_the_kernel_one():
    """engine/machine.py reads c[NR_PAGES], c[LIMIT], c[CACHED_SUM], c[STREAM_OFFSET] and
    the errors from either page cache, and pagecache.py's readers of ``c`` read both."""
    for name in ("NR_PAGES", "NR_DIRTY", "LIMIT", "CACHED_SUM", "STREAM_OFFSET", "ERROR",
                 "ERROR_EVENT", "ERROR_ARG", "NR_COUNTERS"):
        assert getattr(lru, name) == getattr(kernel_pc, name)
    pc = make_lru_page_cache(FileTable.build([1], [1], [8]))
    kernel_pc.set_limit(pc, 3)
    replay_columns(pc, *columns([(int(Op.READ), 0, 0, 8)]))
    assert int(pc.c[LIMIT]) == 3 and kernel_pc.nr_pages(pc) == int(pc.c[NR_PAGES]) == 3
    assert kernel_pc.page_cache_stats(pc) == page_cache_stats(pc)


# -- the pinned reader traces -----------------------------------------------------------------

@pytest.mark.parametrize("reader", sorted(READER_CASES))
def test_reader_traces_give_the_pinned_lru_counts(reader):
    """Each pinned reader trace as `run --policy lru` replays it in a cgroup of
    TRACE_CAPACITY pages: the compiled plain LRU gives the pinned page-cache, I/O and
    cleancache counts of every design with no tagged memory (no cleancache, and the
    tag-storage one with both large-folio policies), and equals the object model in
    everything at that capacity and at a roomier one, with the checker observing."""
    scn = parse_scenario(tomllib.loads(TRACE_SCENARIO), "<pinned-trace>")
    layout = scn.machine.layout
    trace = read_trace(TRACES / READER_CASES[reader], reader, use_cache=False)
    ops = list(zip(trace.op.tolist(), trace.arg0.tolist(), trace.arg1.tolist(),
                   trace.arg2.tolist(), strict=True))
    ops = [e for e in ops if e[0] < int(Op.MTE_MAP) or e[0] in (Op.KERNEL_ADD,
                                                                  Op.KERNEL_DELETE)]
    pinned = [c for c in json.loads(EXPECTED.read_text())[f"reader:{reader}"]
              if c["policy"] == "lru" and c["share"] == 0.0]
    assert len(pinned) == len(scn.designs)
    for case in pinned:
        backend, policy = case["design"].split("/")
        be = None if backend == "idle" else (layout, policy)
        both(trace.files, ops, 64, be, check=True, steps=False)
        _, pc = both(trace.files, ops, TRACE_CAPACITY, be, steps=False)
        s = page_cache_stats(pc)
        pcs, io = case["page_cache"], case["io"]
        assert {k: s[k] for k in pcs if k in s} == {k: v for k, v in pcs.items() if k in s}
        assert (io["pages_read"], io["pages_written"], io["read_requests"]) == (
            s["pages_read"], s["pages_written"], s["read_requests"])
        assert io["requests_avoided"] == (s["read_requests_without_cleancache"]
                                          - s["read_requests"])
        report = cleancache_report(pc.cc)
        assert {k: report[k] for k in case["cleancache"]} == case["cleancache"]
        ts = case["tag_storage"]
        assert (ts["cache_pages_now"], ts["cache_pages_peak"]) == (report["cached"],
                                                                  report["peak_cached"])


def _results(exp) -> list[dict]:
    out = []
    for r in list(exp.baselines) + list(exp.results):
        d = r.to_json()
        d.pop("perf", None)
        out.append(d)
    return out


@pytest.mark.parametrize("reader", sorted(READER_CASES))
def test_run_takes_the_compiled_page_cache_with_the_same_results(reader, monkeypatch):
    """`run --policy lru --no-check` on one trace of each reader: the compiled engine builds
    this page cache and gives every count the object engine gives (tag storage, anonymous
    memory and averages included)."""
    from tagcache import experiment

    scn = parse_scenario(tomllib.loads(TRACE_SCENARIO), "<pinned-trace>")
    trace = read_trace(TRACES / READER_CASES[reader], reader, use_cache=False)
    built = []
    make = lru._make
    monkeypatch.setattr(lru, "_make", lambda *a: built.append(1) or make(*a))
    fast = _results(run_trace(scn, trace, capacity_pages=6, policy="lru", check=False))
    assert built
    real = experiment.replay
    monkeypatch.setattr(experiment, "replay", lambda *a, **kw: real(*a, **kw, engine="object"))
    slow = _results(run_trace(scn, trace, capacity_pages=6, policy="lru", check=False))
    assert fast == slow


def test_plain_trace_replay_counts_libcachesim_misses():
    """On a page-request trace the compiled LRU misses exactly as an LRU must: a request to
    a page not among the last ``capacity`` distinct pages requested."""
    rng = np.random.default_rng(3)
    pages = rng.zipf(1.3, 5000) % 300
    files = FileTable.build([0], [0], [300])
    tr = Trace(np.full(len(pages), Op.READ, np.uint8), np.zeros(len(pages), np.int64),
               pages.astype(np.int64), np.ones(len(pages), np.int64), files)
    pc = make_lru_page_cache(files)
    set_limit(pc, 50)
    assert replay_lru_page_cache(pc, tr.op, tr.arg0, tr.arg1, tr.arg2, 0, len(pages)) == len(
        pages)
    stack: list[int] = []
    misses = 0
    for p in pages.tolist():
        if p in stack:
            stack.remove(p)
        else:
            misses += 1
            if len(stack) == 50:
                stack.pop()
        stack.insert(0, p)
    assert page_cache_stats(pc)["misses"] == misses
    assert lru_walk(pc) == stack


# -- uncompiled -------------------------------------------------------------------------------

SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_engine_lru import CHECK_LAYOUT, _pressure_case, compiled_run
from test_engine_pagecache import BACKENDS
files, ops, limit = _pressure_case(3)
out = []
for backend, check in ((None, False), (BACKENDS[0], True)):
    pc, err, freed, _ = compiled_run(files, ops[:1500], limit, backend, check)
    cc = pc.cc
    out.append([pc.c.tolist(), pc.pg.tolist(), pc.link.tolist(), freed,
                cc.c.tolist(), cc.slot_tp.tolist(), cc.ck.version.tolist(),
                cc.ck.disk.tolist()])
print(json.dumps(out))
"""


def test_uncompiled_engine_gives_the_same_state():
    """The step functions as plain Python (NUMBA_DISABLE_JIT=1, in a subprocess) and
    compiled give identical counters, pages, links and cleancache and checker state."""
    runs = []
    for jit_off in ("0", "1"):
        env = dict(os.environ, NUMBA_DISABLE_JIT=jit_off)
        out = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=str(HERE))], env=env,
                             capture_output=True, text=True, timeout=600, check=True)
        runs.append(json.loads(out.stdout))
    assert runs[0] == runs[1]
    for c in (runs[0][0][0], runs[0][1][0]):
        assert c[kernel_pc.ACCESSES] > 0 and c[kernel_pc.EVICTIONS] > 0
    assert runs[0][1][4][0] > 0                      # stored in cleancache


def test_verify_finds_a_broken_state():
    """verify_lru_page_cache(), the checker's end-of-run walk for this page cache, passes a
    sound state and names a broken link, a page count off, dirty data nowhere and a shadow
    under a resident page."""
    files = FileTable.build([1], [1], [40])
    ops = [(int(Op.READ), 0, 0, 30), (int(Op.WRITE), 0, 25, 10), (int(Op.READ), 0, 0, 5)]

    def fresh():
        pc = make_lru_page_cache(files)
        set_limit(pc, 20)
        replay_columns(pc, *columns(ops))
        assert verify_lru_page_cache(pc) == []
        return pc

    pc = fresh()
    walk = lru_walk(pc)
    pc.link[2 * walk[3] + 1] = walk[5]               # skips a page: back links disagree
    assert any("links are broken" in e for e in verify_lru_page_cache(pc))
    pc = fresh()
    pc.c[NR_PAGES] += 1
    assert any("page count" in e for e in verify_lru_page_cache(pc))
    pc = fresh()
    gone = int(np.flatnonzero(folio_arrays(pc)["head"] < 0)[0])
    pc.pg[gone] |= lru.PAGE_DIRTY
    errs = verify_lru_page_cache(pc)
    assert any("not cached" in e for e in errs) and any("nr_dirty" in e for e in errs)
    pc = fresh()
    pc.pg[walk[0]] |= lru.PAGE_SHADOW
    assert verify_lru_page_cache(pc) == ["a resident page has a shadow entry"]


# -- the machine --------------------------------------------------------------------------------

SMALL = {
    "name": "small", "seed": 3,
    "machine": {"memory": "64MiB", "anon": "56MiB", "min_free": "1MiB"},
    "page_cache": {"max_folio_order": 2},
    "tagged": {"shares": [0.3], "process_size": "4MiB", "churn_events": 12},
    "files": {"count": 6, "mean_size": "2MiB"},
    "workload": {"events": 400, "read_size": "32KiB"},
}


def _run(result) -> dict:
    d = result.to_json()
    d.pop("perf", None)
    return d


@pytest.mark.parametrize("share", [0.0, 0.3])
@pytest.mark.parametrize("check", [False, True])
def test_the_machine_runs_the_plain_lru_with_these_calls(share, check, monkeypatch):
    """engine/machine.py driving this record instead of the kernel one, with these calls
    swapped in (what the integrator switches): make_lru_page_cache, replay_lru_page_cache,
    lru_try_to_free_pages (make_room: anonymous memory crowding a small machine's page
    cache, the capacity not fixed), lru_try_charge, verify_lru_page_cache. Every figure of
    every design equals the object engine's (PageCache(policy="lru")), with and without the
    checker."""
    from tagcache.engine import machine as flat
    from tagcache.experiment import scenario_trace

    if not hasattr(flat, "PAGE_CACHES"):          # a machine that knows only the kernel one
        monkeypatch.setattr(flat, "make_page_cache",
                            lambda files, cc, **_: make_lru_page_cache(files, cc))
        monkeypatch.setattr(flat, "replay_page_cache", replay_lru_page_cache)
        monkeypatch.setattr(flat, "try_to_free_pages", lru_try_to_free_pages)
        monkeypatch.setattr(flat, "try_charge_memcg", lru_try_charge)
        monkeypatch.setattr(flat, "preload_foreign", lru_preload_foreign)
        monkeypatch.setattr(flat, "verify_page_cache", verify_lru_page_cache)
    reclaimed = []
    make_room = flat.FlatMachine.make_room

    def counted(self, n):
        before = int(self.pc.c[NR_PAGES])
        make_room(self, n)
        reclaimed.append(before - int(self.pc.c[NR_PAGES]))

    monkeypatch.setattr(flat.FlatMachine, "make_room", counted)
    scn = parse_scenario(SMALL, "small.toml")
    cfg = dataclasses.replace(scn.machine, page_cache_policy="lru")
    assert cfg.page_cache_limit_pages is None
    trace = scenario_trace(scn, share)
    for design in scn.designs:
        fast = replay_mod._replay_flat(cfg, design, trace, share, None, None, None, 0.0,
                                       None, check)
        slow = replay_mod.replay(cfg, design, trace, tagged_share=share, check=check,
                                 engine="object")
        assert _run(fast) == _run(slow)
        assert fast.page_cache["evictions"] > 0
    assert any(reclaimed)                          # anonymous memory's make_room reclaimed
