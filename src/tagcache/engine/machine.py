"""The compiled machine: one builder of the flat state for a design, and the run over a trace.

:func:`build` makes every part from (layout, design, trace files, capture facts) once: the
cleancache frontend and backend (cleancache.py, tagstore.py), the kernel page cache
(pagecache.py), tag storage (tags.py), the page allocator and anonymous memory
(page_alloc.py, anon.py), and, for a capture, the cgroup's room (capacity.py). The facts are
applied here and nowhere else: large folios per file, readahead window, mappings, pages
resident before the capture, the room over time.

:func:`run` walks the trace's columns: the compiled loop (filemap.replay_page_cache) applies
the page cache's events and stops at the first event that is not one; that event (anonymous
memory, a kmem event, a cgroup sample) is applied here, through its compiled step function,
and the loop resumes. Events inserted into the trace (events.Inserted: a share's generated
anonymous memory) are applied at their positions without merging the columns. The per-event
averages of tagged, reserved and cached pages are the same sums the object engine takes
event by event: tagged and reserved pages do not change during a run of page-cache events,
and the page-cache loop sums the cached pages itself.

The parts of a capture's room are still Python (capacity.CgroupRoom): a few thousand samples
per capture, each one call of the compiled charge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tagcache.capacity import CgroupRoom, follow_room
from tagcache.engine import rc
from tagcache.engine.anon import (
    NR_PAGES as ANON_NR_PAGES,
)
from tagcache.engine.anon import (
    NR_TAGGED,
    anon_call,
    anon_step,
    anon_tag_pfns,
    anon_untag_pfns,
    make_anon,
)
from tagcache.engine.cleancache import cleancache_cached, make_cleancache
from tagcache.engine.filemap import check_page_cache_error, preload_foreign, replay_page_cache
from tagcache.engine.page_alloc import NR_FREE, make_page_alloc
from tagcache.engine.pagecache import (
    CACHED_SUM,
    LIMIT,
    NR_PAGES,
    make_page_cache,
)
from tagcache.engine.tags import RESERVED_PAGES, make_tag_storage
from tagcache.engine.vmscan import try_charge_memcg, try_to_free_pages
from tagcache.mm.filemap import MAX_RECLAIM_RETRIES
from tagcache.workloads.events import GFP_USER_ANON, Op, Trace

OP_PAGE_ALLOC, OP_PAGE_FREE, OP_SAMPLE = int(Op.PAGE_ALLOC), int(Op.PAGE_FREE), int(
    Op.CGROUP_SAMPLE)
MTE_OPS = frozenset(int(o) for o in (Op.MTE_MAP, Op.MTE_FORK, Op.MTE_COW, Op.MTE_SWAP_OUT,
                                     Op.MTE_SWAP_IN, Op.MTE_MIGRATE, Op.MTE_EXIT))


@dataclass
class FlatMachine:
    """The flat state of one machine and what the run loop needs beside it."""

    pc: object
    cc: object
    ts: object
    pa: object
    an: object
    room: CgroupRoom | None
    fixed_limit: int | None
    min_free_pages: int
    memory_limit_pages: int | None
    tag_tasks: frozenset[int] | None
    oom_events: int = 0
    sums: dict[str, float] = field(default_factory=dict)

    # -- the page cache's limit ----------------------------------------------------------------

    def limit(self) -> int:
        """Pages the page cache may hold now (replay.Machine.page_cache_limit())."""
        if self.room is not None:
            return self.room.pages
        if self.fixed_limit is not None:
            return self.fixed_limit
        free = int(self.pa.c[NR_FREE]) - self.min_free_pages
        if self.memory_limit_pages is not None:
            free = min(free, self.memory_limit_pages - int(self.an.c[ANON_NR_PAGES]))
        return max(0, free)

    def set_limit(self) -> None:
        self.pc.c[LIMIT] = self.limit()

    def make_room(self, n: int) -> None:
        """Reclaim page cache until ``n`` more anonymous frames fit beside it (nothing to do
        with a fixed capacity: anon_call() is then given no make_room)."""
        c = self.pc.c
        while True:
            short = n + int(c[NR_PAGES]) + self.min_free_pages - int(self.pa.c[NR_FREE])
            if short <= 0 or not c[NR_PAGES] or not try_to_free_pages(self.pc, short):
                return

    # -- the room's view of the page cache (capacity.follow_room) ----------------------------

    @property
    def nr_pages(self) -> int:
        return int(self.pc.c[NR_PAGES])

    def charge(self, nr: int) -> bool:
        self.set_limit()
        return bool(try_charge_memcg(self.pc, nr, MAX_RECLAIM_RETRIES))


def build(cfg, design, trace: Trace, facts=None, tag_tasks: frozenset[int] | None = None
          ) -> FlatMachine:
    """The flat machine for ``design`` on ``cfg`` replaying ``trace`` (its file table), with
    a capture's ``facts`` (sidecar.CaptureFacts) applied."""
    from tagcache.mm.filemap import PageCache

    layout = cfg.layout
    nr_slots = PageCache.slots_needed(trace.files)
    cc = make_cleancache(design.backend, layout, nr_slots, design.policy)
    pc = make_page_cache(trace.files, cc, ra_pages=cfg.ra_pages,
                         max_folio_order=cfg.max_folio_order,
                         exec_vmas=facts.exec_vmas if facts else None,
                         cow_vmas=facts.cow_vmas if facts else None)
    ts = make_tag_storage(layout, cc, cfg.costs)
    pa = make_page_alloc(layout, ts.refs, cfg.alloc_policy, cfg.alloc_chunk_pages, cfg.seed)
    an = make_anon(pa, ts, cfg.anon_folio_order)
    room = None
    if facts is not None and cfg.page_cache_limit_pages is not None:
        room = facts.room(trace, cfg.page_cache_limit_pages)
    fm = FlatMachine(pc, cc, ts, pa, an, room, cfg.page_cache_limit_pages, cfg.min_free_pages,
                     cfg.memory_limit_pages, tag_tasks)
    if facts is not None:
        for f, spans in facts.resident.items():
            if pc.span[f]:
                for first, nr in spans:
                    preload_foreign(pc, f, first, nr)
    fm.set_limit()
    return fm


def page_cache_alone(fm: FlatMachine, design) -> bool:
    """Nothing but the trace's own events can change this machine's page cache: no backend
    (tag claims drop nothing from it), a fixed capacity or a capture's room (anonymous
    memory does not reclaim it) and no captured tasks' pages tagged."""
    return design.backend == "idle" and fm.fixed_limit is not None and not fm.tag_tasks


def run(fm: FlatMachine, trace: Trace, progress: Callable[[int], None] | None = None,
        memo: dict | None = None, key: tuple = ()) -> None:
    """Apply every event of ``trace`` to ``fm``; ``fm.sums`` gets the per-event sums of
    tagged, reserved and cached pages.

    With a ``memo`` (kept by the caller across runs of the same trace columns, with other
    events inserted or none) and a page cache that nothing else changes
    (:func:`page_cache_alone`, ``key`` naming the machine's page cache), the page cache
    runs once: later runs take its state from the memo and apply only the inserted events.
    """
    if memo is not None:
        k = ("kernel", id(trace.op), *key)
        if k in memo:
            fm.pc = memo[k][1]
            _run_inserted(fm, trace, progress)
            return
        bare = trace if trace.inserted is None else _without_inserted(trace)
        _run(fm, bare, progress if trace.inserted is None else None)
        memo[k] = (trace.op, fm.pc)
        if trace.inserted is not None:
            _run_inserted(fm, trace, progress)
        return
    _run(fm, trace, progress)


def _without_inserted(trace: Trace) -> Trace:
    from dataclasses import replace
    return replace(trace, inserted=None)


def _run_inserted(fm: FlatMachine, trace: Trace, progress) -> None:
    """Only the inserted events (the page cache's part is done): the sums as if the whole
    stream ran, the page cache's cached pages being none (no backend)."""
    an, ts = fm.an, fm.ts
    n = len(trace)
    ins = trace.inserted
    sums = {"tagged_pages": 0, "reserved_pages": 0, "cached_pages": 0}
    t, r, prev = int(an.c[NR_TAGGED]), int(ts.c[RESERVED_PAGES]), 0
    if ins is not None:
        for i, (o, x, y, z) in zip(ins.positions().tolist(), ins.events.tolist(),
                                   strict=True):
            sums["tagged_pages"] += t * (i - prev)
            sums["reserved_pages"] += r * (i - prev)
            _apply(fm, o, x, y, z)
            t, r = int(an.c[NR_TAGGED]), int(ts.c[RESERVED_PAGES])
            sums["tagged_pages"] += t
            sums["reserved_pages"] += r
            prev = i + 1
    sums["tagged_pages"] += t * (n - prev)
    sums["reserved_pages"] += r * (n - prev)
    if progress is not None:
        progress(n)
    fm.sums = sums


def _run(fm: FlatMachine, trace: Trace, progress: Callable[[int], None] | None) -> None:
    op, a0, a1, a2 = (np.ascontiguousarray(trace.op, np.uint8),
                      np.ascontiguousarray(trace.arg0, np.int64),
                      np.ascontiguousarray(trace.arg1, np.int64),
                      np.ascontiguousarray(trace.arg2, np.int64))
    pc, an, ts = fm.pc, fm.an, fm.ts
    sums = {"tagged_pages": 0, "reserved_pages": 0}
    ins = trace.inserted
    at = ins.at.tolist() if ins is not None else []
    events = ins.events.tolist() if ins is not None else []
    n = len(op)
    step = 1 << 16

    def pages_now() -> tuple[int, int]:
        return int(an.c[NR_TAGGED]), int(ts.c[RESERVED_PAGES])

    def base_run(i: int, end: int) -> None:
        """Base events [i, end): page-cache runs compiled, the others here."""
        while i < end:
            stop = min(end, i + step) if progress is not None else end
            j = replay_page_cache(pc, op, a0, a1, a2, i, stop)
            check_page_cache_error(pc)
            t, r = pages_now()
            sums["tagged_pages"] += t * (j - i)
            sums["reserved_pages"] += r * (j - i)
            if progress is not None:
                progress(j - i)
            if j < stop:
                other(int(op[j]), int(a0[j]), int(a1[j]), int(a2[j]))
                if progress is not None:
                    progress(1)
                j += 1
            i = j

    def other(o: int, x: int, y: int, z: int) -> None:
        _apply(fm, o, x, y, z)
        t, r = pages_now()
        sums["tagged_pages"] += t
        sums["reserved_pages"] += r
        pc.c[CACHED_SUM] += int(cleancache_cached(fm.cc))

    pos = 0
    for k, a in enumerate(at):
        base_run(pos, a)
        pos = a
        other(*events[k])
        if progress is not None:
            progress(1)
    base_run(pos, n)
    sums["cached_pages"] = int(pc.c[CACHED_SUM])
    fm.sums = sums


def _apply(fm: FlatMachine, o: int, x: int, y: int, z: int) -> None:
    """One event that is not the page cache's."""
    an, room = fm.an, fm.room
    make_room = None if fm.fixed_limit is not None else fm.make_room
    if o in MTE_OPS:
        code = anon_call(an, anon_step, o, x, y, z, make_room=make_room)
        _check(fm, code, x)
        if fm.fixed_limit is None:
            fm.set_limit()
        return
    tasks = fm.tag_tasks
    if o == OP_SAMPLE:
        if room is not None:
            follow_room(room, fm, o, x, y, z)
            fm.set_limit()
        return
    if o == OP_PAGE_ALLOC or o == OP_PAGE_FREE:
        kmem = bool(tasks) or (room is not None and room.use_nonfile)
        if not kmem:
            return
        if room is not None:
            follow_room(room, fm, o, x, y, z)
            fm.set_limit()
        if not tasks:
            return
        if o == OP_PAGE_ALLOC:
            if z & GFP_USER_ANON and (z >> 8) in tasks:
                _check(fm, anon_call(an, anon_tag_pfns, x, y, make_room=make_room), x)
        else:
            _check(fm, int(anon_untag_pfns(an, x, y)), x)
        return
    raise ValueError(f"event op {o} has no handler")


def _check(fm: FlatMachine, code: int, pfn: int) -> None:
    if code == rc.OK:
        return
    if code == rc.OUT_OF_MEMORY:
        fm.oom_events += 1
        return
    if code == rc.ERR_UNTAGGABLE:
        raise ValueError(f"captured PFN {pfn:#x} is outside the modelled tagged memory")
    raise RuntimeError(f"anonymous memory: {rc.NAMES.get(code, code)}")
