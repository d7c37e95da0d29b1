"""Like-for-like runs: the same anonymous work at every tagged share (only which pages carry
PROT_MTE changes), the identical trace for every design at one share, and each design's losses
against its own run at 0% tagged."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tagcache import experiment
from tagcache.experiment import (
    plan_size,
    run_scenario,
    run_trace,
    scenario_trace,
    scenario_traces,
    trace_digest,
)
from tagcache.replay import Design, replay
from tagcache.scenario import load_scenario, parse_scenario
from tagcache.workloads.events import Op
from tagcache.workloads.generators import FileWorkload, TaggedWorkload, anon_events, generate

DATA = 16384                      # data pages of a 64 MiB machine

SMALL = {
    "name": "small", "seed": 3,
    "machine": {"memory": "64MiB", "anon": "56MiB", "min_free": "1MiB"},
    "page_cache": {"max_folio_order": 2},
    "tagged": {"shares": [0.05, 0.3], "process_size": "4MiB", "churn_events": 12},
    "files": {"count": 6, "mean_size": "2MiB"},
    "workload": {"events": 120, "read_size": "32KiB"},
}


@pytest.fixture(scope="module")
def small():
    return parse_scenario(SMALL, "small.toml")


@pytest.fixture(scope="module")
def exp(small):
    seen = []
    e = run_scenario(small, check=False, progress=seen.append)
    e.progress = sum(seen)
    return e


# -- the generator --------------------------------------------------------------------------------

def streams(shares, anon=15000, churn=40):
    out = {}
    for s in shares:
        tw = TaggedWorkload(share=s, process_pages=1024, churn_events=churn, anon_pages=anon)
        out[s] = anon_events(tw, DATA, 500, seed=7)
    return out


def test_anon_events_differ_across_shares_only_in_prot_mte_pages():
    ev = streams([0.0, 0.01, 0.2, 0.5])
    ref, ref_at = ev[0.0]
    assert (ref[:, 0] == Op.MTE_MAP).sum() > 15 and (ref[:, 0] == Op.MTE_FORK).any()
    assert (ref[ref[:, 0] == Op.MTE_MAP, 3] == 0).all()
    for s, (e, at) in ev.items():
        assert np.array_equal(e[:, :3], ref[:, :3]) and np.array_equal(at, ref_at), s
        other = e[:, 0] != Op.MTE_MAP
        assert np.array_equal(e[other, 3], ref[other, 3]), s


@pytest.mark.parametrize("share", [0.01, 0.2, 0.5])
def test_prot_mte_pages_fill_processes_in_order_and_survive_restarts(share):
    (e, _at), = streams([share]).values()
    want = round(share * DATA)
    maps = e[e[:, 0] == Op.MTE_MAP]
    first = maps[:15]                                 # 14 processes of 1024 pages and one of 664
    assert first[:, 2].sum() == 15000 and first[:, 1].tolist() == list(range(15))
    k = first[:, 3]
    assert k.sum() == want and (k <= first[:, 2]).all()
    full = want // 1024
    assert (k[:full] == 1024).all() and (k[full + 1:] == 0).all()
    # Restarts hand a new process as many PROT_MTE pages as the one that exited, so the
    # processes alive at the end still hold the share.
    live = {}
    for op, a0, _a1, a2 in e.tolist():
        if op == Op.MTE_MAP:
            live[a0] = a2
        elif op == Op.MTE_EXIT:
            live.pop(a0, None)
    assert sum(live.values()) == want


def test_restart_keeps_prot_mte_pages():
    (e, _), = streams([0.2]).values()
    rows = e.tolist()
    restarts = [(rows[i][1], rows[i + 1]) for i in range(len(rows) - 1)
                if rows[i][0] == Op.MTE_EXIT and rows[i + 1][0] == Op.MTE_MAP]
    assert restarts
    k = {r[1]: r[3] for r in rows if r[0] == Op.MTE_MAP}
    for old, (_op, _new, _n, kn) in restarts:
        assert kn == k[old]


def test_zero_anon_pages_means_fully_tagged_processes():
    tw = TaggedWorkload(share=0.1, process_pages=1024, churn_events=5, anon_pages=0)
    e, _ = anon_events(tw, DATA, 100, seed=1)
    maps = e[e[:, 0] == Op.MTE_MAP]
    assert (maps[:, 2] == maps[:, 3]).all() and maps[:2, 2].sum() == round(0.1 * DATA)


# -- replays --------------------------------------------------------------------------------------

def test_default_scenario_leaves_the_page_cache_the_same_memory_at_every_share():
    """Idle tag storage: tagging changes nothing the page cache sees, so at 1% and 30% it makes
    exactly the same decisions; only the tag-storage figures differ."""
    scn = load_scenario()
    r = {s: replay(scn.machine, Design("idle"), scenario_trace(scn, s), tagged_share=s)
         for s in (0.01, 0.3)}
    assert r[0.01].page_cache == r[0.3].page_cache
    assert r[0.01].io["pages_read"] == r[0.3].io["pages_read"]
    assert r[0.01].io["oom_events"] == r[0.3].io["oom_events"] == 0
    assert r[0.01].tag_storage["reserved_peak"] * 10 < r[0.3].tag_storage["reserved_peak"]


def test_every_design_replays_the_identical_trace(small, exp):
    traces = scenario_traces(small)
    for share in (0.05, 0.3, 0.0):
        runs = [r for r in exp.results + exp.baselines if r.tagged_share == share]
        assert len(runs) == 3
        assert {r.perf["trace_digest"] for r in runs} == {trace_digest(traces[share])}
    digests = {r.perf["trace_digest"] for r in exp.results + exp.baselines}
    assert len(digests) == 3                    # arg2 of MTE_MAP differs between shares


def test_trace_digest_covers_every_column(small):
    tr = scenario_trace(small, 0.05)
    d = trace_digest(tr)
    for col in ("op", "arg0", "arg1", "arg2"):
        t2 = replace(tr, **{col: getattr(tr, col).copy()})
        getattr(t2, col)[-1] += 1
        assert trace_digest(t2) != d, col


def test_a_run_that_changes_its_trace_is_caught(small, monkeypatch):
    real = experiment.replay

    def meddling(cfg, design, trace, **kw):
        if design.backend == "cleancache":
            trace.arg1[0] += 1
        return real(cfg, design, trace, **kw)

    monkeypatch.setattr(experiment, "replay", meddling)
    with pytest.raises(ValueError, match="read-only"):   # the columns are locked meanwhile
        run_scenario(small, check=False)


def test_baselines_at_zero_percent(small, exp):
    assert [r.tagged_share for r in exp.results] == [0.05] * 3 + [0.3] * 3
    assert [(b.backend, b.policy["large_folio"], b.tagged_share) for b in exp.baselines] == [
        ("idle", None, 0.0), ("cleancache", "whole", 0.0), ("cleancache", "split", 0.0)]
    base = {b.policy["large_folio"]: b for b in exp.baselines}
    for r in exp.results + exp.baselines:
        b = base[r.policy["large_folio"]]
        lost = (b.page_cache["hits"] + b.cleancache["restored"]
                - r.page_cache["hits"] - r.cleancache["restored"])
        assert r.page_cache["hits_lost_to_tagging"] == lost
        assert r.io["extra_pages_read_vs_untagged"] == r.io["pages_read"] - b.io["pages_read"]
    for r in exp.results:
        if r.backend == "idle":     # the page cache has the same memory at every share
            assert r.page_cache["hits_lost_to_tagging"] == 0
    assert any(r.page_cache["hits_lost_to_tagging"] > 0 for r in exp.results)
    j = exp.to_json()
    assert len(j["baselines"]) == 3 and len(j["results"]) == 6


def test_progress_counts_the_baseline_runs(small, exp):
    traces = scenario_traces(small)
    assert set(traces) == {0.05, 0.3, 0.0}
    assert exp.progress == plan_size(small, traces) == exp.events
    assert exp.events == sum(r.perf["events"] for r in exp.results + exp.baselines)
    assert plan_size(small, {0.05: traces[0.05]}) == plan_size(small, traces)


def test_zero_share_rows_are_the_baselines(small):
    scn = replace(small, shares=[0.0, 0.3])
    e = run_scenario(scn, check=False)
    assert len(e.results) == 6 and e.baselines == e.results[:3]
    assert all(r.page_cache["hits_lost_to_tagging"] == 0 for r in e.results[:3])


def test_run_trace_with_the_generator_has_baselines(small):
    fw = FileWorkload(files=4, file_size_pages=64, events=80, read_pages=8)
    trace = generate(fw, TaggedWorkload(share=0.0), DATA, seed=5)
    assert not (trace.op == Op.MTE_MAP).any()
    scn = replace(small, shares=[0.3])
    e = run_trace(scn, trace, capacity_pages=100, tagged="generator", check=False)
    assert [r.tagged_share for r in e.results] == [0.3] * 3
    assert [r.tagged_share for r in e.baselines] == [0.0] * 3
    assert len({r.perf["trace_digest"] for r in e.results}) == 1
    assert e.results[0].perf["events"] == e.baselines[0].perf["events"] > len(trace)
    assert e.results[0].page_cache["hits_lost_to_tagging"] == 0       # fixed capacity, idle
    assert all(r.io["oom_events"] == 0 for r in e.results + e.baselines)


# -- a reader trace with generated tagged memory ---------------------------------------------------

@pytest.mark.parametrize("policy", ["lru", "kernel"])
def test_inserted_events_and_one_page_cache_pass_equal_merged_runs(small, policy):
    """run_trace() inserts each share's anonymous events into the reader trace without copying
    it, and replays a page cache of fixed capacity with no backend once for all shares: every
    count equals a replay of the merged trace with the checker on (which replays the page cache
    for every share), share by share."""
    from tagcache.workloads.generators import merge

    scn = replace(small, designs=[Design("idle")])
    base = scenario_trace(scn, 0.0)
    keep = np.isin(base.op, [Op.READ, Op.WRITE])
    reader = replace(base, op=base.op[keep], arg0=base.arg0[keep], arg1=base.arg1[keep],
                     arg2=base.arg2[keep])
    got = run_trace(scn, reader, capacity_pages=48, policy=policy, check=False)
    cfg = replace(scn.machine, page_cache_limit_pages=48, page_cache_policy=policy)
    cols = np.stack([reader.op.astype(np.int64), reader.arg0, reader.arg1, reader.arg2], 1)
    for r in got.results + got.baselines:
        tev, at = anon_events(replace(scn.tagged, share=r.tagged_share), DATA, len(reader),
                              scn.seed)
        m = merge(cols, tev, at)
        merged = replace(reader, op=m[:, 0].astype(np.uint8), arg0=m[:, 1].copy(),
                         arg1=m[:, 2].copy(), arg2=m[:, 3].copy())
        want = replay(cfg, Design("idle"), merged, tagged_share=r.tagged_share, check=True)
        assert r.perf["events"] == len(merged)
        against_baseline = ("hits_lost_to_tagging", "extra_pages_read_vs_untagged")
        for part in ("page_cache", "cleancache", "io", "tag_storage"):
            mine = {k: v for k, v in getattr(r, part).items() if k not in against_baseline}
            assert mine == getattr(want, part), part
