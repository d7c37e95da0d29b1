"""Dense page indexes (issue 9, part 3): memory follows what a trace touches, not its largest id.

Object ids (libCacheSim txt, csv, oracleGeneral) become dense pages in id order; addresses
(blkparse, MSR, csv with block-size, ftrace) are compacted in 2 MiB extents that keep order,
offsets, alignment and every distance up to 8 MiB.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trace_paths import DATA

from tagcache.traces import read_trace
from tagcache.traces._common import (
    EXTENT_KEEP,
    EXTENT_SHIFT,
    compact_extents,
    dense_object_ids,
)

E = 1 << EXTENT_SHIFT
MAX_RSS_MB = 400
"""The run's peak: the interpreter, the replay, and numba's compiler, which the txt reader now
loads (about 60 MB with its cache warm, 100 MB while it compiles on a cold one)."""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_txt_ids_up_to_2_60_replay_with_4_misses_in_little_memory(tmp_path):
    """The issue's case: ids 0, 1, 2**60, 2 through `tagcache run` (plain LRU): 4 misses, and
    the process's peak RSS stays small (it tried to allocate exabytes). The same run of ids
    0, 1, 3, 2 first, in the same process, shows what the 2**60 costs: nothing."""
    small = write(tmp_path, "small-ids.txt", "0\n1\n3\n2\n")
    big = write(tmp_path, "big-ids.txt", f"0\n1\n{2**60}\n2\n")
    out = tmp_path / "out.json"
    # VmHWM, not getrusage's ru_maxrss: Linux carries the forking process's peak (pytest's)
    # across execve into the child's ru_maxrss
    code = textwrap.dedent(f"""
        import re
        from tagcache.cli import main
        for path in ({str(small)!r}, {str(big)!r}):
            rc = main(["run", "--trace", path, "--format", "txt", "--policy", "lru",
                       "--capacity", "100", "--backend", "idle", "--no-progress",
                       "--json", {str(out)!r}])
            with open("/proc/self/status") as f:
                hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1))
            print("RSS", rc, hwm // 1024)
    """)
    env = {"TAGCACHE_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    # The compiled engine's cache, where the set-up put it (else the child compiles it all).
    env |= {k: os.environ[k] for k in ("HOME", "XDG_CACHE_HOME", "NUMBA_CACHE_DIR")
            if k in os.environ}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    (rc0, rss_small), (rc1, rss_big) = (map(int, ln.split()[1:])
                                        for ln in done.stdout.splitlines()
                                        if ln.startswith("RSS "))
    assert rc0 == rc1 == 0, done.stderr
    results = json.loads(out.read_text())["results"]
    assert results and all(r["page_cache"]["accesses"] == 4 for r in results)
    assert all(r["page_cache"]["misses"] == 4 for r in results)
    assert rss_big - rss_small < 50 and rss_big < MAX_RSS_MB, \
        f"peak RSS {rss_big} MB ({rss_small} MB with small ids)"


def test_huge_ids_and_addresses_read_in_little_memory(tmp_path):
    """Every format at the top of its id or address space: the traces span a few pages or
    extents, and reading them allocates a few MB at most."""
    paths = [
        write(tmp_path, "a.txt", f"0\n{2**64 - 1}\n{2**63}\n1\n"),
        write(tmp_path, "a.csv", f"obj_id,obj_size\n5,10\n{2**64 - 2},1\n"),
        write(tmp_path, "a.blkparse", "".join(
            f"  8,0    1 {i + 1:8d}     0.00000{i}   697  Q   R {s} + 8 [cat]\n"
            for i, s in enumerate([0, 2**64 - 8, 9223372036854775000, 8]))),
        write(tmp_path, "a-msr.csv", "".join(
            f"1,hm,0,Read,{o},4096,5\n" for o in (2**64 - 4096, 2**60, 0, 4096))),
        write(tmp_path, "a.trace", "".join(
            f"  cat-1 [000] .... 1.0: mm_filemap_get_pages: dev=8:1 ino=c ofs={a}-{a + 4095}\n"
            for a in (0, 2**62, 2**63 - 4096))),
    ]
    oracle = tmp_path / "a.oracleGeneral"
    oracle.write_bytes(b"".join(struct.pack("<IQIq", 1, i, 1, -1)
                                for i in (2**64 - 1, 3, 2**63 + 5)))
    paths.append(oracle)
    tracemalloc.start()
    try:
        for p in paths:
            trace = read_trace(p, use_cache=False)
            assert trace.files.span_pages.max() <= 5 * (2 * EXTENT_KEEP + 1) * E, p
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"peak {peak >> 20} MiB"


def test_blkparse_sector_near_2_63_is_read_not_wrapped(tmp_path):
    """It became page -101 (sector * 512 overflowed int64); now it is the page it names."""
    sector = 9223372036854775000
    path = write(tmp_path, "s.blkparse",
                 f"  8,0    1        1     0.000000000   697  Q   R {sector} + 8 [cat]\n"
                 "  8,0    1        2     0.000000001   697  Q   R 0 + 8 [cat]\n")
    trace = read_trace(path, use_cache=False)
    assert (trace.arg1 >= 0).all()
    assert trace.extents.runs(0, sector >> 3, 1) == [(int(trace.arg1[0]), 1)]
    assert trace.extents.runs(0, 0, 1) == [(0, 1)]
    assert trace.arg1[0] % E == (sector >> 3) % E and trace.arg1[0] > trace.arg1[1]


def test_txt_id_2_63_minus_1_keeps_its_access(tmp_path):
    """The span overflowed and the access vanished; now three ids are three pages."""
    path = write(tmp_path, "m.txt", f"0\n{2**63 - 1}\n1\n{2**63 - 1}\n")
    trace = read_trace(path, use_cache=False)
    assert trace.arg1.tolist() == [0, 3, 1, 3]           # ids 0, 1, then a gap, then 2**63-1
    assert trace.files.span_pages.tolist() == [4]


def test_object_ids_stay_consecutive(tmp_path):
    """Page traces in txt keep their sequential runs; runs apart stay apart (one page)."""
    path = write(tmp_path, "p.txt", "".join(f"{i}\n" for i in [100, 101, 102, 7, 8, 500, 103]))
    trace = read_trace(path, use_cache=False)
    assert trace.arg1.tolist() == [3, 4, 5, 0, 1, 8, 6]


@pytest.mark.parametrize("name", ["mixed.blkparse", "mixed-msr.csv", "mixed-cloudphysics.csv"])
def test_sequential_block_requests_stay_sequential_far_away(tmp_path, name):
    """The mixed fixture moved up by 2**50 bytes: the same pages relative to each other."""
    near = read_trace(DATA / name, use_cache=False)
    text = (DATA / name).read_text()
    shift = 2**50
    if name.endswith("blkparse"):
        lines = [ln.split() for ln in text.splitlines()]
        text = "\n".join(" ".join(w[:7] + [str(int(w[7]) + shift // 512)] + w[8:])
                         if len(w) > 9 and w[8] == "+" else " ".join(w) for w in lines) + "\n"
    elif name == "mixed-msr.csv":
        text = "".join(",".join(f[:4] + [str(int(f[4]) + shift)] + f[5:]) + "\n"
                       for f in (ln.split(",") for ln in text.splitlines()))
    else:
        head, *rows = text.splitlines()
        text = head + "\n" + "".join(",".join(f[:4] + [str(int(f[4]) + shift // 512)]) + "\n"
                                     for f in (r.split(",") for r in rows))
    far = read_trace(write(tmp_path, name, text), use_cache=False)
    base = int(far.arg1.min()) - int(near.arg1.min())
    assert (far.arg1 - base).tolist() == near.arg1.tolist()
    assert far.arg2.tolist() == near.arg2.tolist() and far.op.tolist() == near.op.tolist()
    assert far.files.span_pages[0] <= near.files.span_pages[0] + EXTENT_KEEP * E


def test_cache_keeps_the_extent_map(tmp_path):
    path = write(tmp_path, "far.blkparse",
                 "".join(f"  8,0    1 {i + 1:8d}     0.00000{i}   697  Q   R {s} + 8 [cat]\n"
                         for i, s in enumerate([0, 2**40, 2**50, 2**40 + 8])))
    first = read_trace(path)
    second = read_trace(path)                # from the Parquet cache
    for k in ("file", "lo", "hi", "delta"):
        assert np.array_equal(getattr(first.extents, k), getattr(second.extents, k))
    assert (second.extents.shift, second.extents.keep) == (EXTENT_SHIFT, EXTENT_KEEP)
    assert np.array_equal(first.arg1, second.arg1)


pages = st.integers(min_value=0, max_value=2**61)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), pages, st.integers(0, 3 * E)), min_size=1,
                max_size=30),
       st.lists(st.tuples(st.integers(0, 2), st.integers(-3 * E, 3 * E)), max_size=10))
def test_compaction_keeps_order_offsets_and_near_distances(reqs, near):
    """Random requests (and some a few extents from others): pages keep their order, their
    offset in an extent, every distance of at most 2 * keep + 1 extents, and the map finds
    each page where the events put it."""
    reqs = reqs + [(f, max(0, reqs[i % len(reqs)][1] + d), 0) for i, (f, d) in enumerate(near)]
    fid = np.array([r[0] for r in reqs], np.int64)
    first = np.array([r[1] for r in reqs], np.int64)
    last = first + np.array([r[2] for r in reqs], np.int64)
    delta, ext = compact_extents(fid, first, last)
    new = first - delta
    assert (new >= 0).all() and (new % E == first % E).all()
    for f in set(fid.tolist()):
        m = fid == f
        a, b = first[m], new[m]
        o = np.argsort(a, kind="stable")
        a, b = a[o], b[o]
        assert (np.diff(b) >= 0).all() and ((np.diff(a) == 0) == (np.diff(b) == 0)).all()
        close = (a[1:] >> EXTENT_SHIFT) - (a[:-1] >> EXTENT_SHIFT) <= 2 * EXTENT_KEEP + 1
        assert (np.diff(b)[close] == np.diff(a)[close]).all()
        assert (np.diff(b)[~close] >= 2 * EXTENT_KEEP * E).all()
        extents = len(np.unique(np.concatenate([np.arange(x >> EXTENT_SHIFT,
                                                          (y >> EXTENT_SHIFT) + 1)
                                                for x, y in zip(first[m], last[m],
                                                                strict=True)])))
        assert (new[m] + (last[m] - first[m])).max() < extents * (2 * EXTENT_KEEP + 1) * E
    for f, p, q in zip(fid.tolist(), first.tolist(), new.tolist(), strict=True):
        assert ext.runs(f, p, 1) == [(q, 1)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 40), st.integers(0, 2**64 - 1)), min_size=1,
                max_size=60))
def test_dense_object_ids_are_ranks_with_one_page_gaps(ids):
    got = dense_object_ids(np.array(ids, np.uint64)).tolist()
    uniq = sorted(set(ids))
    expect, at = {}, 0
    for i, v in enumerate(uniq):
        if i and v > uniq[i - 1] + 1:
            at += 1
        expect[v] = at
        at += 1
    assert got == [expect[v] for v in ids]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), pages, st.integers(0, 2 * E)), min_size=1,
                max_size=20))
def test_compaction_of_many_files_far_apart_sorts_the_same(reqs):
    """Files too many to share an int64 key with extents up to 2**52 take the two-key sort:
    the same pages."""
    fid = np.array([r[0] for r in reqs], np.int64)
    first = np.array([r[1] for r in reqs], np.int64)
    last = first + np.array([r[2] for r in reqs], np.int64)
    delta, ext = compact_extents(fid, first, last)
    delta2, ext2 = compact_extents(fid + 2048, first, last)
    assert delta.tolist() == delta2.tolist()
    assert ext.lo.tolist() == ext2.lo.tolist() and ext.delta.tolist() == ext2.delta.tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40 * E), st.integers(0, 3 * E)),
                min_size=1, max_size=30))
def test_compaction_by_table_and_by_sort_agree(reqs):
    """Small address ranges go through a table of extents; one far event in another file
    sends the same events through the sort: each file's pages are the same either way."""
    fid = np.array([r[0] for r in reqs], np.int64)
    first = np.array([r[1] for r in reqs], np.int64)
    last = first + np.array([r[2] for r in reqs], np.int64)
    delta, ext = compact_extents(fid, first, last)
    far = int(fid.max()) + 1
    delta2, ext2 = compact_extents(np.r_[fid, far], np.r_[first, 2**61], np.r_[last, 2**61])
    assert delta.tolist() == delta2[:-1].tolist()
    keep = ext2.file != far
    for k in ("file", "lo", "hi", "delta"):
        assert getattr(ext, k).tolist() == getattr(ext2, k)[keep].tolist()
