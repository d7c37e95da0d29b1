"""The checker has teeth: each rule of DESIGN.md section 3, broken in the engine, is counted
at the events where it breaks in a whole replay, and a clean run counts nothing.

The engine's step functions are broken by replacing a function, which only plain Python
allows: the runs go in a subprocess with NUMBA_DISABLE_JIT=1, where every step function is the
Python function it is compiled from and calls the others through its module's globals
(tests/test_invariants.py breaks single hooks the same way).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r'''
import json, numpy as np
from collections import Counter
from tagcache.hw.layout import simple_layout
from tagcache.replay import Design, MachineConfig, replay
from tagcache.workloads.events import FileTable, Op, TraceBuilder
from tagcache.engine import anon, cleancache, filemap, tags, vmscan, tagstore, filemap_add
from tagcache.engine import checker as ck_mod

LAYOUT = simple_layout(64 << 20)
FILES = FileTable.build(dev=[1], ino=[1], size_pages=[256], span_pages=[256],
                        large_folios=[False])

def run(events):
    b = TraceBuilder()
    for row in events:
        b.add(*row)
    cfg = MachineConfig(layout=LAYOUT, page_cache_limit_pages=1, ra_pages=0,
                        max_folio_order=0, alloc_policy="sequential", min_free_pages=0)
    r = replay(cfg, Design("cleancache"), b.build(FILES, "teeth"), check=True)
    return {k: sorted(Counter(v).items()) for k, v in r.invariant_events.items()}, \
        r.invariants, r.cleancache

out = {}
def case(name, events, patches):
    clean = run(events)[1]
    saved = [(m, a, getattr(m, a)) for m, a, _ in patches]
    for m, a, f in patches:
        setattr(m, a, f)
    try:
        ev, counts, cc = run(events)
    finally:
        for m, a, f in saved:
            setattr(m, a, f)
    out[name] = {"clean": clean, "events": ev, "counts": counts,
                 "restored": cc["restored"], "n": len(events)}

R = Op.READ
map_events = [(R, 0, 0, 1), (R, 0, 1, 1), (R, 0, 2, 1), (Op.MTE_MAP, 1, 40, 40),
              (R, 0, 3, 1), (R, 0, 4, 1), (R, 0, 5, 1), (Op.MTE_MAP, 2, 40, 40),
              (Op.MTE_MAP, 3, 64, 64), (Op.MTE_FORK, 3, 4, 0), (Op.MTE_COW, 4, 16, 0),
              (Op.MTE_EXIT, 4, 0, 0), (R, 0, 6, 1)]
# A claim that takes no tag page.
case("tags_reserved", map_events, [(tagstore, "tagstore_reserve_block", lambda cc, b: None)])
# A copy_highpage() that reserves nothing.
case("tags_reserved_cow", map_events, [(anon, "copy_highpage", lambda ts, to, frm: 0)])
case("tags_xor_cache", [(Op.MTE_MAP, 1, 256, 256)] + [(R, 0, i, 1) for i in range(20)],
     [(tagstore, "tagstore_reserve_block", lambda cc, b: None)])
# Writes and truncation that do not invalidate.
case("restore_fresh", [(R, 0, 40 + i, 1) for i in range(8)] + [(R, 0, 0, 1),
     (Op.TRUNCATE, 0, 32, 0), (Op.WRITE, 0, 60, 1)] + [(R, 0, 40 + i, 1) for i in range(8)],
     [(filemap, "cleancache_invalidate_range", lambda cc, a, b: None)])
# A claim that also drops the oldest stored page of another block.
orig_reserve = tagstore.tagstore_reserve_block
def greedy(cc, block):
    orig_reserve(cc, block)
    cached = np.flatnonzero(cc.tp_state == tagstore.TP_CACHE)
    if len(cached):
        tagstore._drop_page(cc, int(cached[0]), tagstore.TP_FREE)
case("reserve_bounded", [(R, 0, i, 1) for i in range(10)]
     + [(Op.MTE_MAP, p, 32, 32) for p in range(1, 5)],
     [(tagstore, "tagstore_reserve_block", greedy)])
# Writeback that never reaches the disk.
from tagcache.engine import pagecache
def lost_writeback(pc, head, nr):
    pc.c[pagecache.PAGES_WRITTEN] += nr
    pc.c[pagecache.NR_DIRTY] -= nr
case("no_dirty_store", [(Op.WRITE, 0, i, 1) for i in range(5)],
     [(vmscan, "folio_writeback", lost_writeback)])
# A backend that silently forgets the oldest page at every store from the fourth.
orig_store = tagstore.tagstore_store_folio
def forgetful(cc, head, order):
    ok = orig_store(cc, head, order)
    if cc.c[tagstore.NR_CACHED] > 3:
        tagstore._drop_page(cc, int(cc.tp_next[len(cc.tp_state)]), tagstore.TP_FREE)
    return ok
import tagcache.engine.filemap as fm
import tagcache.engine.machine as machine
fm.CONSERVATION_INTERVAL = machine.CONSERVATION_INTERVAL = 1
case("conservation", [(R, 0, i, 1) for i in range(12)],
     [(cleancache, "tagstore_store_folio", forgetful)])
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def broken():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _events(r, rule):
    return dict(r["events"].get(rule, []))


def test_clean_runs_count_nothing(broken):
    for name, r in broken.items():
        assert set(r["clean"].values()) == {0}, (name, r["clean"])


def test_teeth_tags_reserved(broken):
    got = _events(broken["tags_reserved"], "tags_reserved")
    assert got.get(3, 0) >= 40 and got.get(7, 0) >= 40


def test_teeth_tags_reserved_copy_highpage(broken):
    """A copy_highpage() that reserves nothing writes 16 pages' tags at event 10 (under a
    block its parent reserved: each page must hold its own reference); the child's exit at
    event 11 releases block 4 under its parent's tagged pages, and the final walk (after the
    last event) finds the refcounts wrong. The run completes."""
    r = broken["tags_reserved_cow"]
    got = _events(r, "tags_reserved")
    assert got.get(10, 0) >= 16
    assert got.get(r["n"], 0) >= 1


def test_teeth_tags_xor_cache(broken):
    got = _events(broken["tags_xor_cache"], "tags_xor_cache")
    assert all(got.get(e, 0) >= 1 for e in range(2, 10))


def test_teeth_restore_fresh(broken):
    r = broken["restore_fresh"]
    got = _events(r, "restore_fresh")
    assert r["restored"] == 8
    assert all(got.get(e, 0) >= 1 for e in range(11, 19))


def test_teeth_reserve_bounded(broken):
    got = _events(broken["reserve_bounded"], "reserve_bounded")
    assert [got.get(e, 0) for e in range(10, 14)] == [1, 1, 1, 1]
    assert broken["reserve_bounded"]["counts"]["conservation"] == 0   # drops are accounted


def test_teeth_no_dirty_store(broken):
    got = _events(broken["no_dirty_store"], "no_dirty_store")
    assert all(got.get(e, 0) >= 1 for e in range(1, 5))


def test_teeth_conservation(broken):
    got = _events(broken["conservation"], "conservation")
    assert min(got) == 4
    assert all(got.get(e, 0) >= 1 for e in range(4, 12)), got


def test_the_walk_names_a_broken_page_cache():
    """verify_page_cache() (the end-of-run walk of the kernel page cache) finds a folio on
    the wrong list, a slot not pointing at its head and a count that disagrees."""
    import numpy as np

    from tagcache.engine.cleancache import make_cleancache
    from tagcache.engine.filemap import replay_columns
    from tagcache.engine.machine import verify_page_cache
    from tagcache.engine.page_flags import PG_ACTIVE
    from tagcache.engine.pagecache import NR_PAGES, make_page_cache, set_limit
    from tagcache.workloads.events import FileTable, Op

    files = FileTable.build([1], [1], [64], [64], [True])
    pc = make_page_cache(files, make_cleancache(), ra_pages=8, max_folio_order=2)
    set_limit(pc, 1000)
    n = 16                          # a sequential stream: async readahead, larger folios
    replay_columns(pc, np.full(n, Op.READ, np.uint8), np.zeros(n, np.int64),
                   np.arange(n, dtype=np.int64) * 4, np.full(n, 4, np.int64))
    assert verify_page_cache(pc) == []
    head, flags, order = pc.head, pc.flags, pc.order
    cached = np.flatnonzero(head >= 0)
    h = int(head[cached[0]])
    flags[h] ^= PG_ACTIVE
    large = [int(x) for x in cached if head[x] == x and order[x] > 0 and x != h]
    assert large, "the readahead made no large folio"
    head[large[0] + 1] = large[0] + 1
    pc.c[NR_PAGES] += 1
    errs = " | ".join(verify_page_cache(pc))
    assert f"folio {h} on the wrong list" in errs
    assert f"folio {large[0]}: slots do not point at their head" in errs
    assert "page count" in errs
