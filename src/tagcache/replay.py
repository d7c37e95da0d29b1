"""The replay engine: build a machine for one design, apply a trace's events in order.

A run is a pure function of (machine config, design, trace) to a :class:`RunResult`: no global
state, so runs can be farmed out. The machine is the compiled engine's (engine/machine.py):
one flat state per run, its step functions compiled; this module turns its counters into the
report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from tagcache.backends import NAMES
from tagcache.backends import spec as backend_spec
from tagcache.backends.base import BackendSpec
from tagcache.costs import CostTable
from tagcache.engine.choices import ALLOC_WORDS
from tagcache.hw.layout import (
    BYTES_PER_PFN,
    MachineLayout,
    check_memory,
    mem_available,
    span_text,
)
from tagcache.sidecar import CaptureFacts
from tagcache.units import PAGE_SHIFT
from tagcache.workloads.events import Trace

BACKEND_NAMES = NAMES
"""Every registered backend (backends/__init__.py), ``idle`` first."""
CLEANCACHE_DEPENDENT = ("cleancache_hits", "effective_hit_ratio", "hits_lost_to_tagging")
JSON_EVENTS = 100
"""Event numbers of breaches written per rule in the JSON (all are counted)."""
DROP_BUCKETS = (0, 1, 2, 3, 5, 9, 17, 33, 65)
"""Lower bounds of the buckets of pages dropped per claiming call: 0, 1, 2, 3-4, 5-8, ..."""

BYTES_PER_SLOT = 64
"""Simulator memory per page-cache slot (one per page of every file's span, runs aligned to
512): 61 bytes measured (page cache, LRU, workingset shadows, tag store, checker), the slope
between 128 and 1,024 files of the default scenario."""
BYTES_PER_EVENT = 180
"""Peak memory per trace event while it is generated or replayed (175 bytes measured for
generation, 59 for the replay loop's lists), besides the trace itself."""
BYTES_PER_TRACE_EVENT = 26
"""Memory per event of a trace held (four columns: 25 bytes measured)."""


def parallel_runs(layout: MachineLayout, slots: int, events: int, traces: int,
                  jobs: int) -> int:
    """How many of ``jobs`` runs fit in MemAvailable side by side (at least 1): each worker
    builds a machine of its own (the layout's pages, the slots, the replay's per-event
    memory), the ``traces`` held are shared."""
    avail = mem_available()
    if avail is None or jobs <= 1:
        return max(1, jobs)
    machine = layout.nr_pfns * BYTES_PER_PFN + slots * BYTES_PER_SLOT + events * BYTES_PER_EVENT
    shared = events * BYTES_PER_TRACE_EVENT * traces
    return max(1, min(jobs, (avail - shared) // max(1, machine)))


def check_run_memory(layout: MachineLayout, slots: int, events: int, traces: int = 1) -> None:
    """Refuse (ResourceError, one line) a run whose estimated simulator memory would not fit
    in MemAvailable: the layout's pages, the page cache's slots, and ``events`` per trace of
    the ``traces`` held at once."""
    dram_pages = sum(s for _, s in layout.dram) >> PAGE_SHIFT
    need = (layout.nr_pfns * BYTES_PER_PFN + slots * BYTES_PER_SLOT
            + events * (BYTES_PER_EVENT + BYTES_PER_TRACE_EVENT * traces))
    check_memory(need, f"the simulation ({span_text(layout.nr_pfns, dram_pages)} x "
                       f"{BYTES_PER_PFN} B, {slots:,} page-cache slots x {BYTES_PER_SLOT} B, "
                       f"about {events:,} events x {traces} trace(s))")


@dataclass(frozen=True)
class MachineConfig:
    """Everything about the machine that is not the workload."""

    layout: MachineLayout
    min_free_pages: int = 4096
    memory_limit_pages: int | None = None      # memory cgroup limit on page cache + anon
    page_cache_limit_pages: int | None = None  # a fixed page-cache capacity (trace replays)
    page_cache_policy: str = "kernel"          # "kernel" model, or plain "lru"
    alloc_policy: str = "random"
    alloc_chunk_pages: int = 16
    anon_folio_order: int = 0
    ra_pages: int = 32
    max_folio_order: int = 4
    costs: CostTable = field(default_factory=CostTable)
    seed: int = 0


@dataclass(frozen=True)
class Design:
    """What tag storage does: a registered backend (backends/__init__.py) and its
    parameters: ``policy`` the large-folio policy of a backend that stores large folios,
    ``params`` the others, as sorted (name, value) pairs, those at their default left out (so
    a design has one spelling)."""

    backend: str = "idle"
    policy: str = "whole"
    params: tuple = ()
    alloc: str = ""                 # where tagged data pages go (ALLOC_POLICIES); "": the
                                    # machine's alloc_policy

    @classmethod
    def of(cls, backend: str, values: dict | None = None, alloc: str = "") -> Design:
        """The design of ``backend`` with parameter ``values`` (defaults for those left
        out; ``large_folio`` is the policy) and tagged pages placed by ``alloc`` (none for a
        backend that steers them itself: claim)."""
        spec = backend_spec(backend)
        values = dict(values or {})
        policy = values.pop("large_folio", "whole")
        defaults = spec.defaults()
        return cls(backend, policy, tuple(sorted(
            (k, v) for k, v in values.items() if defaults.get(k, object()) != v)),
            "" if spec.steers_tagged else alloc)

    @property
    def spec(self) -> BackendSpec:
        return backend_spec(self.backend)

    def values(self) -> dict:
        """Every parameter of the backend, with its value in this design."""
        spec = self.spec
        out = spec.defaults() | dict(self.params)
        if "large_folio" in out:
            out["large_folio"] = self.policy
        return out

    @property
    def label(self) -> str:
        """The backend's own words for this design (its report cell), and where its tagged
        pages go when the design says."""
        where = f", tagged pages {ALLOC_WORDS[self.alloc]}" if self.alloc else ""
        return self.spec.describe(self.values()) + where

    @property
    def key(self) -> str:
        """A short stable name: the backend, then each parameter's value in order."""
        return "/".join([self.backend, *map(str, self.values().values()),
                         *([f"alloc={self.alloc}"] if self.alloc else [])])

    def alloc_policy(self, cfg: MachineConfig) -> str:
        """Where this design's tagged pages go on ``cfg``: packed under the backend's active
        tag pages (a design that steers them), its own choice, or the machine's."""
        return "pack" if self.spec.steers_tagged else self.alloc or cfg.alloc_policy


@dataclass
class RunResult:
    backend: str
    policy: dict
    tagged_share: float
    page_cache: dict
    cleancache: dict
    tag_storage: dict
    io: dict
    invariants: dict
    perf: dict
    violations: list = field(default_factory=list)
    invariant_events: dict = field(default_factory=dict)   # rule -> event of every breach
    design: str = ""                                       # Design.key
    label: str = ""                                        # Design.label
    series: dict = field(default_factory=dict)             # over the run (recovered memory)

    def page_cache_alone(self) -> dict:
        """The page-cache counts, less those that depend on what cleancache served
        (identical across designs on the same trace: cleancache never changes the page
        cache's own decisions)."""
        return {k: v for k, v in self.page_cache.items() if k not in CLEANCACHE_DEPENDENT}

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("violations")
        d["invariant_reports"] = [asdict(v) for v in self.violations]
        d["invariant_events"] = {k: v[:JSON_EVENTS] for k, v in self.invariant_events.items()
                                 if v}
        return d


def replay(cfg: MachineConfig, design: Design, trace: Trace, *, tagged_share: float = 0.0,
           check: bool = False, progress: Callable[[int], None] | None = None,
           tag_tasks: frozenset[int] | None = None,
           facts: CaptureFacts | None = None, memo: dict | None = None) -> RunResult:
    """Run ``trace`` on a fresh machine of ``design``; ``progress(n)`` is told of n more events.

    ``tag_tasks``: indexes into ``trace.tasks`` whose user anonymous pages (kmem
    mm_page_alloc with GFP_HIGHUSER_MOVABLE) are treated as PROT_MTE, at their real PFNs.
    ``facts``: the capture's page cache as its sidecar describes it (sidecar.py): pages
    resident before it and mappings; ``cfg`` and ``trace.files`` carry its readahead and
    folio sizes (experiment.run_trace() sets them).
    ``memo``: a dict the caller keeps across runs of the same trace columns (with other
    events inserted, or none); a page cache that nothing else in the machine can change
    (engine/machine.py page_cache_alone()) is then replayed once and its result reused.
    """
    t0 = time.perf_counter()
    return _replay_flat(cfg, design, trace, tagged_share, progress, tag_tasks, facts, t0, memo,
                        check)


def _replay_flat(cfg: MachineConfig, design: Design, trace: Trace, tagged_share: float,
                 progress, tag_tasks, facts, t0: float, memo: dict | None,
                 check: bool = False) -> RunResult:
    """replay() on the compiled machine (engine/machine.py); with a ``memo``, a page cache
    that nothing but the trace changes runs once (machine.run())."""
    from tagcache.engine import machine as flat
    from tagcache.engine.anon import anon_report
    from tagcache.engine.cleancache import (
        backend_report,
        backend_waits,
        cleancache_report,
        metadata_bytes_per_tag_page,
        oracle_restored,
        simulator_bytes_per_tag_page,
    )
    from tagcache.engine.tags import reservation_calls, tag_storage_report
    from tagcache.engine.tagstore import FRONTEND_COUNTERS, SIBLINGS

    twin = _twin_run(memo, cfg, design, trace, tagged_share, tag_tasks, facts, check)
    if twin is not None:
        r = collect(twin["tally"], design, twin["share"], twin["events"], twin["wall"], cfg)
        r.perf["same_steps_as"] = twin["policy"]
        if progress is not None:        # its events are done, as far as a progress bar goes
            progress(twin["events"])
        return r
    fm = flat.build(cfg, design, trace, facts, tag_tasks, check)
    if memo is not None and not check and flat.page_cache_alone(fm, design):
        flat.run(fm, trace, progress, memo, (cfg.page_cache_policy, cfg.page_cache_limit_pages,
                                             cfg.ra_pages, cfg.max_folio_order, id(facts)))
    else:
        flat.run(fm, trace, progress)
    n = len(trace)
    wall = time.perf_counter() - t0
    ccr = cleancache_report(fm.cc)
    latency, claimed, dropped = reservation_calls(fm.ts)
    anon = anon_report(fm.an)
    t = Tally(
        flat.PAGE_CACHES[fm.policy].stats(fm.pc), {k: ccr[k] for k in FRONTEND_COUNTERS},
        ccr["evicted"], ccr["cached"], ccr["peak_cached"],
        metadata_bytes_per_tag_page(fm.cc), simulator_bytes_per_tag_page(fm.cc),
        tag_storage_report(fm.ts), np.asarray(latency, np.float64), np.asarray(claimed, bool),
        np.asarray(dropped, np.int32), anon["peak_tagged"], anon["copies"], fm.oom_events,
        {k: v / max(1, n) for k, v in fm.sums.items()}, *_checked(fm, check),
        backend=backend_report(fm.cc), waits=backend_waits(fm.cc),
        series={k: list(v) for k, v in fm.series.items()},
        oracle_restored=oracle_restored(fm.cc) if design.spec.offline else None)
    if tag_tasks:
        tagged_share = anon["peak_tagged"] / cfg.layout.data_pages
    if memo is not None and not check and design.spec.holds_cache and (
            "large_folio" in design.spec.defaults()) and design.policy in TWIN_POLICY:
        memo[_twin_key(cfg, design, trace, tag_tasks, facts)] = {
            "trace": trace, "cfg": cfg, "facts": facts, "policy": design.policy,
            "siblings": int(fm.cc.c[SIBLINGS]), "tally": t, "share": tagged_share,
            "events": n, "wall": wall}
    return collect(t, design, tagged_share, n, wall, cfg)


TWIN_POLICY = {"whole": "split", "split": "whole"}
"""The large-folio policies of the tag-storage backend, each the other's twin: they differ
only where a claim drops a page whose folio has other pages stored (engine/tagstore.py,
``SIBLINGS``)."""


def _twin_key(cfg: MachineConfig, design: Design, trace: Trace, tag_tasks, facts) -> tuple:
    return ("twin", design.backend, design.params, design.alloc, id(cfg), id(trace), id(facts),
            None if tag_tasks is None else tuple(sorted(tag_tasks)))


def _twin_run(memo: dict | None, cfg: MachineConfig, design: Design, trace: Trace,
              share: float, tag_tasks, facts, check: bool) -> dict | None:
    """The memo's run of ``design``'s twin policy on the same machine, trace (the same
    columns and inserted events) and share, when no claim of that run dropped a page with
    another page of its folio stored (``c[SIBLINGS] == 0``): the twin took exactly the steps
    ``design`` would, so its tally is ``design``'s. None otherwise (and with the checker on,
    which must see every design run)."""
    if (memo is None or check or design.policy not in TWIN_POLICY
            or "large_folio" not in design.spec.defaults()):
        return None
    hit = memo.get(_twin_key(cfg, design, trace, tag_tasks, facts))
    if (hit is None or hit["trace"] is not trace or hit["cfg"] is not cfg
            or hit["facts"] is not facts or hit["policy"] != TWIN_POLICY[design.policy]
            or hit["siblings"] or (not tag_tasks and hit["share"] != share)):
        return None
    return hit


def _checked(fm, check: bool) -> tuple[dict, list, dict]:
    """The compiled checker's counts, reports and breach events (empty without it)."""
    if not check:
        return {}, [], {}
    from tagcache.engine import checker

    ck = fm.cc.ck
    return checker.counts(ck), checker.reports(ck, fm.walk_details), checker.events(ck)


def _percentiles(x: np.ndarray) -> dict[str, float]:
    if not len(x):
        return {"calls": 0, "p50": 0.0, "p99": 0.0, "p99.9": 0.0, "max": 0.0}
    p50, p99, p999 = np.percentile(x, [50, 99, 99.9])
    return {"calls": int(len(x)), "p50": float(p50), "p99": float(p99), "p99.9": float(p999),
            "max": float(x.max())}


CDF_POINTS = 64
"""Points of a latency CDF in the results (quantiles, evenly spaced in probability)."""


def _cdf(x: np.ndarray) -> dict[str, list[float]]:
    """The empirical CDF of ``x`` at CDF_POINTS quantiles (empty lists for no calls)."""
    if not len(x):
        return {"ns": [], "fraction": []}
    q = np.linspace(0.0, 1.0, CDF_POINTS)
    return {"ns": np.quantile(x, q).tolist(), "fraction": q.tolist()}


def _buckets(x: np.ndarray) -> dict[str, int]:
    """Histogram over DROP_BUCKETS, labelled "0", "1", "2", "3-4", ..., "65+"."""
    edges = list(DROP_BUCKETS)
    counts = np.bincount(np.searchsorted(edges, x, side="right") - 1, minlength=len(edges))
    out = {}
    for k, lo in enumerate(edges):
        hi = edges[k + 1] - 1 if k + 1 < len(edges) else None
        label = f"{lo}+" if hi is None else (str(lo) if hi == lo else f"{lo}-{hi}")
        out[label] = int(counts[k])
    return out


@dataclass
class Tally:
    """What a finished run's report is made of, read from the compiled machine."""

    page_cache: dict            # PageCacheStats' fields (engine/pagecache.py)
    cleancache: dict            # the frontend's counters (engine/tagstore.py FRONTEND_COUNTERS)
    evicted: int
    cached: int
    peak_cached: int
    metadata_bytes_per_tag_page: float
    simulator_bytes_per_tag_page: float
    tag_storage: dict           # tag_storage_report() (engine/tags.py)
    latency: np.ndarray         # per reserve_tag_storage() call
    claimed: np.ndarray
    dropped: np.ndarray
    peak_tagged: int
    copies: int
    oom_events: int
    averages: dict
    invariants: dict
    violations: list
    invariant_events: dict
    backend: dict = field(default_factory=dict)     # backend_report(): its counters
    waits: np.ndarray = field(default_factory=lambda: np.zeros(0))   # ns, per waiting page
    series: dict = field(default_factory=dict)      # machine.run()'s samples over the run
    oracle_restored: int | None = None              # the Belady bound's page hits (oracle)


def collect(t: Tally, design: Design, share: float, events: int, wall: float,
            cfg: MachineConfig) -> RunResult:
    """The run's result from its tally."""
    pcs, ccs, ts, c = t.page_cache, t.cleancache, t.tag_storage, cfg.costs
    layout = cfg.layout
    avg = t.averages
    accesses = pcs["accesses"]
    spec = design.spec
    if t.oracle_restored is not None:
        # The bound: its page hits served no read during the run (the page cache's steps are
        # any design's); they stand for the restores the best policy would have made.
        pcs, ccs = dict(pcs), dict(ccs)
        ccs["restored"] = t.oracle_restored
        ccs["missed"] -= t.oracle_restored
        pcs["cleancache_hits"] = min(t.oracle_restored, pcs["misses"])
        pcs["pages_read"] -= t.oracle_restored
    page_cache = {k: v for k, v in pcs.items()
                  if k not in ("pages_read", "pages_written", "read_requests",
                               "read_requests_without_cleancache")}
    page_cache["hit_ratio"] = pcs["hits"] / accesses if accesses else 0.0
    page_cache["effective_hit_ratio"] = ((pcs["hits"] + pcs["cleancache_hits"]) / accesses
                                         if accesses else 0.0)
    looked_up = ccs["restored"] + ccs["missed"]
    cleancache = dict(ccs) | {
        "evicted": t.evicted,
        "cached": t.cached,
        "hit_ratio": ccs["restored"] / looked_up if looked_up else 0.0,
        "restored_per_stored": ccs["restored"] / ccs["stored"] if ccs["stored"] else 0.0,
    }
    latency, claimed, dropped = t.latency, t.claimed, t.dropped
    mib = 4096 / (1 << 20)
    tag_storage = {
        "total_tag_pages": layout.nr_tag_pages,
        "reserved_now": ts["reserved_pages"],
        "reserved_peak": ts["reserved_peak"],
        "reserved_avg": avg["reserved_pages"],
        "cache_pages_now": t.cached,
        "cache_pages_peak": t.peak_cached,
        "cache_pages_avg": avg["cached_pages"],
        "cache_mib_avg": avg["cached_pages"] * mib,
        "cache_mib_peak": t.peak_cached * mib,
        "achieved_tagged_share": {
            "peak": t.peak_tagged / layout.data_pages,
            "mean": avg["tagged_pages"] / layout.data_pages},
        "reservations": ts["reservations"],
        "reservation_failures": ts["reservation_failures"],
        "blocks_claimed": ts["blocks_claimed"],
        "unbalanced_releases": ts["unbalanced_releases"],
        "reservation_latency_ns": {"all": _percentiles(latency),
                                   "claiming": _percentiles(latency[claimed])},
        "reservation_latency_cdf": _cdf(latency),
        "claims_slept": ts.get("claims_slept", 0),
        "dropped_per_claim": _buckets(dropped[claimed]),
        "cmo_pages": ts["cmo_pages"],
        "metadata_bytes_per_tag_page": t.metadata_bytes_per_tag_page,
        "simulator_bytes_per_tag_page": t.simulator_bytes_per_tag_page,
        "tag_copies": t.copies,
        "migrations": t.backend.get("migrated", 0),
        "fallbacks": t.backend.get("fallbacks", 0),
        "writebacks": t.backend.get("writebacks", 0),
        "waits_ns": _percentiles(t.waits),
        "recovered_pages_avg": avg.get("recovered_pages", avg["cached_pages"]),
        "recovered_mib_avg": avg.get("recovered_pages", avg["cached_pages"]) * mib,
        "properties": spec.properties(),
        "backend": {k: v for k, v in t.backend.items()
                    if k not in ("migrated", "fallbacks", "writebacks")},
    }
    avoided_requests = pcs["read_requests_without_cleancache"] - pcs["read_requests"]
    saved = avoided_requests * c.disk_read_request + ccs["restored"] * c.disk_read_page
    cc_cost = ((ccs["stored"] + ccs["restored"]) * c.page_copy + ts["cmo_pages"] * c.cmo_page
               + ccs["reclaimed"] * c.cleancache_drop)
    io = {
        "read_requests": pcs["read_requests"],
        "pages_read": pcs["pages_read"],
        "pages_written": pcs["pages_written"],
        "requests_avoided": avoided_requests,
        "reads_avoided": ccs["restored"],
        "read_time_ns": pcs["read_requests"] * c.disk_read_request + pcs["pages_read"]
        * c.disk_read_page,
        "write_time_ns": pcs["pages_written"] * c.disk_write_page,
        "io_time_saved_ns": float(saved),
        "cleancache_cost_ns": float(cc_cost),
        "net_time_saved_ns": float(saved - cc_cost),
        "oom_events": t.oom_events,
    }
    return RunResult(
        backend=design.backend,
        policy={"large_folio": design.policy if "large_folio" in spec.defaults() else None,
                "alloc": design.alloc_policy(cfg),
                **{k: v for k, v in design.values().items() if k != "large_folio"}},
        tagged_share=share,
        page_cache=page_cache,
        cleancache=cleancache,
        tag_storage=tag_storage,
        io=io,
        invariants=t.invariants,
        perf={"events": events, "wall_s": wall, "events_per_s": events / wall if wall else 0},
        violations=t.violations,
        invariant_events=t.invariant_events,
        design=design.key,
        label=design.label,
        # A design with nothing to recover has no series (its page cache may have run once
        # for several designs, machine.run()'s memo, with no samples taken).
        series=t.series if spec.holds_cache or spec.lends_memory else {},
    )
