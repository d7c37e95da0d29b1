"""A scenario's full set of runs: every design at every tagged share, on the same file work.

The library entry point a notebook calls: ``run_scenario(load_scenario())``. Each run is
independent (fresh machine, same seeded trace per share), so the list could be farmed out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from tagcache.mm.filemap import MAX_PAGECACHE_ORDER
from tagcache.replay import RunResult, replay
from tagcache.scenario import Scenario
from tagcache.sidecar import CaptureFacts
from tagcache.units import PAGE_SIZE
from tagcache.workloads.events import Op, Trace
from tagcache.workloads.generators import generate


@dataclass
class Experiment:
    scenario: Scenario
    results: list[RunResult]
    wall_s: float
    note: str = ""          # what was replayed, when it was not the scenario's workload

    @property
    def events(self) -> int:
        return sum(r.perf["events"] for r in self.results)

    def to_json(self) -> dict:
        return {
            "scenario": self.scenario.to_json(),
            "results": [r.to_json() for r in self.results],
            "note": self.note,
            "perf": {"events": self.events, "wall_s": self.wall_s,
                     "events_per_s": self.events / self.wall_s if self.wall_s else 0.0},
        }


def scenario_trace(scn: Scenario, share: float) -> Trace:
    """The generated trace of ``scn`` at one tagged share."""
    tw = replace(scn.tagged, share=share)
    return generate(scn.files, tw, scn.machine.layout.data_pages, scn.seed,
                    name=f"{scn.name}@{share:g}")


def plan_size(scn: Scenario, traces: dict[float, Trace]) -> int:
    return sum(len(traces[s]) for s in scn.shares) * len(scn.designs)


def run_scenario(scn: Scenario, *, check: bool = True,
                 progress: Callable[[int], None] | None = None,
                 traces: dict[float, Trace] | None = None) -> Experiment:
    """Replay every design at every share; ``progress(n)`` hears of events as they go."""
    t0 = time.perf_counter()
    traces = traces or {s: scenario_trace(scn, s) for s in scn.shares}
    results = []
    for share in scn.shares:
        cfg = scn.machine_for(share)
        for design in scn.designs:
            results.append(replay(cfg, design, traces[share], tagged_share=share, check=check,
                                  progress=progress))
    return Experiment(scn, results, time.perf_counter() - t0)


TAGGED_SOURCES = ("generator", "trace")


def trace_tasks(trace: Trace, comms: list[str]) -> frozenset[int]:
    """Indexes of ``trace.tasks`` whose command is one of ``comms`` ('all': every task)."""
    if comms == ["all"]:
        return frozenset(range(len(trace.tasks)))
    want = set(comms)
    return frozenset(i for i, (comm, _pid) in enumerate(trace.tasks) if comm in want)


def run_trace(scn: Scenario, trace: Trace, *, capacity_pages: int | None = None,
              policy: str = "kernel", tagged: str = "generator",
              tag_comms: list[str] | None = None, check: bool = True,
              progress: Callable[[int], None] | None = None,
              facts: CaptureFacts | None = None) -> Experiment:
    """Replay a real trace through every design of ``scn``.

    Tagged memory comes from the scenario's generator (one set of runs per tagged share,
    its events spread over the trace), or from the trace's own kmem events: the user
    anonymous pages of the tasks named in ``tag_comms``, at their real PFNs. With ``facts``
    (a capture's sidecar, sidecar.capture_facts()) the page cache is the one ``tagcache
    validate`` checks against the kernel: the capture's readahead window, folio sizes,
    resident pages and mappings instead of the scenario's.
    """
    from tagcache.hw.layout import simple_layout
    from tagcache.workloads.generators import merge, tagged_events

    t0 = time.perf_counter()
    results = []
    page_cache = {"page_cache_limit_pages": capacity_pages, "page_cache_policy": policy}
    if facts is not None and policy == "kernel":
        trace = replace(trace, files=facts.files(trace.files))
        page_cache.update(ra_pages=facts.ra_pages,
                          max_folio_order=MAX_PAGECACHE_ORDER if facts.large_folios else 0)
    else:
        facts = None
    base = replace(scn.machine, **page_cache)
    if tagged == "trace":
        tasks = trace_tasks(trace, tag_comms or ["all"])
        pfns = trace.arg0[np.isin(trace.op, [Op.PAGE_ALLOC, Op.PAGE_FREE])]
        top = int(pfns.max()) + 1 if len(pfns) else 0
        mem = max(base.layout.data_pages, -(-top // 32) * 32) * PAGE_SIZE
        cfg = replace(base, layout=simple_layout(mem, base.layout.regions[0].block_size, 0),
                      anon_untagged_pages=0)
        share = 0.0
        for design in scn.designs:
            results.append(replay(cfg, design, trace, tagged_share=share, check=check,
                                  progress=progress, tag_tasks=tasks, facts=facts))
        return Experiment(scn, results, time.perf_counter() - t0,
                          _trace_note(trace, capacity_pages, policy, cfg, facts) +
                          f"; tagged: user anonymous pages of {len(tasks)} captured tasks")
    for share in scn.shares:
        cfg = replace(scn.machine_for(share), **page_cache)
        tw = replace(scn.tagged, share=share)
        tev, at = tagged_events(tw, cfg.layout.data_pages, len(trace), scn.seed)
        if len(tev):
            m = merge(np.stack([trace.op.astype(np.int64), trace.arg0, trace.arg1, trace.arg2],
                               axis=1), tev, at)
            tr = Trace(m[:, 0].astype(np.uint8), m[:, 1].copy(), m[:, 2].copy(),
                       m[:, 3].copy(), trace.files, trace.name, trace.tasks)
        else:
            tr = trace
        for design in scn.designs:
            results.append(replay(cfg, design, tr, tagged_share=share, check=check,
                                  progress=progress, facts=facts))
    return Experiment(scn, results, time.perf_counter() - t0,
                      _trace_note(trace, capacity_pages, policy, base, facts) +
                      "; tagged: the scenario's generator")


def _trace_note(trace: Trace, capacity: int | None, policy: str, cfg,
                facts: CaptureFacts | None) -> str:
    cap = f"{capacity:,} pages" if capacity is not None else "free memory"
    setup = ""
    if facts is not None:
        setup = (f" as the capture's sidecar says (readahead {facts.ra_pages} pages, "
                 f"{'large' if facts.large_folios else 'order-0'} folios"
                 f"{', its mappings' if facts.exec_vmas is not None else ''})")
    return (f"trace {trace.name}: {len(trace):,} events, {len(trace.files):,} files; "
            f"page cache: {policy} model{setup}, capacity {cap}; machine "
            f"{cfg.layout.data_pages * PAGE_SIZE >> 20} MiB data")
