"""The offline optimum of an exclusive cleancache (engine/oracle.py): equal to a brute force over
every set of candidate intervals on small random logs, and to Belady's sweep over a plain list
on longer ones; its heap pops furthest first after a rebuild; right on hand-checked logs (Belady
keeps the page hit sooner; an invalidation, a capacity drop, a re-store, a second lookup,
clipped ranges); never beaten by an online policy (FIFO), which with room for everything gets
exactly as many."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagcache.engine import oracle
from tagcache.engine.oracle import (
    LOG_CAPACITY,
    LOG_INVALIDATE,
    LOG_LOOKUP,
    LOG_STORE,
    oracle_hits,
)

STORE, LOOKUP, INVAL, CAP = LOG_STORE, LOG_LOOKUP, LOG_INVALIDATE, LOG_CAPACITY


def run(log: list[tuple[int, int, int]], capacity0: int) -> int:
    """oracle_hits() of a log written as (op, a, b) rows."""
    rows = np.array(log, dtype=np.int64).reshape(-1, 3)
    return oracle_hits(rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2].copy(), capacity0)


def _names(row: tuple[int, int, int], page: int) -> bool:
    o, x, y = row
    if o == STORE:
        return x <= page < x + y
    return o in (LOOKUP, INVAL) and x <= page < y


def candidates(log: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """The (store, lookup) entries of every copy that can hit: a page's STORE and the next
    entry naming the page, when that is a LOOKUP."""
    cands = []
    for i, row in enumerate(log):
        if row[0] != STORE:
            continue
        for page in range(row[1], row[1] + row[2]):
            j = next((j for j in range(i + 1, len(log)) if _names(log[j], page)), None)
            if j is not None and log[j][0] == LOOKUP:
                cands.append((i, j))
    return cands


def brute_force(log: list[tuple[int, int, int]], capacity0: int) -> int:
    """The largest set of candidates holding at most the capacity in force after every entry
    (a candidate (i, j) is held after entries i .. j - 1), by trying every subset (one bit per
    candidate)."""
    cands = candidates(log)
    subsets = np.arange(1 << len(cands), dtype=np.int64)
    bits = [(subsets >> c) & 1 for c in range(len(cands))]
    feasible = np.ones(len(subsets), dtype=bool)
    cap = capacity0
    for k, (o, x, _) in enumerate(log):
        if o == CAP:
            cap = x
        held = sum((bits[c] for c, (i, j) in enumerate(cands) if i <= k < j),
                   np.zeros_like(subsets))
        feasible &= held <= cap
    return int(sum(bits, np.zeros_like(subsets))[feasible].max())


def sweep_hits(log: list[tuple[int, int, int]], capacity0: int) -> int:
    """Belady's sweep over a plain list of the ends of the candidates held."""
    starts = candidates(log)
    held: list[int] = []
    cap, hits = capacity0, 0
    for k, (o, x, _) in enumerate(log):
        hits += held.count(k)
        held = [j for j in held if j != k] + [j for i, j in starts if i == k]
        if o == CAP:
            cap = x
        while len(held) > cap:
            held.remove(max(held))
    return hits


def fifo_hits(log: list[tuple[int, int, int]], capacity0: int) -> int:
    """An online policy: hold every page offered, drop the oldest stored when over capacity."""
    held: dict[int, bool] = {}                     # insertion order: oldest first
    cap, hits = capacity0, 0
    for o, x, y in log:
        if o == STORE:
            for page in range(x, x + y):
                held.pop(page, False)
                held[page] = True
        elif o == LOOKUP:
            hits += sum(held.pop(page, False) for page in range(x, y))
        elif o == INVAL:
            for page in range(x, y):
                held.pop(page, False)
        else:
            cap = x
        while len(held) > cap:
            del held[next(iter(held))]
    return hits


OPS = (STORE,) * 5 + (LOOKUP,) * 5 + (INVAL, CAP)
"""The op of a random entry: stores and lookups five times as likely as the others, so that
most logs have candidates, and enough of them to compete for room."""


def capacities(max_cap: int):
    """A capacity 0..max_cap, drawn uniformly (integers() would draw mostly 0, where nothing
    competes), simplest 1."""
    return st.sampled_from((1, 0, *range(2, max_cap + 1)))


def log_rows(slots: int, max_store: int, max_cap: int):
    """One log entry: a store of 1..max_store pages, a lookup or invalidation of a nonempty
    range of slots, or a new capacity 0..max_cap. Slots are drawn uniformly too: integers()
    would pile the entries on slot 0, each killing the candidate of the one before."""
    def row(r: tuple[int, int, int, int]) -> tuple[int, int, int]:
        o, x, n, cap = r
        if o == STORE:
            n = 1 + n % max_store
            return o, min(x, slots - n), n
        if o == CAP:
            return o, cap, 0
        return o, x, min(x + n, slots)
    return st.tuples(st.sampled_from(OPS), st.sampled_from(range(slots)),
                     st.sampled_from(range(1, slots + 1)), capacities(max_cap)).map(row)


def logs(max_entries: int, slots: int, max_store: int, max_cap: int):
    """A log of max_entries // 2 .. max_entries entries (competition needs several
    candidates; the shortest logs are the hand-written cases')."""
    return st.lists(log_rows(slots, max_store, max_cap), min_size=max_entries // 2,
                    max_size=max_entries)


@settings(max_examples=300, deadline=None)
@given(logs(14, 6, 2, 4))
def test_equals_brute_force(log):
    # Every initial capacity on each log: a wrong eviction choice shows on few random logs.
    for capacity0 in range(5):
        assert run(log, capacity0) == brute_force(log, capacity0), capacity0


@settings(max_examples=300, deadline=None)
@given(logs(40, 10, 4, 6), capacities(6))
def test_heap_equals_a_plain_sweep(log, capacity0):
    # Logs too long for the brute force: the heap, its lazy deletion and rebuilds.
    assert run(log, capacity0) == sweep_hits(log, capacity0)


@settings(max_examples=300, deadline=None)
@given(logs(40, 10, 4, 6), capacities(6))
def test_fifo_never_beats_the_oracle(log, capacity0):
    assert fifo_hits(log, capacity0) <= run(log, capacity0)
    # With room for every slot all along, holding everything is optimal: FIFO drops nothing.
    roomy = [(o, x + 10 if o == CAP else x, y) for o, x, y in log]
    assert fifo_hits(roomy, capacity0 + 10) == run(roomy, capacity0 + 10)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(range(31)), min_size=8, max_size=40), st.sampled_from(range(31)))
def test_heap_rebuild_keeps_the_order(keys, now):
    # One entry per slot, keyed by its hit entry; those at or before ``now`` are stale (hit).
    # A rebuild keeps the live ones, in heap order: they pop furthest first.
    n = len(keys)
    hkey, hslot = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    held_end = np.array([k if k > now else -1 for k in keys], dtype=np.int64)
    for s, key in enumerate(keys):
        hkey[s], hslot[s] = key, s
        oracle._sift_up(hkey, hslot, s)
    hn = oracle._heap_purge(hkey, hslot, n, held_end)
    assert all(hkey[(i - 1) // 2] >= hkey[i] for i in range(1, hn))
    popped = []
    while hn:
        hn = oracle._heap_pop(hkey, hslot, hn)
        popped.append((int(hkey[hn]), int(held_end[hslot[hn]])))
    assert popped == [(k, k) for k in sorted(held_end[held_end >= 0].tolist(), reverse=True)]


def test_belady_keeps_the_page_hit_sooner():
    # Capacity 1. Pages 0 and 1 stored, 1 looked up first: keeping 1 gets its hit and leaves
    # room for page 2, stored and hit before 0 is looked up (2 hits); keeping 0 gets 1.
    log = [(STORE, 0, 1), (STORE, 1, 1), (LOOKUP, 1, 2), (STORE, 2, 1), (LOOKUP, 2, 3),
           (LOOKUP, 0, 1)]
    assert run(log, 1) == 2
    assert run(log, 2) == 3


def test_invalidation_between_store_and_lookup():
    assert run([(STORE, 0, 2), (LOOKUP, 0, 2)], 4) == 2
    assert run([(STORE, 0, 2), (INVAL, 0, 1), (LOOKUP, 0, 2)], 4) == 1
    assert run([(STORE, 0, 2), (INVAL, 0, 2), (LOOKUP, 0, 2)], 4) == 0
    assert run([(STORE, 0, 1), (INVAL, 0, 1), (LOOKUP, 0, 1)], 4) == 0


def test_capacity_drop_between_store_and_lookup():
    assert run([(STORE, 0, 1), (CAP, 0, 0), (LOOKUP, 0, 1)], 4) == 0
    # A dropped copy does not come back when the room does.
    assert run([(STORE, 0, 1), (CAP, 0, 0), (CAP, 4, 0), (LOOKUP, 0, 1)], 4) == 0
    # A drop to 1 of 2 held pages keeps one.
    assert run([(STORE, 0, 2), (CAP, 1, 0), (LOOKUP, 0, 2)], 4) == 1
    # A store with capacity 0 holds nothing; a capacity raised in time does.
    assert run([(STORE, 0, 1), (LOOKUP, 0, 1)], 0) == 0
    assert run([(CAP, 1, 0), (STORE, 0, 1), (LOOKUP, 0, 1)], 0) == 1


def test_second_store_replaces_the_copy():
    # Two stores of page 0, one lookup: one hit, and one page of room is enough (the first
    # copy ended at the second store).
    assert run([(STORE, 0, 1), (STORE, 0, 1), (LOOKUP, 0, 1)], 4) == 1
    assert run([(STORE, 0, 1), (STORE, 0, 1), (LOOKUP, 0, 1)], 1) == 1
    # The new copy hits although the old one was dropped.
    assert run([(STORE, 0, 1), (CAP, 0, 0), (CAP, 1, 0), (STORE, 0, 1), (LOOKUP, 0, 1)], 4) == 1
    # The old copy's interval ends at the re-store: it never held page 0 against page 1.
    log = [(STORE, 0, 1), (STORE, 1, 1), (LOOKUP, 1, 2), (STORE, 0, 1), (LOOKUP, 0, 1)]
    assert run(log, 1) == 2


def test_exclusive_one_hit_per_store():
    assert run([(STORE, 0, 1), (LOOKUP, 0, 1), (LOOKUP, 0, 1)], 4) == 1
    assert run([(STORE, 0, 1), (LOOKUP, 0, 1), (STORE, 0, 1), (LOOKUP, 0, 1)], 4) == 2
    # Overlapping lookups of a 2-page folio: each page hits once.
    assert run([(STORE, 0, 2), (LOOKUP, 0, 2), (LOOKUP, 1, 2)], 4) == 2


def test_ranges_clipped():
    # An empty or inverted range names nothing; slots past those stored and negative ones
    # are ignored.
    assert run([(STORE, 2, 2), (LOOKUP, 3, 3), (LOOKUP, 3, 2), (LOOKUP, -5, 100)], 4) == 2
    assert run([(STORE, 2, 2), (INVAL, -5, 3), (LOOKUP, 0, 1 << 40)], 4) == 1
    assert run([(STORE, 0, 0), (STORE, 5, -1), (LOOKUP, 0, 8)], 4) == 0


def test_empty_log_and_unknown_op():
    assert run([], 4) == 0
    with pytest.raises(ValueError):
        run([(4, 0, 1)], 4)
