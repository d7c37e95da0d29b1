"""The compiled plain-LRU page cache (engine/lru.py) against the object model it replaces:
the same counters on every trace, compiled and interpreted (NUMBA_DISABLE_JIT=1)."""

from __future__ import annotations

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

from tagcache.cleancache.frontend import Cleancache
from tagcache.engine.lru import NR_DIRTY, NR_PAGES, LruState
from tagcache.experiment import run_trace
from tagcache.mm.filemap import PageCache
from tagcache.scenario import parse_scenario
from tagcache.traces import read_trace
from tagcache.workloads.events import FileTable, Op, Trace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from expected_counts import READER_CASES, TRACE_SCENARIO, TRACES  # noqa: E402

replay_mod = importlib.import_module("tagcache.replay")   # the module, not tagcache.replay()
SIZES = [6, 9, 4]
FILES = FileTable.build([1, 1, 2], [10, 11, 12], SIZES, [12, 12, 8])
COUNTERS = ("accesses", "hits", "misses", "insertions", "reinsertions", "refaults",
            "evictions", "pages_read", "pages_written", "read_requests")


def object_model(ops: list[tuple[int, int, int, int]], capacity: int) -> tuple[dict, int, int]:
    pc = PageCache(FILES, Cleancache(None), lambda: capacity, policy="lru")
    table = {Op.READ: pc.read, Op.GET_PAGES: pc.get_pages, Op.WRITE: pc.write,
             Op.FAULT: lambda f, i, _: pc.fault(f, i), Op.MAP_PAGES: pc.map_pages,
             Op.TRUNCATE: lambda f, n, _: pc.truncate(f, n),
             Op.UNLINK: lambda f, _a, _b: pc.unlink(f), Op.FSYNC: lambda f, _a, _b: pc.fsync(f),
             Op.UNMOUNT: lambda d, _a, _b: pc.unmount(d)}
    for op, a, b, c in ops:
        table[op](a, b, c)
    s = pc.stats
    return {k: getattr(s, k) for k in COUNTERS}, pc.nr_pages, pc.nr_dirty


def compiled(ops: list[tuple[int, int, int, int]], capacity: int) -> tuple[dict, int, int]:
    pc = PageCache(FILES, Cleancache(None), lambda: capacity, policy="lru")   # for the slots
    state = LruState(pc.base, pc.span, pc.isize, FILES.dev, capacity)
    cols = np.array(ops, np.int64).reshape(-1, 4)
    state.replay(cols[:, 0].astype(np.uint8), cols[:, 1], cols[:, 2], cols[:, 3])
    return (state.stats(), int(state.counters[NR_PAGES]), int(state.counters[NR_DIRTY]))


def event():
    f = st.integers(0, 2)
    return st.one_of(
        st.tuples(st.sampled_from([Op.READ, Op.GET_PAGES, Op.MAP_PAGES]), f,
                  st.integers(0, 10), st.integers(1, 5)),
        st.tuples(st.just(Op.FAULT), f, st.integers(0, 10), st.just(0)),
        st.tuples(st.just(Op.WRITE), f, st.integers(0, 5), st.integers(1, 3)),
        st.tuples(st.just(Op.TRUNCATE), f, st.integers(0, 12), st.just(0)),
        st.tuples(st.sampled_from([Op.UNLINK, Op.FSYNC]), f, st.just(0), st.just(0)),
        st.tuples(st.just(Op.UNMOUNT), st.sampled_from([1, 2]), st.just(0), st.just(0)))


@settings(max_examples=300, deadline=None)
@given(st.lists(event(), max_size=60), st.integers(1, 10))
def test_compiled_lru_is_the_object_lru(ops, capacity):
    """Reads, faults, fault-around, writes, truncation, deletion, fsync and unmount on three
    files under a small capacity: every counter, the resident and the dirty pages agree."""
    ops = [(int(o), a, b, c) for o, a, b, c in ops]
    assert compiled(ops, capacity) == object_model(ops, capacity)


def test_write_past_the_span_is_refused_alike():
    ops = [(int(Op.WRITE), 2, 7, 3)]
    with pytest.raises(ValueError, match="span"):
        object_model(ops, 4)
    with pytest.raises(ValueError, match="event 0: write past the span"):
        compiled(ops, 4)


def _results(exp) -> list[dict]:
    out = []
    for r in list(exp.baselines) + list(exp.results):
        d = r.to_json()
        d.pop("perf", None)
        out.append(d)
    return out


@pytest.mark.parametrize("reader", sorted(READER_CASES))
def test_replay_takes_the_compiled_page_cache_with_the_same_results(reader, monkeypatch):
    """`run --policy lru --no-check` on one trace of each reader: the idle designs run the
    compiled page cache and give every count the object model gives (tag storage, anonymous
    memory and averages included)."""
    scn = parse_scenario(tomllib.loads(TRACE_SCENARIO), "<pinned-trace>")
    trace = read_trace(TRACES / READER_CASES[reader], reader, use_cache=False)
    taken = []
    real = replay_mod.compiled_lru_applies
    monkeypatch.setattr(replay_mod, "compiled_lru_applies",
                        lambda *a: taken.append(real(*a)) or taken[-1])
    fast = _results(run_trace(scn, trace, capacity_pages=6, policy="lru", check=False))
    assert any(taken)
    monkeypatch.setattr(replay_mod, "compiled_lru_applies", lambda *a: False)
    slow = _results(run_trace(scn, trace, capacity_pages=6, policy="lru", check=False))
    assert fast == slow


SCRIPT = """
import json, numpy as np
from tagcache.engine.lru import LruState
rng = np.random.default_rng(5)
n = 4000
op = rng.choice([0, 1, 2, 4, 6, 8], n).astype(np.uint8)
a0 = rng.integers(0, 3, n)
a1 = rng.integers(0, 40, n)
a2 = np.where(op == 4, 0, rng.integers(1, 6, n))
base = np.array([0, 512, 1024, 1536])
s = LruState(base, np.array([48, 48, 48]), np.array([40, 30, 20]), np.array([1, 1, 2]), 25)
s.replay(op, a0, a1, a2)
print(json.dumps(s.counters.tolist()))
"""


def test_uncompiled_engine_gives_the_same_counts():
    """The step functions as plain Python (NUMBA_DISABLE_JIT=1, in a subprocess) and
    compiled give identical counters, so their Python semantics stay exercised."""
    runs = []
    for jit_off in ("0", "1"):
        env = dict(os.environ, NUMBA_DISABLE_JIT=jit_off)
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                             text=True, timeout=300, check=True)
        runs.append(json.loads(out.stdout))
    assert runs[0] == runs[1]
    assert runs[0][0] > 0 and runs[0][6] > 0          # accesses, evictions: real work


def test_plain_trace_replay_counts_libcachesim_misses():
    """On a page-request trace the compiled LRU misses exactly as an LRU must: a request to
    a page not among the last ``capacity`` distinct pages requested."""
    rng = np.random.default_rng(3)
    pages = rng.zipf(1.3, 5000) % 300
    files = FileTable.build([0], [0], [300])
    tr = Trace(np.full(len(pages), Op.READ, np.uint8), np.zeros(len(pages), np.int64),
               pages.astype(np.int64), np.ones(len(pages), np.int64), files)
    pc = PageCache(files, Cleancache(None), lambda: 50, policy="lru")
    state = LruState(pc.base, pc.span, pc.isize, files.dev, 50)
    state.replay(tr.op, tr.arg0, tr.arg1, tr.arg2)
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
    assert state.stats()["misses"] == misses
