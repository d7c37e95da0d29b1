"""A scenario's full set of runs: every design at every tagged share, on the same work.

The library entry point a notebook calls: ``run_scenario(load_scenario())``. Each run is
independent (fresh machine, same seeded trace per share), so the list could be farmed out.

Runs are like for like. At one share every design replays the identical trace (its digest,
:func:`trace_digest`, is checked after each run and kept in ``perf["trace_digest"]``). Across
shares the file work and the anonymous memory's size and churn are identical; only which
anonymous pages carry PROT_MTE changes. Each design also runs at 0% tagged (the *baselines*;
when 0.0 is one of the shares, its rows are the baselines), and each result carries its losses
against the baseline of the same design: ``page_cache["hits_lost_to_tagging"]`` (page-cache hits
plus cleancache restores at 0% minus at its share) and ``io["extra_pages_read_vs_untagged"]``
(pages read from disk at its share minus at 0%).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import xxhash

from tagcache.engine.pagemap import MAX_PAGECACHE_ORDER
from tagcache.replay import Design, MachineConfig, RunResult, replay
from tagcache.scenario import Scenario
from tagcache.sidecar import CaptureFacts
from tagcache.units import PAGE_SIZE
from tagcache.workers import run_units
from tagcache.workloads.events import Inserted, Op, Trace
from tagcache.workloads.generators import generate

BASELINE_SHARE = 0.0


@dataclass
class Experiment:
    scenario: Scenario
    results: list[RunResult]
    wall_s: float
    note: str = ""          # what was replayed, when it was not the scenario's workload
    baselines: list[RunResult] = field(default_factory=list)   # every design at 0% tagged

    def _runs(self) -> list[RunResult]:
        """Every result once, baseline runs included (those not already among the results)."""
        extra = [b for b in self.baselines if not any(b is r for r in self.results)]
        return self.results + extra

    @property
    def events(self) -> int:
        """Events replayed: a result taken from its twin policy's run (``perf`` has
        ``same_steps_as``) replayed none of its own."""
        return sum(r.perf["events"] for r in self._runs() if "same_steps_as" not in r.perf)

    @property
    def shared_runs(self) -> int:
        """Results taken from their twin policy's run rather than replayed."""
        return sum("same_steps_as" in r.perf for r in self._runs())

    def to_json(self) -> dict:
        return {
            "scenario": self.scenario.to_json(),
            "results": [r.to_json() for r in self.results],
            "baselines": [r.to_json() for r in self.baselines],
            "note": self.note,
            "perf": {"events": self.events, "shared_runs": self.shared_runs,
                     "wall_s": self.wall_s,
                     "events_per_s": self.events / self.wall_s if self.wall_s else 0.0},
        }


def trace_digest(trace: Trace, columns: xxhash.xxh3_128 | None = None) -> str:
    """XXH3-128 of the event columns (op, arg0, arg1, arg2) at fixed widths, then of the
    inserted events and their positions: equal digests mean the same events in the same
    order (the same events held merged or inserted hash differently). ``columns``: the
    columns' hash already taken (:func:`columns_hash`), for traces that share them."""
    h = (columns or columns_hash(trace)).copy()
    if trace.inserted is not None:
        h.update(b"inserted")
        for col in (trace.inserted.events, trace.inserted.at):
            h.update(memoryview(np.ascontiguousarray(col, dtype=np.int64)).cast("B"))
    return h.hexdigest()


def columns_hash(trace: Trace) -> xxhash.xxh3_128:
    """The hash of :func:`trace_digest` over the event columns alone."""
    h = xxhash.xxh3_128()
    for col, dt in ((trace.op, np.uint8), (trace.arg0, np.int64), (trace.arg1, np.int64),
                    (trace.arg2, np.int64)):
        h.update(memoryview(np.ascontiguousarray(col, dtype=dt)).cast("B"))
    return h


def scenario_trace(scn: Scenario, share: float) -> Trace:
    """The generated trace of ``scn`` at one tagged share."""
    tw = replace(scn.tagged, share=share)
    return generate(scn.files, tw, scn.machine.layout.data_pages, scn.seed,
                    name=f"{scn.name}@{share:g}")


def run_shares(scn: Scenario) -> list[float]:
    """The shares replayed: the scenario's, and 0% for the baselines if it is not one."""
    return scn.shares + ([] if BASELINE_SHARE in scn.shares else [BASELINE_SHARE])


def scenario_traces(scn: Scenario) -> dict[float, Trace]:
    """The trace of every share replayed (:func:`run_shares`)."""
    return {s: scenario_trace(scn, s) for s in run_shares(scn)}


def plan_size(scn: Scenario, traces: dict[float, Trace]) -> int:
    """Events :func:`run_scenario` replays, baseline runs included. A share missing from
    ``traces`` counts as long as the others: every share's trace has the same events."""
    n = len(next(iter(traces.values())))
    return sum(len(traces[s]) if s in traces else n for s in run_shares(scn)) * len(scn.designs)


def _replay_all(cfg: MachineConfig, designs: list[Design], trace: Trace, share: float,
                digest: str | None = None, **kw) -> list[RunResult]:
    """Every design on one trace, the identical events for each: the trace's columns are
    read-only while the designs run (a design that wrote to them would raise), and their
    digest is recorded with every result (taken here unless the caller gives it, or gives
    "" and records it itself)."""
    digest = trace_digest(trace) if digest is None else digest
    cols = (trace.op, trace.arg0, trace.arg1, trace.arg2)
    if trace.inserted is not None:
        cols += (trace.inserted.events, trace.inserted.at)
    writeable = [c.flags.writeable for c in cols]
    for c in cols:
        c.flags.writeable = False
    out = []
    try:
        for design in designs:
            r = replay(cfg, design, trace, tagged_share=share, **kw)
            r.perf["trace_digest"] = digest
            out.append(r)
    finally:
        for c, w in zip(cols, writeable, strict=True):
            if w:
                c.flags.writeable = True
    return out


def _against_baselines(results: list[RunResult], baselines: list[RunResult]) -> None:
    """Add each result's losses against the 0%-tagged run of the same design."""
    base = {b.design: b for b in baselines}
    for r in results:
        b = base[r.design]
        served = r.page_cache["hits"] + r.cleancache["restored"]
        served0 = b.page_cache["hits"] + b.cleancache["restored"]
        r.page_cache["hits_lost_to_tagging"] = served0 - served
        r.io["extra_pages_read_vs_untagged"] = r.io["pages_read"] - b.io["pages_read"]


def _split(scn: Scenario, runs: dict[float, list[RunResult]], wall: float, note: str = ""
           ) -> Experiment:
    baselines = runs[BASELINE_SHARE]
    results = [r for s in scn.shares for r in runs[s]]
    _against_baselines(results, baselines)
    if BASELINE_SHARE not in scn.shares:
        _against_baselines(baselines, baselines)
    return Experiment(scn, results, wall, note, baselines)


def run_scenario(scn: Scenario, *, check: bool = True,
                 progress: Callable[[int], None] | None = None,
                 traces: dict[float, Trace] | None = None, jobs: int = 1) -> Experiment:
    """Replay every design at every share, and at 0% tagged for the baselines;
    ``progress(n)`` hears of events as they go. ``jobs``: worker processes for the shares
    (workers.py; the results do not depend on it)."""
    t0 = time.perf_counter()
    traces = dict(traces or {})
    shares = run_shares(scn)

    def unit(i: int, tell: Callable[[int], None] | None) -> list[RunResult]:
        share = shares[i]
        tr = traces[share] if share in traces else scenario_trace(scn, share)
        return _replay_all(scn.machine, scn.designs, tr, share, check=check, progress=tell)

    runs = dict(zip(shares, run_units(unit, len(shares), jobs, progress), strict=True))
    return _split(scn, runs, time.perf_counter() - t0)


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
              facts: CaptureFacts | None = None, jobs: int = 1) -> Experiment:
    """Replay a real trace through every design of ``scn`` (``jobs``: worker processes for
    the shares, as for :func:`run_scenario`).

    Tagged memory comes from the scenario's generator (one set of runs per tagged share, and
    one at 0% for the baselines, its events spread over the trace), or from the trace's own
    kmem events: the user anonymous pages of the tasks named in ``tag_comms``, at their real
    PFNs. With ``facts``
    (a capture's sidecar, sidecar.capture_facts()) the page cache is the one ``tagcache
    validate`` checks against the kernel: the capture's readahead window, folio sizes,
    resident pages and mappings instead of the scenario's.
    """
    from tagcache.hw.layout import simple_layout
    from tagcache.workloads.generators import anon_events

    t0 = time.perf_counter()
    page_cache = {"page_cache_limit_pages": capacity_pages, "page_cache_policy": policy}
    if facts is not None and policy == "kernel":
        trace = replace(trace, files=facts.files(trace.files))
        page_cache.update(ra_pages=facts.ra_pages,
                          max_folio_order=MAX_PAGECACHE_ORDER if facts.large_folios else 0)
    else:
        facts = None
    base = replace(scn.machine, **page_cache)
    if tagged == "trace":
        # No 0%-tagged baseline here: the captured tasks' anonymous pages exist in the model
        # only as PROT_MTE pages at their real PFNs, so a run without tagging would also
        # remove them from memory, which is not the same work.
        tasks = trace_tasks(trace, tag_comms or ["all"])
        pfns = trace.arg0[np.isin(trace.op, [Op.PAGE_ALLOC, Op.PAGE_FREE])]
        top = int(pfns.max()) + 1 if len(pfns) else 0
        mem = max(base.layout.data_pages, -(-top // 32) * 32) * PAGE_SIZE
        cfg = replace(base, layout=simple_layout(mem, base.layout.regions[0].block_size, 0))
        results = _replay_all(cfg, scn.designs, trace, 0.0, check=check, progress=progress,
                              tag_tasks=tasks, facts=facts)
        return Experiment(scn, results, time.perf_counter() - t0,
                          _trace_note(trace, capacity_pages, policy, cfg, facts) +
                          f"; tagged: user anonymous pages of {len(tasks)} captured tasks")
    shares = run_shares(scn)
    memo: dict = {}

    def share_trace(i: int) -> Trace:
        tw = replace(scn.tagged, share=shares[i])
        tev, at = anon_events(tw, base.layout.data_pages, len(trace), scn.seed)
        if not len(tev):
            return trace
        # the trace's columns are shared, not copied, by every share
        return replace(trace, inserted=Inserted.build(tev, at, len(trace)))

    def unit(i: int, tell: Callable[[int], None] | None) -> list[RunResult]:
        return _replay_all(base, scn.designs, share_trace(i), shares[i], digest="",
                           check=check, progress=tell, facts=facts, memo=memo)

    digests: list[str] = []

    def meanwhile() -> None:
        """The shares' digests, here while the workers replay (one hash of the columns)."""
        columns = columns_hash(trace)
        digests.extend(trace_digest(share_trace(i), columns) for i in range(len(shares)))

    idle = [d for d in scn.designs if d.backend == "idle"]
    if jobs > 1 and idle and not check and min(jobs, len(shares)) > 1:
        # A page cache nothing else changes (an idle design, unchecked) is replayed once, into
        # the memo, here, before the workers fork, so that they all find it there.
        replay(base, idle[0], trace, memo=memo, facts=facts)
    got = run_units(unit, len(shares), jobs, progress, meanwhile)
    for results, digest in zip(got, digests, strict=True):
        for r in results:
            r.perf["trace_digest"] = digest
    runs = dict(zip(shares, got, strict=True))
    return _split(scn, runs, time.perf_counter() - t0,
                  _trace_note(trace, capacity_pages, policy, base, facts) +
                  "; tagged: the scenario's generator")


def _trace_note(trace: Trace, capacity: int | None, policy: str, cfg,
                facts: CaptureFacts | None) -> str:
    cap = f"{capacity:,} pages" if capacity is not None else "free memory"
    if capacity is not None and facts is not None:
        room = facts.room(trace, capacity)
        n = int(np.count_nonzero(trace.op == Op.CGROUP_SAMPLE))
        follows = n and (room.use_nonfile or room.use_metadata)
        cap = f"{room.pages:,} pages" + (f" at the start, following {n:,} cgroup samples"
                                         if follows else "")
    setup = ""
    if facts is not None:
        setup = (f" as the capture's sidecar says (readahead {facts.ra_pages} pages, "
                 f"{'large' if facts.large_folios else 'order-0'} folios"
                 f"{', its mappings' if facts.exec_vmas is not None else ''})")
    return (f"trace {trace.name}: {len(trace):,} events, {len(trace.files):,} files; "
            f"page cache: {policy} model{setup}, capacity {cap}; machine "
            f"{cfg.layout.data_pages * PAGE_SIZE >> 20} MiB data")
