"""The plain-LRU page cache (engine/lru.py): random event sequences leave a state that
verifies and breaks no rule, reclaim takes what the kernel's priority descent takes, oldest
first, a shrinking limit is followed exactly, the pinned reader traces' lru designs give their
pinned counts, misses are an LRU's, the machine runs it, and the step functions give the same
state compiled and interpreted (NUMBA_DISABLE_JIT=1)."""

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

from tagcache.engine import checker, lru
from tagcache.engine import pagecache as kernel_pc
from tagcache.engine.checker import make_checker
from tagcache.engine.cleancache import cleancache_report, make_cleancache
from tagcache.engine.lru import (
    CACHED_SUM,
    ERROR,
    LIMIT,
    NR_PAGES,
    check_page_cache_error,
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
)
from tagcache.engine.machine import verify_backend
from tagcache.engine.mmzone import DEF_PRIORITY, SWAP_CLUSTER_MAX
from tagcache.engine.page_flags import PG_FOREIGN
from tagcache.engine.pagemap import slots_needed
from tagcache.engine.rules import RULES
from tagcache.engine.tagstore import EVICTED
from tagcache.engine.vmscan import MAX_RECLAIM_RETRIES
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


# -- the page cache, driven from its trace loop ------------------------------------------------

def compiled_run(files: FileTable, ops, limit: int, backend: Backend = None,
                 check: bool = False, steps: bool = True):
    """The compiled plain LRU after ``ops``: replay_lru_page_cache() over the columns (one
    event at a time with ``steps``), the driver running the events it stops at; ``freed`` is
    what each lru_try_to_free_pages() returned, ``trail`` the state after each event (with
    ``steps``)."""
    cc = compiled_cleancache(files, backend)
    if check:
        ck = make_checker(CHECK_LAYOUT if backend is None else backend[0],
                          slots_needed(files), True)
        if backend is None:
            cc = make_cleancache("idle", ck=ck)
        else:
            cc = make_cleancache("cleancache", backend[0], slots_needed(files),
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


def assert_consistent(pc, check: bool) -> None:
    """The end-of-run walk finds nothing, cleancache's counts add up, no page is both cached
    and stored (a page the sequence preloads as foreign may sit over a copy: a run preloads
    before its first event), and with the checker observing no rule is broken."""
    assert verify_lru_page_cache(pc) == []
    cc = cleancache_report(pc.cc)
    assert cc["stored"] - cc["restored"] - cc["invalidated"] - cc["reclaimed"] \
        - int(pc.cc.c[EVICTED]) == cc["cached"]
    if pc.cc.kind:
        assert verify_backend(pc.cc) == []
        arrays = folio_arrays(pc)
        ours = (arrays["head"] >= 0) & ((arrays["flags"] & PG_FOREIGN) == 0)
        assert not (np.asarray(pc.cc.slot_tp)[ours] >= 0).any()
    if check:
        assert set(checker.counts(pc.cc.ck).values()) == {0}    # a sound run breaks no rule


@settings(max_examples=250, deadline=None)
@given(scenarios())
def test_random_sequences_leave_a_consistent_page_cache(case):
    """Reads, batches, faults, fault-around, writes (past the span too), truncation,
    deletion, fsync, unmount, foreign pages, limit changes, try_to_free_pages() and charge(0)
    from outside, with no cleancache or the tag-storage one (both large-folio policies), the
    checker observing or not: after every event the list holds at most the limit where a
    charge ran; at the end the state verifies, the counts add up and no rule is broken."""
    files, ops, limit, backend, check = case
    pc, err, freed, trail = compiled_run(files, ops, limit, backend, check)
    assert err is None or err.startswith("write past the span of file ")
    assert all(n >= 0 for n in freed)
    assert_consistent(pc, check)


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
    pc, err, freed, _ = compiled_run(files, ops, limit, backend, check, steps=False)
    assert err is None
    st_ = page_cache_stats(pc)
    assert st_["evictions"] and st_["refaults"] and st_["reinsertions"] and st_["pages_written"]
    assert any(freed)
    if backend is not None:
        cc = cleancache_report(pc.cc)
        assert cc["restored"] and cc["invalidated"]
    assert_consistent(pc, check)


@pytest.mark.parametrize("cached", [0, 1, 31, 32, 33, 100, 1000, 5000])
@pytest.mark.parametrize("nr", [0, 1, 32, 33, 100, 4096])
def test_try_to_free_pages_reclaims_what_vmscan_reclaims(cached, nr):
    """try_to_free_pages() on a plain LRU of ``cached`` pages, some dirty: the priority
    descent's batches take exactly the pages mm/vmscan.c takes (at least
    SWAP_CLUSTER_MAX, more where a priority's batches overshoot), oldest first."""

    def vmscan(size: int, nr: int) -> int:
        """do_try_to_free_pages() over one inactive list whose every page is reclaimable:
        shrink_lruvec() scans ``size >> priority`` in batches, stopping once its own count
        reaches the target; the descent stops once the total does."""
        target, total = max(nr, SWAP_CLUSTER_MAX), 0
        for priority in range(DEF_PRIORITY, -1, -1):
            scan, got = size >> priority, 0
            while scan > 0:
                n = min(scan, SWAP_CLUSTER_MAX)
                scan -= n
                took = min(n, size)
                size -= took
                got += took
                if got >= target:
                    break
            total += got
            if total >= target or size == 0:
                break
        return total

    files = FileTable.build([1], [1], [6000])
    ops = [(int(Op.READ), 0, 0, cached), (int(Op.WRITE), 0, 0, min(cached, 50)),
           (int(Op.READ), 0, cached // 2, 3)]
    pc, err, _, _ = compiled_run(files, ops, 6000, steps=False)
    assert err is None and nr_pages(pc) == max(cached, cached // 2 + 3)
    for _ in range(2):
        before = lru_walk(pc)
        got = int(lru_try_to_free_pages(pc, nr))
        assert got == vmscan(len(before), nr)
        assert lru_walk(pc) == before[:len(before) - got]          # the oldest went
    assert page_cache_stats(pc)["evictions"] == max(cached, cached // 2 + 3) - nr_pages(pc)
    assert page_cache_stats(pc)["pages_written"] == min(cached, 50) - nr_dirty(pc)


def test_charge_follows_a_shrinking_limit():
    """charge(0) as capacity.follow_room() calls it when the room shrinks below what the
    page cache holds: the tail is evicted down to the limit, exactly, step by step."""
    files = FileTable.build([1, 1], [1, 2], [200, 100])
    ops = [(int(Op.READ), 0, 0, 150), (int(Op.WRITE), 1, 0, 40), (int(Op.READ), 0, 10, 20)]
    limits = (180, 150, 149, 120, 64, 1, 0)
    for limit in limits:
        ops += [(SET_LIMIT, limit, 0, 0), (CHARGE, 0, 0, 0)]
    pc, err, _, trail = compiled_run(files, ops, 200)
    assert err is None
    held = [t[1] for t in trail]                  # nr_pages after each event
    assert held[2] == 190                         # 150 read, 40 written
    for k, limit in enumerate(limits):            # after each charge: down to the limit
        assert held[4 + 2 * k] == min(held[3 + 2 * k], limit)
    assert nr_pages(pc) == 0 and page_cache_stats(pc)["evictions"] == 190


def test_write_past_the_span_stops_the_run():
    files = FileTable.build([1], [1], [4], [6])
    ops = [(int(Op.READ), 0, 0, 2), (int(Op.WRITE), 0, 5, 2), (int(Op.READ), 0, 2, 2)]
    pc, err, _, _ = compiled_run(files, ops, 10)
    assert err == "write past the span of file 0"
    assert page_cache_stats(pc)["accesses"] == 2 and nr_dirty(pc) == 0
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
    tag-storage one with both large-folio policies), and a roomier one breaks no rule with
    the checker observing."""
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
        pc, err, _, _ = compiled_run(trace.files, ops, 64, be, check=True, steps=False)
        assert err is None
        assert_consistent(pc, True)
        pc, err, _, _ = compiled_run(trace.files, ops, TRACE_CAPACITY, be, steps=False)
        assert err is None
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
    cache, the capacity not fixed), lru_try_charge, verify_lru_page_cache: every design
    evicts, anonymous memory's make_room reclaims, replay() gives the same figures, and the
    checker finds every rule kept."""
    from tagcache.engine import machine as flat
    from tagcache.experiment import scenario_trace

    assert flat.PAGE_CACHES["lru"] == flat.PageCacheKind(
        make_lru_page_cache, replay_lru_page_cache, lru_try_charge, lru_try_to_free_pages,
        lru_preload_foreign, verify_lru_page_cache, flat._lru_cached, lru.page_cache_stats)
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
        again = replay_mod.replay(cfg, design, trace, tagged_share=share, check=check)
        assert _run(fast) == _run(again)
        assert fast.page_cache["evictions"] > 0
        if check:
            assert fast.invariants == dict.fromkeys(RULES, 0)
    assert any(reclaimed)                          # anonymous memory's make_room reclaimed
