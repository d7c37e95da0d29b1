"""The kernel page cache (engine/pagecache.py, vmscan.py, filemap_add.py, readahead.py,
filemap.py) driven from its trace loop: random event sequences leave a state that verifies,
long sequences reach every path, the pinned reader traces and every capture give their pinned
counts, and the step functions give the same state compiled and interpreted
(NUMBA_DISABLE_JIT=1). Its rules are tests/test_pagecache.py and test_reclaim_fidelity.py."""

from __future__ import annotations

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

from tagcache.capacity import follow_room
from tagcache.engine.cleancache import cleancache_report, make_cleancache
from tagcache.engine.filemap import check_page_cache_error, preload_foreign, replay_page_cache
from tagcache.engine.machine import verify_backend, verify_page_cache
from tagcache.engine.page_flags import PG_DIRTY, PG_FOREIGN
from tagcache.engine.pagecache import (
    CACHED_SUM,
    ERROR,
    NONRESIDENT_AGE,
    NR_PAGES,
    PG_LOCKED,
    PG_PINNED,
    file_counts,
    make_page_cache,
    page_cache_stats,
    ra_arrays,
    set_limit,
    workingset_counts,
)
from tagcache.engine.pagemap import slots_needed
from tagcache.engine.readahead import MMAP_LOTSAMISS
from tagcache.engine.tagstore import EVICTED
from tagcache.engine.vmscan import MAX_RECLAIM_RETRIES, try_charge_memcg, try_to_free_pages
from tagcache.hw.layout import MachineLayout, simple_layout
from tagcache.scenario import parse_scenario
from tagcache.sidecar import (
    capture_facts,
    load_sidecar,
    read_ahead_pages,
    sidecar_for,
)
from tagcache.traces import read_trace
from tagcache.units import PAGE_SIZE
from tagcache.validate import accessed_files, kept_ops, model_files
from tagcache.workloads.events import FileTable, Op

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from expected_counts import (  # noqa: E402
    CAPTURES,
    EXPECTED,
    READER_CASES,
    TRACE_CAPACITY,
    TRACE_SCENARIO,
    TRACES,
    capture_name,
)

# Events the tests add to a sequence, on op codes the page cache does not handle (so
# replay_page_cache() stops at them and the driver runs them, as the machine will).
PRELOAD = int(Op.MTE_MAP)            # preload_foreign(f, first, nr)
SET_LIMIT = int(Op.CGROUP_SAMPLE)    # the limit changes to a0 pages
FREE_PAGES = int(Op.PAGE_ALLOC)      # try_to_free_pages(a0), as FlatMachine.make_room() calls it
CHARGE = int(Op.PAGE_FREE)           # charge(0), as capacity.follow_room() calls it

LAYOUTS = {blk: simple_layout(1 << 20, blk) for blk in (4096, 8192)}
"""8 tag pages of cleancache, in tag blocks of 1 or 2 pages."""
Backend = tuple[MachineLayout, str] | None
"""A tag-storage cleancache: (its layout, large-folio policy), or None."""
BACKENDS = [(LAYOUTS[4096], "whole"), (LAYOUTS[8192], "split")]


# -- the page cache, driven from its trace loop ------------------------------------------------

def columns(ops) -> tuple[np.ndarray, ...]:
    cols = np.array(ops, np.int64).reshape(-1, 4)
    return (cols[:, 0].astype(np.uint8), cols[:, 1].copy(), cols[:, 2].copy(),
            cols[:, 3].copy())


def compiled_cleancache(files: FileTable, backend: Backend):
    if backend is None:
        return make_cleancache("idle")
    return make_cleancache("cleancache", backend[0], slots_needed(files), backend[1])


def compiled_run(files: FileTable, ops, limit: int, backend: Backend = None, **kw):
    """The compiled engine after ``ops``: replay_page_cache() over the columns, the driver
    running the events it stops at."""
    pc = make_page_cache(files, compiled_cleancache(files, backend), **kw)
    set_limit(pc, limit)
    op, a0, a1, a2 = columns(ops)
    c = pc.c
    i, n = 0, len(op)
    while i < n:
        i = replay_page_cache(pc, op, a0, a1, a2, i, n)
        if i == n:
            break
        if c[ERROR]:
            try:
                check_page_cache_error(pc)
            except ValueError as e:
                return pc, str(e)
        o, x, y, z = int(op[i]), int(a0[i]), int(a1[i]), int(a2[i])
        if o == PRELOAD:
            preload_foreign(pc, x, y, z)
        elif o == SET_LIMIT:
            set_limit(pc, x)
        elif o == FREE_PAGES:
            try_to_free_pages(pc, x)
        elif o == CHARGE:
            try_charge_memcg(pc, 0, MAX_RECLAIM_RETRIES)
        else:
            raise AssertionError(f"replay_page_cache() stopped at op {o}")
        i += 1
    return pc, None


# -- random sequences of every event -----------------------------------------------------------

@st.composite
def scenarios(draw):
    """Three files (spans up to 600 pages: order-9 alignment matters), some with large
    folios; a readahead window; VM_EXEC and copy-on-write ranges; a limit small enough
    for reclaim, retries and __GFP_NORETRY failures; and a sequence of every event."""
    n = 3
    span = [draw(st.sampled_from([0, 1, 7, 40, 130, 513, 600])) for _ in range(n)]
    size = [draw(st.one_of(st.just(s), st.integers(0, s))) for s in span]
    large = [draw(st.booleans()) for _ in range(n)]
    dev = [draw(st.sampled_from([1, 2])) for _ in range(n)]
    files = FileTable.build(dev, list(range(n)), size, span, large)

    def ranges():
        return st.dictionaries(st.integers(0, n - 1), st.lists(
            st.tuples(st.integers(0, 40) | st.integers(0, 600), st.integers(1, 120)).map(
                lambda t: (t[0], t[0] + t[1])), max_size=3), max_size=2)

    kw = {"ra_pages": draw(st.sampled_from([0, 4, 32, 512])),
          "max_folio_order": draw(st.sampled_from([0, 2, 4, 9])),
          "exec_vmas": draw(ranges()), "cow_vmas": draw(ranges())}
    limit = draw(st.integers(0, 160))

    def on_file(g: int):
        idx = st.integers(0, span[g] + 8)
        return st.one_of(
            st.tuples(st.sampled_from([Op.READ, Op.GET_PAGES, Op.MAP_PAGES]), st.just(g), idx,
                      st.integers(1, 80)),
            st.tuples(st.just(Op.FAULT), st.just(g), idx, st.just(0)),
            st.tuples(st.just(Op.WRITE), st.just(g), st.integers(0, max(0, span[g] - 1)),
                      st.integers(1, 12)),
            st.tuples(st.just(Op.TRUNCATE), st.just(g), idx, st.just(0)),
            st.tuples(st.sampled_from([Op.UNLINK, Op.FSYNC, Op.KERNEL_ADD]), st.just(g),
                      st.just(0), st.just(0)),
            st.tuples(st.just(PRELOAD), st.just(g), idx, st.integers(1, 60)))

    f = st.integers(0, n - 1)
    event = st.one_of(
        *[f.flatmap(on_file)] * 8,
        st.tuples(st.just(Op.UNMOUNT), st.sampled_from([1, 2]), st.just(0), st.just(0)),
        st.tuples(st.just(SET_LIMIT), st.integers(0, 200), st.just(0), st.just(0)),
        st.tuples(st.sampled_from([FREE_PAGES, CHARGE]), st.integers(0, 100), st.just(0),
                  st.just(0)))
    backend = draw(st.sampled_from([None, *BACKENDS]))
    # The sequence runs up to three times: pages used again are referenced, activated,
    # refaulted and restored.
    ops = draw(st.lists(event, min_size=4, max_size=40)) * draw(st.integers(1, 3))
    # Faults and sequential reads weigh more: they drive readahead and mapped reclaim.
    runs = draw(st.lists(st.tuples(f, st.integers(0, 600), st.integers(2, 40),
                                   st.sampled_from([Op.READ, Op.FAULT])), max_size=3))
    for g, start, length, o in runs:
        at = draw(st.integers(0, len(ops)))
        ops[at:at] = [(o, g, start + k, 1 if o == Op.READ else 0) for k in range(length)]
    return files, [(int(o), a, b, c) for o, a, b, c in ops], limit, backend, kw


def assert_consistent(pc) -> None:
    """The end-of-run walk finds nothing (lists, slots, counts; the backend's arrays and
    counts), no folio is left locked or pinned, every stored page is accounted for, and no
    page is both cached and stored (a page the sequence preloads as foreign may sit over a
    copy: a run preloads before its first event)."""
    assert verify_page_cache(pc) == []
    flags = np.asarray(pc.flags)
    assert not (flags & (PG_LOCKED | PG_PINNED)).any()
    cc = cleancache_report(pc.cc)
    assert cc["stored"] - cc["restored"] - cc["invalidated"] - cc["reclaimed"] \
        - int(pc.cc.c[EVICTED]) == cc["cached"]
    if pc.cc.kind:
        assert verify_backend(pc.cc) == []
        ours = (np.asarray(pc.head) >= 0) & ((flags & PG_FOREIGN) == 0)
        assert not (np.asarray(pc.cc.slot_tp)[ours] >= 0).any()


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_random_sequences_leave_a_consistent_page_cache(case):
    """Reads, batches, faults, fault-around, writes (past the span too), truncation,
    deletion, fsync, unmount, preloaded foreign pages, limit changes, reclaim and charges
    from outside, with no cleancache or the tag-storage one (both large-folio policies):
    the state verifies, nothing is left locked or pinned, cleancache's counts add up and no
    page is both cached and stored; a write past the span stops the run with its error."""
    files, ops, limit, backend, kw = case
    pc, err = compiled_run(files, ops, limit, backend, **kw)
    assert err is None or err.startswith("write past the span of file ")
    assert_consistent(pc)


def mixed_ops(rng: np.random.Generator, files: FileTable, cuts: list[tuple[float, str]],
              steps: int = 1500) -> list[tuple[int, int, int, int]]:
    """``steps`` random steps on ``files``: each draws a file, a number that picks the kind
    of step from ``cuts`` (``(upper bound, kind)`` in ascending order; past the last, one long
    read) and a page; runs of reads or faults, fault-around, tracepoint batches, writes,
    fsync, truncation, and from outside the limit moving, reclaim and a charge."""
    def step(kind: str, f: int, i: int, span: int) -> list[tuple[int, int, int, int]]:
        if kind == "reads":                            # a sequential run
            return [(int(Op.READ), f, i + k, 1) for k in range(int(rng.integers(1, 30)))]
        if kind == "faults":
            return [(int(Op.FAULT), f, i + k, 0) for k in range(int(rng.integers(1, 20)))]
        return [{
            "map": lambda: (int(Op.MAP_PAGES), f, i, 16),
            "get": lambda: (int(Op.GET_PAGES), f, i, int(rng.integers(1, 64))),
            "write": lambda: (int(Op.WRITE), f, min(i, span - 4), int(rng.integers(1, 4))),
            "fsync": lambda: (int(Op.FSYNC), f, 0, 0),
            "truncate": lambda: (int(Op.TRUNCATE), f, int(rng.integers(0, span)), 0),
            "limit": lambda: (SET_LIMIT, int(rng.integers(20, 200)), 0, 0),
            "free": lambda: (FREE_PAGES, int(rng.integers(0, 80)), 0, 0),
            "charge": lambda: (CHARGE, 0, 0, 0),
            "read": lambda: (int(Op.READ), f, i, int(rng.integers(1, 200))),
        }[kind]()]

    ops = []
    for _ in range(steps):
        f = int(rng.integers(0, len(files)))
        r = rng.random()
        span = int(files.span_pages[f])
        i = int(rng.integers(0, span))
        ops += step(next((kind for bound, kind in cuts if r < bound), "read"), f, i, span)
    return ops


def _pressure_case(seed: int):
    """A long mixed sequence under pressure on three files (one with large folios)."""
    rng = np.random.default_rng(seed)
    files = FileTable.build([1, 1, 2], [1, 2, 3], [300, 600, 90], [320, 600, 100],
                            [False, True, True])
    ops = mixed_ops(rng, files, [(0.35, "reads"), (0.55, "faults"), (0.65, "map"),
                                 (0.75, "get"), (0.85, "write"), (0.9, "fsync"),
                                 (0.93, "truncate"), (0.96, "limit")])
    # Scattered faults last, in little room: mmap_miss passes MMAP_LOTSAMISS.
    ops.append((SET_LIMIT, 40, 0, 0))
    ops += [(int(Op.FAULT), 1, int(i), 0) for i in rng.integers(0, 600, 300)]
    kw = {"ra_pages": 32, "max_folio_order": 9, "exec_vmas": {0: [(0, 50)], 1: [(100, 180)]},
          "cow_vmas": {2: [(10, 40)]}}
    return files, ops, 80, kw


@pytest.mark.parametrize("seed, backend", [(1, None), (2, None), (1, BACKENDS[0]),
                                           (2, BACKENDS[1])])
def test_long_sequences_under_pressure(seed, backend):
    """Thousands of events with the readahead state carried across them, mmap_miss past
    MMAP_LOTSAMISS, large folios up to order 5, the limit moving; with and without the
    tag-storage cleancache."""
    files, ops, limit, kw = _pressure_case(seed)
    pc, err = compiled_run(files, ops, limit, backend, **kw)
    assert err is None
    st_, ws = page_cache_stats(pc), workingset_counts(pc)
    assert st_["evictions"] and st_["refaults"] and ws["activate"] and ws["restore"]
    assert file_counts(pc)[2][:, 1:].sum() > 0
    assert ra_arrays(pc)["mmap_miss"][1] > MMAP_LOTSAMISS
    assert_consistent(pc)


def test_write_past_the_span_stops_the_run():
    """A write ending past its file's span is refused whole (nothing written, the run
    stops there with ValueError)."""
    files = FileTable.build([1], [1], [4], [6])
    ops = [(int(Op.READ), 0, 0, 2), (int(Op.WRITE), 0, 5, 2), (int(Op.READ), 0, 2, 2)]
    pc, err = compiled_run(files, ops, 10, ra_pages=4, max_folio_order=0)
    assert err == "write past the span of file 0"
    assert page_cache_stats(pc)["accesses"] == 2 and int(pc.isize[0]) == 4
    assert not (np.asarray(pc.flags) & PG_DIRTY).any()
    assert_consistent(pc)


def test_replay_stops_at_foreign_events_and_sums_cached_pages():
    """replay_page_cache() returns the index of the first event not the page cache's,
    passes over the kernel's own add/delete events, and adds cleancache_cached() per event
    it consumed (0 with no backend)."""
    files = FileTable.build([1], [1], [8])
    pc = make_page_cache(files, make_cleancache("idle"), ra_pages=4, max_folio_order=0)
    set_limit(pc, 8)
    op, a0, a1, a2 = columns([(int(Op.READ), 0, 0, 1), (int(Op.KERNEL_ADD), 0, 0, 0),
                              (int(Op.MTE_FORK), 1, 2, 0), (int(Op.READ), 0, 1, 1)])
    assert replay_page_cache(pc, op, a0, a1, a2, 0, 4) == 2
    assert replay_page_cache(pc, op, a0, a1, a2, 3, 4) == 4
    assert page_cache_stats(pc)["accesses"] == 2 and int(pc.c[CACHED_SUM]) == 0


# -- the pinned reader traces -----------------------------------------------------------------

@pytest.mark.parametrize("reader", sorted(READER_CASES))
def test_reader_traces_give_the_pinned_counts(reader):
    """Each pinned reader trace, as `run` replays it (the pinned scenario's machine, 128 KiB
    readahead, folios up to order 2, a cgroup of TRACE_CAPACITY pages): the compiled page
    cache gives the pinned page-cache, I/O and cleancache counts of every design with no
    tagged memory (no cleancache, and the tag-storage one with both large-folio policies)."""
    scn = parse_scenario(tomllib.loads(TRACE_SCENARIO), "<pinned-trace>")
    layout = scn.machine.layout
    trace = read_trace(TRACES / READER_CASES[reader], reader, use_cache=False)
    ops = list(zip(trace.op.tolist(), trace.arg0.tolist(), trace.arg1.tolist(),
                   trace.arg2.tolist(), strict=True))
    ops = [e for e in ops if e[0] < int(Op.MTE_MAP) or e[0] in (Op.KERNEL_ADD,
                                                                  Op.KERNEL_DELETE)]
    kw = {"ra_pages": scn.machine.ra_pages, "max_folio_order": scn.machine.max_folio_order}
    pinned = [c for c in json.loads(EXPECTED.read_text())[f"reader:{reader}"]
              if c["policy"] == "kernel" and c["share"] == 0.0]
    assert len(pinned) == len(scn.designs)
    for case in pinned:
        backend, policy = case["design"].split("/")
        be = None if backend == "idle" else (layout, policy)
        pc, err = compiled_run(trace.files, ops, TRACE_CAPACITY, be, **kw)
        assert err is None
        assert_consistent(pc)
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


# -- the captures -------------------------------------------------------------------------------

class _Adapter:
    """What capacity.follow_room() uses of a machine (engine/machine.py FlatMachine), over
    the page cache's state alone: the room's limit is set before every charge."""

    def __init__(self, pc, room) -> None:
        self.pc, self.room, self.span, self.c = pc, room, pc.span, pc.c

    @property
    def nr_pages(self) -> int:
        return int(self.c[NR_PAGES])

    def charge(self, nr: int) -> bool:
        set_limit(self.pc, self.room.pages)
        return try_charge_memcg(self.pc, nr, MAX_RECLAIM_RETRIES)


def _capture(path: Path):
    meta = load_sidecar(sidecar_for(path))
    trace = read_trace(path)
    ra, _ = read_ahead_pages(trace, meta)
    facts = capture_facts(trace, meta, ra_pages=ra)
    room = facts.room(trace, meta["kernel"]["cache_peak"] // PAGE_SIZE)
    files = accessed_files(trace)
    ft = model_files(trace, files, facts.file_large_folios(trace.files))
    return trace, facts, room, files, ft


def _access_columns(trace, room, span):
    """validate_trace()'s events: accesses, writes, deletions of spanned files, the kernel's
    own events, and the room's samples and kmem events where it follows them."""
    keep = np.isin(trace.op, np.array(kept_ops(room), np.uint8))
    keep &= ~((trace.op == Op.UNLINK) & (span[np.clip(trace.arg0, 0, len(span) - 1)] == 0))
    return (np.ascontiguousarray(trace.op[keep], np.uint8),
            *(np.ascontiguousarray(a[keep], np.int64) for a in (trace.arg0, trace.arg1,
                                                                 trace.arg2)))


def _histogram(counts: np.ndarray) -> dict[str, int]:
    return {str(o): int(c) for o, c in enumerate(counts.tolist()) if c}


@pytest.mark.parametrize("path", CAPTURES, ids=capture_name)
def test_captures_give_validates_pinned_model_counts(path):
    """Every capture as `validate` replays it by default, the room following the cgroup's
    samples and kmem events through capacity.follow_room() (reclaiming through
    try_charge_memcg()): the model's insertions, re-insertions and folio orders are the
    pinned ones."""
    trace, facts, room, files, ft = _capture(path)
    start_room = room.pages
    pc = make_page_cache(ft, make_cleancache("idle"), **facts.page_cache_kwargs())
    ad = _Adapter(pc, room)
    for f, spans in facts.resident.items():         # as engine/machine.py build() does
        if pc.span[f]:
            for first, nr in spans:
                preload_foreign(pc, f, first, nr)
    set_limit(pc, room.pages)
    op, a0, a1, a2 = _access_columns(trace, room, pc.span)
    i, n = 0, len(op)
    c = pc.c
    while i < n:
        i = replay_page_cache(pc, op, a0, a1, a2, i, n)
        if c[ERROR]:
            check_page_cache_error(pc)
        if i < n:
            follow_room(room, ad, int(op[i]), int(a0[i]), int(a1[i]), int(a2[i]))
            set_limit(pc, room.pages)
            i += 1
    pinned = json.loads(EXPECTED.read_text())[f"capture:{capture_name(path)}"]
    ins, reins, orders = file_counts(pc)
    assert pinned["capacity_pages"] == start_room
    assert pinned["model"] == {"insertions": int(ins[files].sum()),
                               "reinsertions": int(reins[files].sum())}
    assert pinned["folio_orders"]["model"] == _histogram(orders.sum(axis=0))


# -- uncompiled -------------------------------------------------------------------------------

SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_engine_pagecache import _pressure_case, columns
from tagcache.engine.cleancache import make_cleancache
from tagcache.engine.filemap import replay_columns
from tagcache.engine.pagecache import make_page_cache, set_limit
files, ops, limit, kw = _pressure_case(3)
ops = ops[:1200]
pc = make_page_cache(files, make_cleancache("idle"), **kw)
set_limit(pc, limit)
replay_columns(pc, *columns(ops))
print(json.dumps([pc.c.tolist(), pc.head.tolist(), pc.flags.tolist()]))
"""


def test_uncompiled_engine_gives_the_same_state():
    """The step functions as plain Python (NUMBA_DISABLE_JIT=1, in a subprocess) and
    compiled give identical counters and slot arrays."""
    runs = []
    for jit_off in ("0", "1"):
        env = dict(os.environ, NUMBA_DISABLE_JIT=jit_off)
        out = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=str(HERE))], env=env,
                             capture_output=True, text=True, timeout=600, check=True)
        runs.append(json.loads(out.stdout))
    assert runs[0] == runs[1]
    c = runs[0][0]
    assert c[0] > 0 and c[7] > 0 and c[NONRESIDENT_AGE] > 0      # accesses, evictions
