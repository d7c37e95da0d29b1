"""replay.py end to end: generated traces through every design with the checker on, and a
hand-written tagged-memory trace whose tag-storage numbers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from tagcache.engine.rules import RULES
from tagcache.hw.layout import simple_layout
from tagcache.replay import Design, MachineConfig, replay
from tagcache.workloads.events import FileTable, Op, TraceBuilder
from tagcache.workloads.generators import FileWorkload, TaggedWorkload, generate

MIB = 1 << 20
DESIGNS = [Design("idle"), Design("cleancache", "whole"), Design("cleancache", "split")]
SHARE = 0.1


@pytest.fixture(scope="module")
def layout():
    return simple_layout(64 * MIB)


@pytest.fixture(scope="module")
def trace(layout):
    """8 files of ~64 pages, 300 file operations (scans expand them); anonymous memory leaves
    only ~100 pages for the page cache, so it is under constant pressure: 512-page processes,
    10% of memory tagged, with 20 restarts/forks/swaps/migrations."""
    fw = FileWorkload(files=8, file_size_pages=64, events=300, read_pages=8, scan_read_pages=32,
                      loop_files=2)
    tw = TaggedWorkload(share=SHARE, process_pages=512, churn_events=20,
                        anon_pages=layout.data_pages - 256 - 100)
    return generate(fw, tw, layout.data_pages, seed=3)


@pytest.fixture(scope="module")
def cfg(layout):
    return MachineConfig(layout=layout, min_free_pages=256, alloc_chunk_pages=16, seed=3)


@pytest.fixture(scope="module")
def results(cfg, trace):
    return {(d.backend, d.policy): replay(cfg, d, trace, tagged_share=SHARE, check=True)
            for d in DESIGNS}


def test_trace_has_both_workloads(trace):
    ops = set(trace.op.tolist())
    assert {Op.READ, Op.WRITE, Op.MTE_MAP, Op.MTE_EXIT} <= ops
    assert trace.files.large_folios.any() and not trace.files.large_folios.all()


@pytest.mark.parametrize("key", [("idle", "whole"), ("cleancache", "whole"),
                                 ("cleancache", "split")])
def test_no_invariant_broken(results, key):
    r = results[key]
    assert r.invariants == dict.fromkeys(RULES, 0), r.violations
    assert r.tag_storage["reservation_failures"] == 0
    assert r.io["oom_events"] == 0
    assert r.tag_storage["reservations"] > 0 and r.page_cache["evictions"] > 0


def test_cleancache_does_not_change_the_page_cache(results):
    pcs = [r.page_cache_alone() for r in results.values()]
    assert pcs[0] == pcs[1] == pcs[2]
    idle = results["idle", "whole"].page_cache
    assert idle["cleancache_hits"] == 0 and idle["effective_hit_ratio"] == idle["hit_ratio"]
    for policy in ("whole", "split"):
        pc = results["cleancache", policy].page_cache
        assert 0 < pc["cleancache_hits"] <= results["cleancache", policy].cleancache["restored"]
        assert pc["hit_ratio"] < pc["effective_hit_ratio"] <= 1
    assert results["idle", "whole"].io["pages_written"] == \
        results["cleancache", "whole"].io["pages_written"]


def test_restores_replace_disk_reads(results):
    assert results["cleancache", "whole"].cleancache["evicted"] > 0    # tag storage filled up
    idle = results["idle", "whole"]
    assert idle.cleancache["stored"] == idle.cleancache["restored"] == 0
    for policy in ("whole", "split"):
        r = results["cleancache", policy]
        cc = r.cleancache
        assert cc["restored"] > 0
        assert r.io["pages_read"] + cc["restored"] == idle.io["pages_read"]
        assert cc["stored"] == r.page_cache["evictions"]
        assert cc["stored"] - cc["restored"] - cc["invalidated"] - cc["reclaimed"] \
            - cc["evicted"] == cc["cached"]
        io = r.io
        # Fewer pages from disk, and no more requests than without cleancache.
        assert io["read_requests"] <= idle.io["read_requests"] + io["requests_avoided"] + \
            cc["restored"]
        assert io["read_requests"] == idle.io["read_requests"] - io["requests_avoided"]


def test_policies_differ_only_in_what_tags_take(results):
    whole, split = results["cleancache", "whole"], results["cleancache", "split"]
    assert split.cleancache["collateral"] == 0
    assert whole.cleancache["collateral"] <= whole.cleancache["reclaimed"]
    for k in ("reservations", "reserved_peak", "reserved_now", "cmo_pages"):
        assert whole.tag_storage[k] == split.tag_storage[k]
    for r in (whole, split):
        drops = r.tag_storage["dropped_per_claim"]
        assert sum(drops.values()) == r.tag_storage["reservation_latency_ns"]["claiming"]["calls"]
    assert set(k for k, v in split.tag_storage["dropped_per_claim"].items() if v) <= {"0", "1"}


def test_replay_is_a_pure_function(cfg, trace, results):
    again = replay(cfg, Design("cleancache", "whole"), trace, tagged_share=SHARE, check=True)
    first = results["cleancache", "whole"]
    for group in ("page_cache", "cleancache", "tag_storage", "io", "invariants"):
        assert getattr(again, group) == getattr(first, group)
    assert again.perf["events"] == len(trace)


def test_unchecked_replay_reports_no_invariants(cfg, trace, results):
    r = replay(cfg, Design("cleancache", "split"), trace, tagged_share=SHARE, check=False)
    assert r.invariants == {}
    assert r.cleancache == results["cleancache", "split"].cleancache
    assert set(r.to_json()) >= {"backend", "policy", "tagged_share", "page_cache",
                                "cleancache", "tag_storage", "io", "invariants", "perf"}


# -- tagged memory, worked out by hand ----------------------------------------------------------

def tagged_trace():
    b = TraceBuilder()
    b.add(Op.MTE_MAP, 0, 64, 64)      # PFNs S..S+63, all PROT_MTE: blocks 0, 1
    b.add(Op.MTE_FORK, 0, 1)          # child 1 shares all 64 copy-on-write
    b.add(Op.MTE_COW, 1, 16)          # child copies its last 16 -> S+64..79 (block 2)
    b.add(Op.MTE_SWAP_OUT, 0, 8)      # parent's private S+56..63 freed (block 1: 32 -> 24)
    b.add(Op.MTE_SWAP_IN, 0, 8)       # back at S+56..63 (block 1 already reserved)
    b.add(Op.MTE_MIGRATE, 0, 4)       # S+48..51 move to S+80..83 (block 2 already reserved)
    b.add(Op.MTE_EXIT, 1)             # child's S+64..79 freed; block 2 keeps 4
    b.add(Op.MTE_EXIT, 0)             # everything freed
    return b.build(FileTable.build([], [], []))


@pytest.mark.parametrize("backend, cmo", [("idle", 0), ("cleancache", 6)])
def test_tagged_memory_by_hand(layout, backend, cmo):
    cfg = MachineConfig(layout=layout, min_free_pages=0, alloc_policy="sequential")
    r = replay(cfg, Design(backend), tagged_trace(), check=True)
    ts = r.tag_storage
    assert r.invariants == dict.fromkeys(RULES, 0), r.violations
    assert ts["reservations"] == 64 + 16 + 8 + 4
    assert ts["reserved_peak"] == 3 and ts["reserved_now"] == 0
    assert ts["cmo_pages"] == cmo          # 3 blocks claimed and 3 released, 1 tag page each
    assert ts["tag_copies"] == 16 + 4
    assert ts["reservation_failures"] == 0
    assert set(k for k, v in ts["dropped_per_claim"].items() if v) == {"0"}
    assert ts["reservation_latency_ns"]["claiming"]["calls"] == 3     # 3 blocks claimed


def test_block_is_released_with_its_last_tagged_page(layout):
    b = TraceBuilder()
    b.add(Op.MTE_MAP, 0, 40, 40)
    b.add(Op.MTE_SWAP_OUT, 0, 8)      # S+32..39 go: block 1 is released
    trace = b.build(FileTable.build([], [], []))
    cfg = MachineConfig(layout=layout, min_free_pages=0, alloc_policy="sequential")
    r = replay(cfg, Design("cleancache"), trace, check=True)
    assert r.tag_storage["reserved_now"] == 1 and r.tag_storage["reserved_peak"] == 2
    assert r.tag_storage["cmo_pages"] == 3
    assert r.invariants == dict.fromkeys(RULES, 0)
    c = cfg.costs
    lat = r.tag_storage["reservation_latency_ns"]
    claim = c.tag_lookup + c.tag_page_claim + c.cmo_page      # a free tag page, no drop
    assert np.isclose(lat["claiming"]["max"], claim) and np.isclose(lat["claiming"]["p50"], claim)
    assert np.isclose(lat["all"]["p50"], c.tag_lookup)     # 38 of 40 calls only look up
