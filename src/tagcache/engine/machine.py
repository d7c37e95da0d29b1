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
averages of tagged, reserved and cached pages are sums taken event by event: tagged and
reserved pages do not change during a run of page-cache events, and the page-cache loop sums
the cached pages itself.

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
from tagcache.engine.checker import EVENT as CK_EVENT
from tagcache.engine.checker import make_checker
from tagcache.engine.cleancache import (
    cleancache_attach_frames,
    cleancache_cached,
    cleancache_lend,
    cleancache_tick,
    held_copies,
    make_cleancache,
)
from tagcache.engine.filemap import (
    check_conservation,
    check_event,
    check_page_cache_error,
    preload_foreign,
    replay_page_cache,
)
from tagcache.engine.page_alloc import NR_FREE, make_page_alloc
from tagcache.engine.pagecache import (
    CACHED_SUM,
    LIMIT,
    NR_PAGES,
    STREAM_OFFSET,
    make_page_cache,
)
from tagcache.engine.pagemap import slots_needed
from tagcache.engine.rules import CONSERVATION_INTERVAL
from tagcache.engine.tags import RESERVED_PAGES, make_tag_storage
from tagcache.engine.tagstore import NR_MOVABLE
from tagcache.engine.vmscan import MAX_RECLAIM_RETRIES, try_charge_memcg, try_to_free_pages
from tagcache.workloads.events import GFP_USER_ANON, FileTable, Op, Trace

PAGE_CACHES: dict[str, PageCacheKind] = {}   # filled below, once the classes exist
SERIES_POINTS = 200
"""Samples of the recovered memory over a run (RunResult.series)."""

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
    policy: str = "kernel"
    lends: bool = False                 # the design lends free tag pages (backends/cma.py)
    timed: bool = False                 # its size follows a schedule (backends/tmem.py)
    lendable: Callable | None = None    # the backend's count of pages it may lend, from
                                        # its counters (backends/claim.py), else lent()'s
    reads_frames: bool = False          # the backend reads the allocator's free frames
    now: int = 0                        # events applied so far, of
    total: int = 1                      # the run's events
    oom_events: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    series: dict[str, list] = field(default_factory=dict)
    walk_details: dict[int, list[str]] = field(default_factory=dict)
    _held: tuple = field(default=(None, None), repr=False, compare=False)

    def counters(self) -> np.ndarray:
        """The page cache's counter array, held while ``pc`` is the same record: a field of
        the record read from Python unpacks all of it (engine/flat.py), about 15 us, and a
        capture's room reads and sets the counters at every sample and kmem event."""
        pc, c = self._held
        if pc is not self.pc:
            c = self.pc.c
            self._held = (self.pc, c)
        return c

    # -- the page cache's limit ----------------------------------------------------------------

    def limit(self) -> int:
        """Pages the page cache may hold now: :meth:`dram_limit`, and with a design that
        lends free tag pages to the page allocator, those pages too."""
        if not self.lends:
            return self.dram_limit()
        return self.dram_limit() + self.lent()

    def dram_limit(self) -> int:
        """Pages the page cache may hold in DRAM: a fixed capacity when one is given (a
        trace replay's cgroup), else free frames less the reserve, within the cgroup
        limit."""
        if self.room is not None:
            return self.room.pages
        if self.fixed_limit is not None:
            return self.fixed_limit
        free = int(self.pa.c[NR_FREE]) - self.min_free_pages
        if self.memory_limit_pages is not None:
            free = min(free, self.memory_limit_pages - int(self.an.c[ANON_NR_PAGES]))
        return max(0, free)

    def lent(self) -> int:
        """Tag pages lent to the page allocator now: those not holding tags, or as many as
        the backend says it may lend (claim: claimed and claimable cells)."""
        from tagcache.engine.tagstore import NR_FREE as TS_FREE
        from tagcache.engine.tagstore import NR_MOVABLE
        c = self.cc.c
        if self.lendable is not None:
            return self.lendable(c)
        return int(c[TS_FREE] + c[NR_MOVABLE])

    def lend(self) -> None:
        """The page cache's pages beyond DRAM's room live on lent tag pages: tell the
        backend how many (backends/cma.py), before anything claims tag pages; and tell a
        backend whose size follows a schedule where the run is (backends/tmem.py)."""
        if self.timed:
            cleancache_tick(self.cc, self.now, self.total)
        if self.lends:
            cleancache_lend(self.cc, max(0, min(self.lent(), self.nr_pages
                                                - self.dram_limit())),
                            self.free_share() if self.reads_frames else 0)

    def free_share(self) -> int:
        """Of the allocator's free frames, the share (per 2**20) the page cache leaves free:
        the model's page cache takes no frame of its own, so a backend reading the frames
        (claim) scales their free count by it."""
        from tagcache.engine.tagstore import NR_MOVABLE
        free = int(self.pa.c[NR_FREE])
        if free <= 0:
            return 0
        in_dram = self.nr_pages - int(self.cc.c[NR_MOVABLE])
        spare = max(0, self.dram_limit() - in_dram) + self.min_free_pages
        return min(1 << 20, (spare << 20) // free)

    def recovered(self) -> int:
        """Tag-storage pages doing useful work now: holding cached copies, or lent and
        holding data."""
        from tagcache.engine.tagstore import NR_MOVABLE
        return int(cleancache_cached(self.cc)) + int(self.cc.c[NR_MOVABLE])

    def set_limit(self) -> None:
        self.counters()[LIMIT] = self.limit()

    def make_room(self, n: int) -> None:
        """Reclaim page cache until ``n`` more anonymous frames fit beside it (nothing to do
        with a fixed capacity: anon_call() is then given no make_room); the page cache's
        pages on lent tag pages (:meth:`lend`) take no DRAM frame."""
        c = self.pc.c
        reclaim = PAGE_CACHES[self.policy].try_to_free_pages
        while True:
            lent = self.lent() if self.lends else 0
            short = (n + int(c[NR_PAGES]) + self.min_free_pages - int(self.pa.c[NR_FREE])
                     - lent)
            if short <= 0 or not c[NR_PAGES] or not reclaim(self.pc, short):
                return

    # -- the room's view of the page cache (capacity.follow_room) ----------------------------

    @property
    def nr_pages(self) -> int:
        return int(self.counters()[NR_PAGES])

    def charge(self, nr: int) -> bool:
        self.set_limit()
        return bool(PAGE_CACHES[self.policy].try_charge(self.pc, nr, MAX_RECLAIM_RETRIES))


@dataclass(frozen=True)
class PageCacheKind:
    """The entry points of one page-cache model: the kernel's (pagecache.py, filemap.py,
    vmscan.py) or the plain LRU (lru.py), behind the same contract."""

    make: Callable
    replay: Callable
    try_charge: Callable
    try_to_free_pages: Callable
    preload_foreign: Callable
    verify: Callable
    cached: Callable            # per slot: is the page cached now (bool array)
    stats: Callable


def _kernel_cached(pc) -> np.ndarray:
    return np.asarray(pc.head) >= 0


def _lru_cached(pc) -> np.ndarray:
    from tagcache.engine import lru
    return (np.asarray(pc.pg) & lru.PAGE_CACHED) != 0


def _page_caches() -> dict[str, PageCacheKind]:
    from tagcache.engine import lru
    from tagcache.engine.pagecache import page_cache_stats

    return {
        "kernel": PageCacheKind(make_page_cache, replay_page_cache, try_charge_memcg,
                                try_to_free_pages, preload_foreign, verify_page_cache,
                                _kernel_cached, page_cache_stats),
        "lru": PageCacheKind(lru.make_lru_page_cache, lru.replay_lru_page_cache,
                             lru.lru_try_charge, lru.lru_try_to_free_pages,
                             lru.lru_preload_foreign, lru.verify_lru_page_cache, _lru_cached,
                             lru.page_cache_stats),
    }


def build(cfg, design, trace: Trace, facts=None, tag_tasks: frozenset[int] | None = None,
          check: bool = False, files: FileTable | None = None) -> FlatMachine:
    """The flat machine for ``design`` on ``cfg`` replaying ``trace`` (its file table, or
    ``files`` where the model sees another: validate's), with a capture's ``facts``
    (sidecar.CaptureFacts) applied and, with ``check``, the invariant checker
    (engine/checker.py) observing every part."""
    layout = cfg.layout
    files = trace.files if files is None else files
    nr_slots = slots_needed(files)
    ck = make_checker(layout, nr_slots, check)
    params = {k: v for k, v in design.values().items() if k != "large_folio"}
    cc = make_cleancache(design.backend, layout, nr_slots, design.policy, ck, params,
                         cfg.costs, cfg.seed)
    kind = PAGE_CACHES[cfg.page_cache_policy]
    if cfg.page_cache_policy == "kernel":
        pc = make_page_cache(files, cc, ra_pages=cfg.ra_pages,
                             max_folio_order=cfg.max_folio_order,
                             exec_vmas=facts.exec_vmas if facts else None,
                             cow_vmas=facts.cow_vmas if facts else None)
    else:
        pc = kind.make(files, cc)
    ts = make_tag_storage(layout, cc, cfg.costs)
    spec = design.spec
    # A backend that steers tagged pages shows the allocator its active tag pages as the
    # reserved ones; one with cells (claim, placement "occupancy") reads the free frames.
    pa = make_page_alloc(layout, cc.block_active if spec.steers_tagged else ts.refs,
                         design.alloc_policy(cfg), cfg.alloc_chunk_pages, cfg.seed)
    reads_frames = len(cc.cells) > 0
    if reads_frames:
        cleancache_attach_frames(cc, pa.free)
    an = make_anon(pa, ts, cfg.anon_folio_order)
    room = None
    if facts is not None and cfg.page_cache_limit_pages is not None:
        room = facts.room(trace, cfg.page_cache_limit_pages)
    fm = FlatMachine(pc, cc, ts, pa, an, room, cfg.page_cache_limit_pages, cfg.min_free_pages,
                     cfg.memory_limit_pages, tag_tasks, cfg.page_cache_policy,
                     spec.lends_memory, spec.timed, lendable=spec.lendable,
                     reads_frames=reads_frames)
    if facts is not None:
        for f, spans in facts.resident.items():
            if pc.span[f]:
                for first, nr in spans:
                    kind.preload_foreign(pc, f, first, nr)
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
    sums = {"tagged_pages": 0, "reserved_pages": 0, "cached_pages": 0, "recovered_pages": 0}
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
    replay_page_cache = PAGE_CACHES[fm.policy].replay
    sums = {"tagged_pages": 0, "reserved_pages": 0, "movable_pages": 0}
    ins = trace.inserted
    at = ins.at.tolist() if ins is not None else []
    events = ins.events.tolist() if ins is not None else []
    n = len(op)
    # A design with nothing to recover keeps no series (replay.collect()): it runs unsampled.
    sampled = bool(fm.cc.stores) or fm.lends or fm.timed
    every = max(1, (n + len(at)) // SERIES_POINTS) if sampled else n + len(at) + 1
    step = min(1 << 16, every) if sampled or progress is not None else n + 1
    series: dict[str, list] = {"event": [], "recovered_pages": [], "reserved_pages": []}
    fm.series = series
    done = [0, -every]                  # events applied, and at the last sample
    fm.total = n + len(at)

    def pages_now() -> tuple[int, int]:
        return int(an.c[NR_TAGGED]), int(ts.c[RESERVED_PAGES])

    def sample() -> None:
        """The series' point now (every ``every`` events, SERIES_POINTS in all)."""
        if done[0] - done[1] >= every:
            done[1] = done[0]
            fm.now = done[0]
            fm.lend()
            series["event"].append(done[0])
            series["recovered_pages"].append(fm.recovered())
            series["reserved_pages"].append(int(ts.c[RESERVED_PAGES]))

    def base_run(i: int, end: int) -> None:
        """Base events [i, end): page-cache runs compiled, the others here."""
        while i < end:
            stop = min(end, i + step)
            j = replay_page_cache(pc, op, a0, a1, a2, i, stop)
            check_page_cache_error(pc)
            t, r = pages_now()
            sums["tagged_pages"] += t * (j - i)
            sums["reserved_pages"] += r * (j - i)
            if fm.lends:
                sums["movable_pages"] += int(fm.cc.c[NR_MOVABLE]) * (j - i)
            done[0] += j - i
            sample()
            if progress is not None:
                progress(j - i)
            if j < stop:
                other(j + int(pc.c[STREAM_OFFSET]), int(op[j]), int(a0[j]), int(a1[j]),
                      int(a2[j]))
                if progress is not None:
                    progress(1)
                j += 1
            i = j

    def other(index: int, o: int, x: int, y: int, z: int) -> None:
        if checking:
            check_event(fm.cc, index)
        fm.now = done[0]
        _apply(fm, o, x, y, z)
        t, r = pages_now()
        sums["tagged_pages"] += t
        sums["reserved_pages"] += r
        if fm.lends:
            sums["movable_pages"] += int(fm.cc.c[NR_MOVABLE])
        pc.c[CACHED_SUM] += int(cleancache_cached(fm.cc))
        done[0] += 1

    checking = bool(fm.cc.checking)
    pos = 0
    for k, a in enumerate(at):
        base_run(pos, a)
        pos = a
        other(a + k, *events[k])
        pc.c[STREAM_OFFSET] = k + 1       # the columns' events from here on come later
        if progress is not None:
            progress(1)
    base_run(pos, n)
    if sampled:
        done[1] = done[0] - every
        sample()                        # the last point: the run's end
    sums["cached_pages"] = int(pc.c[CACHED_SUM])
    sums["recovered_pages"] = sums["cached_pages"] + sums.pop("movable_pages")
    fm.sums = sums
    if checking:
        total = n + len(at)
        if total and total % CONSERVATION_INTERVAL == 0:
            check_event(fm.cc, total)      # the check after the last event
        fm.cc.ck.c[CK_EVENT] = total
        walk(fm)


def walk(fm: FlatMachine) -> None:
    """The checker's end-of-run walk over the flat state: every list and counter end to end, a
    structural fault counted under the rule it endangers (its sentence kept for reports)."""
    from tagcache.engine import checker
    from tagcache.engine.checker import RESTORE_FRESH, TAGS_RESERVED, TAGS_XOR_CACHE
    from tagcache.engine.tagstore import TP_CACHE

    ck, pc, cc, ts, pa = fm.cc.ck, fm.pc, fm.cc, fm.ts, fm.pa
    details = fm.walk_details

    def fail(rule: int, text: str, n: int = 1) -> None:
        checker.fail_walk(ck, details, rule, text, n)

    for e in PAGE_CACHES[fm.policy].verify(pc):
        fail(RESTORE_FRESH, f"page cache: {e}")
    check_conservation(cc)
    refs = np.asarray(ts.refs)
    pfn_to_block = np.asarray(ck.pfn_to_block) if len(ck.pfn_to_block) else None
    if pfn_to_block is not None:
        tagged = np.flatnonzero(np.asarray(pa.tagged))
        expect = np.bincount(pfn_to_block[tagged], minlength=len(refs))
        if not np.array_equal(expect, refs):
            n = int(np.count_nonzero(expect != refs))
            fail(TAGS_RESERVED, f"{n} tag block reference counts disagree with the memmap",
                 n)
    if not cc.kind:
        return
    for e in verify_backend(cc):
        fail(TAGS_XOR_CACHE, f"backend: {e}")
    if cc.claims:
        use = np.asarray(cc.tp_state)
        unit_block = _unit_blocks(cc)
        reserved = (unit_block >= 0) & (refs[np.maximum(unit_block, 0)] > 0)
        n = int(np.count_nonzero(reserved & (use == TP_CACHE)))
        if n:
            fail(TAGS_XOR_CACHE, f"{n} cached pages on reserved tag blocks", n)
    stored, _on = held_copies(cc)
    if cc.exclusive:
        both = stored[PAGE_CACHES[fm.policy].cached(pc)[stored]]
        if len(both):
            fail(RESTORE_FRESH, f"{len(both)} pages both in the page cache and stored",
                 len(both))
    held, copy, version = np.asarray(ck.held), np.asarray(ck.copy), np.asarray(ck.version)
    stale = stored[(held[stored] == 0) | (copy[stored] != version[stored])]
    if len(stale):
        fail(RESTORE_FRESH, f"{len(stale)} stored copies are older than the page", len(stale))


def _unit_blocks(cc) -> np.ndarray:
    """The tag block of each of the backend's units (a tag page, or a share of one), -1 for
    a unit no block names, from the backend's own block ranges."""
    first, count = np.asarray(cc.block_first_tag_page), np.asarray(cc.block_tag_pages)
    out = np.full(len(cc.tp_state), -1, np.int64)
    total = int(count.sum())
    if total:
        starts = np.repeat(first.astype(np.int64), count)
        offsets = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
        out[starts + offsets] = np.repeat(np.arange(len(count)), count)
    return out


def verify_page_cache(pc) -> list[str]:
    """The kernel page cache's walk: both lists walked, every folio on the list
    its PG_active says and its slots pointing at its head, the page counts agreeing with
    lists and slots (vectorised over the folios of each list)."""
    from tagcache.engine.mmzone import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE
    from tagcache.engine.page_flags import PG_ACTIVE, PG_FOREIGN
    from tagcache.engine.pagecache import NR_LRU, lru_heads

    head, order, flags = np.asarray(pc.head), np.asarray(pc.order), np.asarray(pc.flags)
    nxt = np.asarray(pc.lru_next)
    errs: list[str] = []
    seen = 0
    for lru in (LRU_INACTIVE_FILE, LRU_ACTIVE_FILE):
        heads = lru_heads(nxt, int(pc.nr_slots) + lru)
        nr = np.left_shift(1, order[heads].astype(np.int64))
        wrong = ((flags[heads] & PG_ACTIVE) != 0) != (lru == LRU_ACTIVE_FILE)
        errs += [f"folio {h} on the wrong list" for h in heads[wrong].tolist()]
        slots = np.repeat(heads, nr) + (np.arange(int(nr.sum())) - np.repeat(
            np.cumsum(nr) - nr, nr))
        bad = np.unique(np.repeat(heads, nr)[head[slots] != np.repeat(heads, nr)])
        errs += [f"folio {h}: slots do not point at their head" for h in bad.tolist()]
        pages = int(nr.sum())
        if pages != pc.c[NR_LRU + lru]:
            errs.append(f"lru {lru}: counted {pages} pages, recorded {int(pc.c[NR_LRU + lru])}")
        seen += pages
    foreign = int(np.count_nonzero((flags & PG_FOREIGN) != 0))
    nr_pages = int(pc.c[NR_PAGES])
    if seen != nr_pages or int((head >= 0).sum()) - foreign != nr_pages:
        errs.append(f"page count {nr_pages} disagrees with lists ({seen}) and slots")
    return errs


def verify_backend(cc) -> list[str]:
    """The tag-storage backend's walk: its counts against its states, its index against its
    pages, its store-order list against its count."""
    from tagcache.engine.tagstore import NR_CACHED, NR_FREE, TP_CACHE, TP_FREE, TP_MOVABLE

    state, tp_slot, slot_tp = np.asarray(cc.tp_state), np.asarray(cc.tp_slot), np.asarray(
        cc.slot_tp)
    nr_cached, nr_free = int(cc.c[NR_CACHED]), int(cc.c[NR_FREE])
    errs = []
    cached = np.flatnonzero(state == TP_CACHE)
    if len(cached) != nr_cached:
        errs.append(f"nr_cached {nr_cached} but {len(cached)} pages in CACHE")
    if int(np.count_nonzero(state == TP_FREE)) != nr_free:
        errs.append("nr_free disagrees with tp_state")
    if int(np.count_nonzero(state == TP_MOVABLE)) != int(cc.c[NR_MOVABLE]):
        errs.append("nr_movable disagrees with tp_state")
    bad = cached[slot_tp[tp_slot[cached]] != cached]
    if len(bad):
        errs.append(f"tag pages {bad[:5].tolist()} and the slot index disagree")
    if int(np.count_nonzero(slot_tp >= 0)) != nr_cached:
        errs.append("slot index holds a different number of pages than CACHE")
    if np.any(tp_slot[state != TP_CACHE] >= 0):
        errs.append("a page not in CACHE still names a slot")
    t = len(state)
    nxt = np.asarray(cc.tp_next)
    n = 0
    for sentinel in (t, t + 1):                 # the main and the small queue
        s = int(nxt[sentinel])
        while s != sentinel and n <= t:
            n += 1
            s = int(nxt[s])
    if n != nr_cached:
        errs.append(f"the queues hold {n} pages, {nr_cached} cached")
    return errs


def _apply(fm: FlatMachine, o: int, x: int, y: int, z: int) -> None:
    """One event that is not the page cache's."""
    an, room = fm.an, fm.room
    make_room = None if fm.fixed_limit is not None else fm.make_room
    if o in MTE_OPS:
        fm.lend()
        code = anon_call(an, anon_step, o, x, y, z, make_room=make_room)
        _check(fm, code, x)
        if fm.fixed_limit is None or fm.lends:
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
        fm.lend()
        if o == OP_PAGE_ALLOC:
            if z & GFP_USER_ANON and (z >> 8) in tasks:
                _check(fm, anon_call(an, anon_tag_pfns, x, y, make_room=make_room), x)
        else:
            _check(fm, int(anon_untag_pfns(an, x, y)), x)
        if fm.lends:
            fm.set_limit()
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


PAGE_CACHES.update(_page_caches())
