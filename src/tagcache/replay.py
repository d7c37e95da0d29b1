"""The replay engine: build a machine for one design, apply a trace's events in order.

A run is a pure function of (machine config, design, trace) to a :class:`RunResult`: no global
state, so runs can be farmed out. This is the plain-Python engine; every per-page structure is
an array, so a compiled engine can walk the same arrays later.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from tagcache import invariants
from tagcache.capacity import follow_room
from tagcache.cleancache.backends import BACKENDS
from tagcache.cleancache.frontend import Cleancache, CleancacheStats
from tagcache.costs import CostTable
from tagcache.hw.layout import (
    BYTES_PER_PFN,
    MachineLayout,
    check_memory,
    mem_available,
    span_text,
)
from tagcache.invariants import Checker
from tagcache.mm import vmscan
from tagcache.mm.anon import AnonMemory
from tagcache.mm.filemap import PageCache
from tagcache.mm.page_alloc import OutOfMemory, PageAllocator
from tagcache.mte import DROP_BUCKETS, TagStorage
from tagcache.sidecar import CaptureFacts
from tagcache.units import PAGE_SHIFT
from tagcache.workloads.events import GFP_USER_ANON, Op, Trace

BACKEND_NAMES = ("idle", *BACKENDS)
CLEANCACHE_DEPENDENT = ("cleancache_hits", "effective_hit_ratio", "hits_lost_to_tagging")
JSON_EVENTS = 100
"""Event numbers of breaches written per rule in the JSON (all are counted)."""

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
    """What tag storage does: ``idle`` (static carve-out) or a cleancache backend + policy."""

    backend: str = "idle"
    policy: str = "whole"

    @property
    def label(self) -> str:
        return "tag storage left idle" if self.backend == "idle" else (
            f"tag storage as cleancache ({self.policy} folio)")


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


class Machine:
    """The modelled machine, wired together for one design."""

    def __init__(self, cfg: MachineConfig, design: Design, trace: Trace, check: bool,
                 facts: CaptureFacts | None = None) -> None:
        self.cfg = cfg
        layout = cfg.layout
        probe = PageCache.slots_needed(trace.files)
        self.checker = Checker(probe) if check else None
        backend = None
        if design.backend != "idle":
            backend = BACKENDS[design.backend](layout, probe, design.policy)
        self.cleancache = Cleancache(backend)
        self.alloc = PageAllocator(layout, cfg.alloc_policy, cfg.alloc_chunk_pages, cfg.seed)
        self.tags = TagStorage(layout, self.cleancache, cfg.costs)
        self.alloc.block_refs = self.tags.refs
        # A capture's cgroup: the room its samples and kmem events leave (capacity.py).
        self.room = None
        if facts is not None and cfg.page_cache_limit_pages is not None:
            self.room = facts.room(trace, cfg.page_cache_limit_pages)
        self.pc = PageCache(trace.files, self.cleancache, self.page_cache_limit,
                            ra_pages=cfg.ra_pages, max_folio_order=cfg.max_folio_order,
                            policy=cfg.page_cache_policy,
                            exec_vmas=facts.exec_vmas if facts else None,
                            cow_vmas=facts.cow_vmas if facts else None)
        if facts is not None:
            facts.preload(self.pc)
        self.anon = AnonMemory(self.alloc, self.tags, self.make_room, cfg.anon_folio_order)
        self.oom_events = 0
        if self.checker is not None:
            self.checker.attach(pagecache=self.pc, cleancache=self.cleancache, tags=self.tags,
                                anon=self.anon)

    def page_cache_limit(self) -> int:
        """Pages the page cache may hold now: a fixed capacity when one is given (a trace
        replay's cgroup), else free frames less the reserve, within the cgroup limit."""
        if self.room is not None:
            return self.room.pages
        if self.cfg.page_cache_limit_pages is not None:
            return self.cfg.page_cache_limit_pages
        free = self.alloc.nr_free - self.cfg.min_free_pages
        if self.cfg.memory_limit_pages is not None:
            free = min(free, self.cfg.memory_limit_pages - self.anon.nr_pages)
        return max(0, free)

    def make_room(self, n: int) -> None:
        """Reclaim page cache until ``n`` more anonymous frames fit beside it.

        With a fixed capacity the page cache is a memory cgroup of its own, which other
        processes' allocations do not reclaim: nothing to do.
        """
        pc = self.pc
        if self.cfg.page_cache_limit_pages is not None:
            return
        while True:
            short = n + pc.nr_pages + self.cfg.min_free_pages - self.alloc.nr_free
            if short <= 0 or not pc.nr_pages or not vmscan.try_to_free_pages(pc, short):
                return


def _dispatch(m: Machine, tag_tasks: frozenset[int] | None
              ) -> dict[int, Callable[[int, int, int], None]]:
    pc, anon, room = m.pc, m.anon, m.room

    def page_alloc(pfn: int, order: int, info: int) -> None:
        if room is not None:
            follow_room(room, pc, Op.PAGE_ALLOC, pfn, order, info)
        if tag_tasks and info & GFP_USER_ANON and (info >> 8) in tag_tasks:
            anon.tag_pfns(pfn, order)

    def page_free(pfn: int, order: int, info: int) -> None:
        if room is not None:
            follow_room(room, pc, Op.PAGE_FREE, pfn, order, info)
        if tag_tasks:
            anon.untag_pfns(pfn, order)

    def sample(file: int, nonfile: int, metadata: int) -> None:
        if room is not None:
            follow_room(room, pc, Op.CGROUP_SAMPLE, file, nonfile, metadata)

    kmem = bool(tag_tasks) or (room is not None and room.use_nonfile)

    return {
        Op.READ: pc.read,
        Op.GET_PAGES: pc.get_pages,
        Op.WRITE: pc.write,
        Op.FAULT: lambda f, i, _: pc.fault(f, i),
        Op.MAP_PAGES: pc.map_pages,
        Op.TRUNCATE: lambda f, n, _: pc.truncate(f, n),
        Op.UNLINK: lambda f, _a, _b: pc.unlink(f),
        Op.FSYNC: lambda f, _a, _b: pc.fsync(f),
        Op.UNMOUNT: lambda d, _a, _b: pc.unmount(d),
        Op.MTE_MAP: anon.mte_map,                  # process, pages, PROT_MTE pages
        Op.MTE_FORK: lambda p, c, _: anon.fork(p, c),
        Op.MTE_COW: lambda p, n, _: anon.cow(p, n),
        Op.MTE_SWAP_OUT: lambda p, n, _: anon.swap_out(p, n),
        Op.MTE_SWAP_IN: lambda p, n, _: anon.swap_in(p, n),
        Op.MTE_MIGRATE: lambda p, n, _: anon.migrate(p, n),
        Op.MTE_EXIT: lambda p, _a, _b: anon.exit(p),
        # The kernel's own answer is not replayed; kmem events tag pages (--tagged trace) and
        # move the cgroup's room, as its samples do.
        Op.KERNEL_ADD: _ignore,
        Op.KERNEL_DELETE: _ignore,
        Op.CGROUP_SAMPLE: sample,
        Op.PAGE_ALLOC: page_alloc if kmem else _ignore,
        Op.PAGE_FREE: page_free if kmem else _ignore,
    }


def _ignore(_a: int, _b: int, _c: int) -> None:
    return None


def replay(cfg: MachineConfig, design: Design, trace: Trace, *, tagged_share: float = 0.0,
           check: bool = False, progress: Callable[[int], None] | None = None,
           tag_tasks: frozenset[int] | None = None,
           facts: CaptureFacts | None = None, memo: dict | None = None,
           engine: str = "compiled") -> RunResult:
    """Run ``trace`` on a fresh machine of ``design``; ``progress(n)`` is told of n more events.

    ``tag_tasks``: indexes into ``trace.tasks`` whose user anonymous pages (kmem
    mm_page_alloc with GFP_HIGHUSER_MOVABLE) are treated as PROT_MTE, at their real PFNs.
    ``facts``: the capture's page cache as its sidecar describes it (sidecar.py): pages
    resident before it and mappings; ``cfg`` and ``trace.files`` carry its readahead and
    folio sizes (experiment.run_trace() sets them).
    ``memo``: a dict the caller keeps across runs of the same trace columns (with other
    events inserted, or none); a page cache that nothing else in the machine can change
    (engine/machine.py page_cache_alone()) is then replayed once and its result reused.
    ``engine``: "compiled" (engine/, every kernel-model run and the plain LRU where it
    applies) or "object" (the object model of mm/, cleancache/, mte.py and invariants.py,
    kept as the tests' reference until the compiled engine replaces it everywhere).
    """
    if engine not in ("compiled", "object"):
        raise ValueError(f"unknown engine {engine!r}")
    t0 = time.perf_counter()
    if engine == "compiled":
        return _replay_flat(cfg, design, trace, tagged_share, progress, tag_tasks, facts, t0,
                            memo, check)
    trace = trace.merged()
    m = Machine(cfg, design, trace, check, facts)
    table = _dispatch(m, tag_tasks)
    ops, a0, a1, a2 = (trace.op.tolist(), trace.arg0.tolist(), trace.arg1.tolist(),
                       trace.arg2.tolist())
    checker = m.checker
    anon, tags, cc = m.anon, m.tags.stats, m.cleancache
    step = 4096
    every = invariants.CONSERVATION_INTERVAL
    tagged_sum = reserved_sum = cached_sum = 0
    for i, op in enumerate(ops):
        if checker is not None:
            checker.event = i
        try:
            table[op](a0[i], a1[i], a2[i])
        except OutOfMemory:
            m.oom_events += 1
        tagged_sum += anon.nr_tagged
        reserved_sum += tags.reserved_pages
        if cc.backend is not None:
            cached_sum += cc.backend.cached_pages
        if progress is not None and (i + 1) % step == 0:
            progress(step)
        if checker is not None and (i + 1) % every == 0:
            checker.check_conservation()
    if progress is not None:
        progress(len(ops) % step)
    if checker is not None:
        checker.event = len(ops)
        checker.walk(m.tags, m.alloc.tagged)
    wall = time.perf_counter() - t0
    n = max(1, len(ops))
    m.averages = {"tagged_pages": tagged_sum / n, "reserved_pages": reserved_sum / n,
                  "cached_pages": cached_sum / n}
    if tag_tasks:        # nothing was requested: the share is what the tasks tagged, at peak
        tagged_share = m.anon.peak_tagged / cfg.layout.data_pages
    return collect(m, design, tagged_share, len(ops), wall)


def _replay_flat(cfg: MachineConfig, design: Design, trace: Trace, tagged_share: float,
                 progress, tag_tasks, facts, t0: float, memo: dict | None,
                 check: bool = False) -> RunResult:
    """replay() on the compiled machine (engine/machine.py); with a ``memo``, a page cache
    that nothing but the trace changes runs once (machine.run())."""
    from tagcache.engine import machine as flat
    from tagcache.engine.anon import anon_report
    from tagcache.engine.cleancache import (
        cleancache_report,
        metadata_bytes_per_tag_page,
        simulator_bytes_per_tag_page,
    )
    from tagcache.engine.tags import reservation_calls, tag_storage_report
    from tagcache.engine.tagstore import SIBLINGS

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
        flat.PAGE_CACHES[fm.policy].stats(fm.pc), {k: ccr[k] for k in asdict(CleancacheStats())},
        ccr["evicted"], ccr["cached"], ccr["peak_cached"],
        metadata_bytes_per_tag_page(fm.cc), simulator_bytes_per_tag_page(fm.cc),
        tag_storage_report(fm.ts), np.asarray(latency, np.float64), np.asarray(claimed, bool),
        np.asarray(dropped, np.int32), anon["peak_tagged"], anon["copies"], fm.oom_events,
        {k: v / max(1, n) for k, v in fm.sums.items()}, *_checked(fm, check))
    if tag_tasks:
        tagged_share = anon["peak_tagged"] / cfg.layout.data_pages
    if memo is not None and not check and design.backend != "idle" and (
            design.policy in TWIN_POLICY):
        memo[_twin_key(cfg, design.backend, trace, tag_tasks, facts)] = {
            "trace": trace, "cfg": cfg, "facts": facts, "policy": design.policy,
            "siblings": int(fm.cc.c[SIBLINGS]), "tally": t, "share": tagged_share,
            "events": n, "wall": wall}
    return collect(t, design, tagged_share, n, wall, cfg)


TWIN_POLICY = {"whole": "split", "split": "whole"}
"""The large-folio policies of the tag-storage backend, each the other's twin: they differ
only where a claim drops a page whose folio has other pages stored (engine/tagstore.py,
``SIBLINGS``)."""


def _twin_key(cfg: MachineConfig, backend: str, trace: Trace, tag_tasks, facts) -> tuple:
    return ("twin", backend, id(cfg), id(trace), id(facts),
            None if tag_tasks is None else tuple(sorted(tag_tasks)))


def _twin_run(memo: dict | None, cfg: MachineConfig, design: Design, trace: Trace,
              share: float, tag_tasks, facts, check: bool) -> dict | None:
    """The memo's run of ``design``'s twin policy on the same machine, trace (the same
    columns and inserted events) and share, when no claim of that run dropped a page with
    another page of its folio stored (``c[SIBLINGS] == 0``): the twin took exactly the steps
    ``design`` would, so its tally is ``design``'s. None otherwise (and with the checker on,
    which must see every design run)."""
    if memo is None or check or design.backend == "idle" or design.policy not in TWIN_POLICY:
        return None
    hit = memo.get(_twin_key(cfg, design.backend, trace, tag_tasks, facts))
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


def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


@dataclass
class Tally:
    """What a finished run's report is made of, from either engine."""

    page_cache: dict            # PageCacheStats' fields
    cleancache: dict            # CleancacheStats' fields
    evicted: int
    cached: int
    peak_cached: int
    metadata_bytes_per_tag_page: float
    simulator_bytes_per_tag_page: float
    tag_storage: dict           # TagStorageStats' counters
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


def tally_object(m: Machine) -> Tally:
    """The object engine's machine as a :class:`Tally`."""
    ts, backend = m.tags.stats, m.cleancache.backend
    return Tally(
        asdict(m.pc.stats), asdict(m.cleancache.stats), m.cleancache.evicted,
        m.cleancache.cached, getattr(backend, "peak_cached", 0),
        backend.metadata_bytes_per_tag_page() if backend is not None else 0.0,
        backend.simulator_bytes_per_tag_page() if backend is not None else 0.0,
        {k: getattr(ts, k) for k in ("reservations", "reservation_failures", "blocks_claimed",
                                     "cmo_pages", "unbalanced_releases", "reserved_pages",
                                     "reserved_peak")},
        _cat(ts.latency, np.float64), _cat(ts.claimed, bool), _cat(ts.dropped, np.int32),
        m.anon.peak_tagged, m.anon.copies, m.oom_events, m.averages,
        m.checker.to_json() if m.checker else {},
        list(m.checker.reports) if m.checker else [],
        {k: list(v) for k, v in m.checker.events.items()} if m.checker else {})


def collect(m: Machine | Tally, design: Design, share: float, events: int, wall: float,
            cfg: MachineConfig | None = None) -> RunResult:
    """The run's result from its tally (or the object machine's)."""
    if isinstance(m, Machine):
        cfg, t = m.cfg, tally_object(m)
    else:
        t = m
    pcs, ccs, ts, c = t.page_cache, t.cleancache, t.tag_storage, cfg.costs
    layout = cfg.layout
    avg = t.averages
    accesses = pcs["accesses"]
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
        "dropped_per_claim": _buckets(dropped[claimed]),
        "cmo_pages": ts["cmo_pages"],
        "metadata_bytes_per_tag_page": t.metadata_bytes_per_tag_page,
        "simulator_bytes_per_tag_page": t.simulator_bytes_per_tag_page,
        "tag_copies": t.copies,
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
        policy={"large_folio": design.policy if design.backend != "idle" else None,
                "alloc": cfg.alloc_policy},
        tagged_share=share,
        page_cache=page_cache,
        cleancache=cleancache,
        tag_storage=tag_storage,
        io=io,
        invariants=t.invariants,
        perf={"events": events, "wall_s": wall, "events_per_s": events / wall if wall else 0},
        violations=t.violations,
        invariant_events=t.invariant_events,
    )
