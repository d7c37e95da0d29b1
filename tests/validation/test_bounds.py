"""The interval validate reports for censored captures (bounds.py): MIN is the fewest
insertions any replacement can make, and the readahead ceiling the most the kernel's code can
insert; the kernel's counts lie between them on every capture."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagcache.bounds import min_misses, next_use
from tagcache.validate import validate_capture, validate_trace
from tagcache.workloads.events import FileTable, Op, TraceBuilder

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = sorted((ROOT / "captures").glob("**/*.trace.zst")) + [
    ROOT / "tests" / "data" / "captures" / "mini-grep.trace.zst"]


def brute_force_fewest_misses(refs: list[int], capacity: int) -> int:
    """The fewest misses of any demand-paging replacement, by trying every eviction."""
    best = [len(refs)]

    def walk(i: int, cache: frozenset[int], misses: int) -> None:
        if misses >= best[0]:
            return
        if i == len(refs):
            best[0] = misses
            return
        p = refs[i]
        if p in cache:
            walk(i + 1, cache, misses)
        elif len(cache) < capacity:
            walk(i + 1, cache | {p}, misses + 1)
        else:
            for victim in cache:
                walk(i + 1, (cache - {victim}) | {p}, misses + 1)

    walk(0, frozenset(), 0)
    return best[0]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=12), st.integers(1, 4))
def test_min_is_the_fewest_misses_of_any_replacement(refs, capacity):
    assert min_misses(np.array(refs, np.int64), capacity) == \
        brute_force_fewest_misses(refs, capacity)


def test_next_use():
    assert next_use(np.array([5, 6, 5, 5, 7])).tolist() == [2, 5, 3, 5, 5]


def test_interval_from_a_hand_made_trace():
    """Two files of 4 pages, a cgroup of 2 pages: the reads 0,1,2,1,0 of file 0 miss at
    least four times (MIN keeps 1 for its next use and loses 0), file 1's fault once more,
    and one of those five is a page inserted before."""
    files = FileTable.build([1, 1], [10, 11], [4, 4])
    b = TraceBuilder()
    for i in (0, 1, 2, 1, 0):
        b.add(Op.GET_PAGES, 0, i, 1)
    b.add(Op.FAULT, 1, 3, 0)
    for f, i in ((0, 0), (0, 1), (0, 2), (0, 3), (1, 3)):   # sizes: 4 pages each
        b.add(Op.KERNEL_ADD, f, i, 0)
    v = validate_trace(b.build(files), 2, ra_pages=2, meta={"name": "t", "limit_mib": 2 / 256})
    iv = v.interval
    assert iv.insertions[0] == 5 and iv.reinsertions[0] == 1
    # Five reads of at most 2+2+1 pages each, a fault of at most 4 (the file) + 2 + 1.
    assert iv.insertions[1] == 5 * 5 + 7
    assert iv.demanded_pages == 4


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name.split(".")[0])
def test_kernel_counts_lie_in_the_interval_on_every_capture(path):
    v = validate_capture(path)
    assert v.interval.contains(v.kernel), (v.kernel, v.interval)


def test_brute_force_agrees_on_a_thrashing_loop():
    refs = list(itertools.islice(itertools.cycle(range(4)), 10))
    assert brute_force_fewest_misses(refs, 3) == min_misses(np.array(refs), 3) == 6
