"""Anonymous memory of processes, tagged (PROT_MTE) or not, compiled: map, fork, CoW, swap,
migrate, exit, and the captured kmem allocations and frees.

Only PROT_MTE pages go through the MTE hooks (engine/tags.py): set_ptes_at() when mapped,
copy_highpage() when copied on CoW or migration, arch_swap_restore() on swap-in, and
free_tag_storage() when the frame is freed. Every allocation is of folios of ``folio_order``
(engine/page_alloc.py), the tail as order-0 pages. CoW and swap-out take pages from the end of
a process's list, migration from its start; swap-in brings PROT_MTE pages back first.

Per process (indexed by pid; the tables grow to the largest pid seen), the PFNs it maps, in
its order, are a run of one pool array::

    pool   [ run of pid 3 | (hole) | run of pid 0 ........ | run of pid 7 | free ... ]
    start[pid], length[pid], cap[pid]: the run; live[pid]: the process has a list

A run that outgrows its capacity moves to the end of the pool with twice the room; when the
pool is full it is rebuilt with only the live runs (twice the room they need), so appends are
amortised O(1) and exits leave holes only until the next rebuild. ``mapcount`` (uint16 per
PFN) counts the processes sharing a frame; ``swapped``/``swapped_tagged`` per pid count pages
out on swap. Counters ``c``: NR_PAGES, PEAK_PAGES, NR_TAGGED, PEAK_TAGGED, COPIES, POOL_TOP,
ROOM_WANTED.

make_room (reclaiming page cache so the frames fit beside it, machine.FlatMachine.make_room)
is the caller's: every operation that takes frames computes how many first, before it changes
anything, and, called with ``room_done``
False, stops there returning NEED_ROOM with ``c[ROOM_WANTED] = n``. The caller reclaims
(vmscan's try_to_free_pages loop; nothing with a fixed page-cache capacity) and calls again
with ``room_done`` True, which recomputes the same n and goes on. A caller that knows no
reclaim is needed passes True at once. :func:`anon_call` does this from Python with a
make_room callable. OUT_OF_MEMORY: nothing was taken (after make_room, before any change;
replay counts it in oom_events).

Observation sites (the checker's tags_written(pfns), tags_freed(pfns)) are marked
``# observer:``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, types
from numba.experimental import structref

from tagcache.engine import checker
from tagcache.engine.cleancache import tag_page_states
from tagcache.engine.flat import state_class
from tagcache.engine.page_alloc import PAGE_ALLOC_STATE, free_pfns, page_alloc, take_frame
from tagcache.engine.rc import ERR_BAD_ARG, ERR_UNTAGGABLE, NEED_ROOM, OK
from tagcache.engine.tags import (
    TAG_STORAGE_STATE,
    arch_swap_restore,
    copy_highpage,
    free_tag_storage,
    set_ptes_at,
)
from tagcache.workloads.events import Op

NR_PAGES, PEAK_PAGES, NR_TAGGED, PEAK_TAGGED, COPIES, POOL_TOP, ROOM_WANTED = range(7)
NR_COUNTERS = 7
STAT_NAMES = ("nr_pages", "peak_pages", "nr_tagged", "peak_tagged", "copies")
"""The counters anon_report() reads, in the order of the constants above."""

OP_MAP, OP_FORK, OP_COW = int(Op.MTE_MAP), int(Op.MTE_FORK), int(Op.MTE_COW)
OP_SWAP_OUT, OP_SWAP_IN = int(Op.MTE_SWAP_OUT), int(Op.MTE_SWAP_IN)
OP_MIGRATE, OP_EXIT = int(Op.MTE_MIGRATE), int(Op.MTE_EXIT)

_i64 = types.int64[::1]
FIELDS = (
    ("pa", PAGE_ALLOC_STATE),           # the page allocator (engine/page_alloc.py)
    ("ts", TAG_STORAGE_STATE),          # the tag storage (engine/tags.py)
    ("folio_order", types.int64),
    ("mapcount", types.uint16[::1]),    # per PFN of the span
    ("pool", _i64),                     # the runs of PFNs, per process
    ("start", _i64),                    # per pid: its run
    ("length", _i64),
    ("cap", _i64),
    ("live", types.boolean[::1]),       # per pid: has a PFN list
    ("swapped", _i64),                  # per pid: pages out on swap
    ("swapped_tagged", _i64),           # per pid: of which PROT_MTE
    ("c", _i64),                        # counters above
)


@structref.register
class AnonStateType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


ANON_STATE = AnonStateType(list(FIELDS))


@njit(cache=True)
def _new(pa, ts, folio_order, mapcount, pool, start, length, cap, live, swapped,
         swapped_tagged, c):
    an = structref.new(ANON_STATE)
    an.pa = pa
    an.ts = ts
    an.folio_order = folio_order
    an.mapcount = mapcount
    an.pool = pool
    an.start = start
    an.length = length
    an.cap = cap
    an.live = live
    an.swapped = swapped
    an.swapped_tagged = swapped_tagged
    an.c = c
    return an


@njit(cache=True)
def _unpack(an):
    return (an.pa, an.ts, an.folio_order, an.mapcount, an.pool, an.start, an.length, an.cap,
            an.live, an.swapped, an.swapped_tagged, an.c)


AnonState = state_class(
    AnonStateType, [f for f, _ in FIELDS], _new, _unpack, "AnonState", __name__,
    "Per-process PFN runs in one pool, mapcount, swap counts and the anonymous counters.")


def make_anon(pa, ts, folio_order: int = 0, nr_pids: int = 64,
              pool_pages: int = 4096) -> AnonState:
    """The anonymous memory of no process yet, over the allocator ``pa`` and tag storage
    ``ts`` states; room for pids below ``nr_pids`` and ``pool_pages`` mapped pages before the
    tables grow."""
    nr_pids, pool_pages = max(1, int(nr_pids)), max(16, int(pool_pages))
    z = np.zeros(nr_pids, np.int64)
    return AnonState(pa, ts, int(folio_order), np.zeros(len(pa.free), np.uint16),
                     np.zeros(pool_pages, np.int64), z.copy(), z.copy(), z.copy(),
                     np.zeros(nr_pids, np.bool_), z.copy(), z.copy(),
                     np.zeros(NR_COUNTERS, np.int64))


# -- the runs ----------------------------------------------------------------------------------

@njit(cache=True)
def _ensure_pid(an, pid):
    """Per-pid tables long enough for ``pid`` (they double)."""
    n = len(an.live)
    if pid < n:
        return
    new = max(2 * n, pid + 1)
    start = np.zeros(new, np.int64)
    start[:n] = an.start
    an.start = start
    length = np.zeros(new, np.int64)
    length[:n] = an.length
    an.length = length
    cap = np.zeros(new, np.int64)
    cap[:n] = an.cap
    an.cap = cap
    live = np.zeros(new, np.bool_)
    live[:n] = an.live
    an.live = live
    swapped = np.zeros(new, np.int64)
    swapped[:n] = an.swapped
    an.swapped = swapped
    swapped_tagged = np.zeros(new, np.int64)
    swapped_tagged[:n] = an.swapped_tagged
    an.swapped_tagged = swapped_tagged


@njit(cache=True)
def _compact(an, extra):
    """Rebuild the pool with the live runs only, packed, and room for ``extra`` more."""
    total = 0
    for p in range(len(an.live)):
        if an.live[p]:
            total += an.cap[p]
    pool = np.zeros(max(2 * (total + extra), 64), np.int64)
    top = 0
    for p in range(len(an.live)):
        if an.live[p]:
            s, n = an.start[p], an.length[p]
            pool[top:top + n] = an.pool[s:s + n]
            an.start[p] = top
            top += an.cap[p]
    an.pool = pool
    an.c[POOL_TOP] = top


@njit(cache=True)
def _reserve_run(an, pid, need):
    """Capacity for ``need`` PFNs in ``pid``'s run (moving it to the end of the pool)."""
    if need <= an.cap[pid]:
        return
    newcap = max(2 * an.cap[pid], need, 16)
    if an.c[POOL_TOP] + newcap > len(an.pool):
        _compact(an, newcap)
    top = an.c[POOL_TOP]
    s, n = an.start[pid], an.length[pid]
    an.pool[top:top + n] = an.pool[s:s + n]
    an.start[pid] = top
    an.cap[pid] = newcap
    an.c[POOL_TOP] = top + newcap


@njit(cache=True)
def _append(an, pid, pfns):
    """procs[pid] = concatenate([procs.get(pid, []), pfns])."""
    _ensure_pid(an, pid)
    an.live[pid] = True
    n = an.length[pid]
    _reserve_run(an, pid, n + len(pfns))
    s = an.start[pid] + n
    an.pool[s:s + len(pfns)] = pfns
    an.length[pid] = n + len(pfns)


@njit(cache=True)
def _run(an, pid):
    """``pid``'s PFNs (a view of the pool: valid until the pool changes)."""
    s = an.start[pid]
    return an.pool[s:s + an.length[pid]]


@njit(cache=True)
def _has(an, pid):
    return 0 <= pid < len(an.live) and an.live[pid]


@njit(cache=True)
def _slice_len(count, n):
    """len(x[:n]) for a sequence of ``count`` items."""
    if n >= 0:
        return min(n, count)
    return max(0, count + n)


# -- frames ------------------------------------------------------------------------------------

@njit(cache=True)
def _alloc(an, n, tagged):
    """``n`` frames as folios of ``folio_order``, the tail as order-0 pages."""
    size = 1 << an.folio_order
    whole = n - n % size
    rc, pfns = page_alloc(an.pa, whole, tagged, an.folio_order)
    if rc != OK:
        return rc, pfns
    if whole < n:
        rc, tail = page_alloc(an.pa, n - whole, tagged, 0)
        if rc != OK:
            free_pfns(an.pa, pfns)
            return rc, tail
        out = np.empty(n, np.int64)
        out[:whole] = pfns
        out[whole:] = tail
        return OK, out
    return OK, pfns


@njit(cache=True)
def _get(an, n_tagged, n_untagged, room_done):
    """Frames for ``n_tagged`` PROT_MTE pages and ``n_untagged`` others, all or nothing;
    NEED_ROOM first unless ``room_done`` (make_room(n) was called)."""
    empty = np.zeros(0, np.int64)
    if not room_done:
        an.c[ROOM_WANTED] = n_tagged + n_untagged
        return NEED_ROOM, empty, empty
    rc, tagged = _alloc(an, n_tagged, True)
    if rc != OK:
        return rc, empty, empty
    rc, untagged = _alloc(an, n_untagged, False)
    if rc != OK:
        free_pfns(an.pa, tagged)
        return rc, empty, empty
    base = an.pa.pfn_base
    for p in tagged:
        an.mapcount[p - base] = 1
    for p in untagged:
        an.mapcount[p - base] = 1
    c = an.c
    c[NR_PAGES] += n_tagged + n_untagged
    c[PEAK_PAGES] = max(c[PEAK_PAGES], c[NR_PAGES])
    c[NR_TAGGED] += n_tagged
    c[PEAK_TAGGED] = max(c[PEAK_TAGGED], c[NR_TAGGED])
    return OK, tagged, untagged


@njit(cache=True)
def _release(an, pfns):
    """Free frames nobody maps any more; PROT_MTE ones release their tag storage."""
    base = an.pa.pfn_base
    tagged = np.empty(len(pfns), np.int64)
    nt = 0
    for p in pfns:
        if an.pa.tagged[p - base]:
            tagged[nt] = p
            nt += 1
    if nt:
        rc = free_tag_storage(an.ts, tagged[:nt])
        if rc != OK:
            return rc
        if an.ts.cc.checking:
            checker.tags_freed(an.ts.cc.ck, base, tagged[:nt])
    rc = free_pfns(an.pa, pfns)
    if rc != OK:
        return rc
    an.c[NR_PAGES] -= len(pfns)
    an.c[NR_TAGGED] -= nt
    return OK


@njit(cache=True)
def _put(an, pfns):
    """Unmap ``pfns`` from one process; free the frames nobody maps any more."""
    base = an.pa.pfn_base
    for p in pfns:
        an.mapcount[p - base] = (int(an.mapcount[p - base]) - 1) & 0xFFFF   # uint16, wraps
    gone = np.empty(len(pfns), np.int64)
    k = 0
    for p in pfns:
        if an.mapcount[p - base] == 0:
            gone[k] = p
            k += 1
    if k == 0:
        return OK
    g = gone[:k]
    g.sort()
    m = 1
    for j in range(1, k):
        if g[j] != g[m - 1]:
            g[m] = g[j]
            m += 1
    return _release(an, g[:m])


@njit(cache=True)
def _set_ptes(an, pfns):
    """set_ptes_at() for freshly allocated PROT_MTE frames (_alloc's order: whole folios,
    then order-0 pages), one call per folio size."""
    n = len(pfns)
    if n == 0:
        return OK
    size = 1 << an.folio_order
    whole = n - n % size
    if whole:
        rc = set_ptes_at(an.ts, pfns[:whole], an.folio_order)
        if rc != OK:
            return rc
    if whole < n:
        rc = set_ptes_at(an.ts, pfns[whole:], 0)
        if rc != OK:
            return rc
    if an.ts.cc.checking:
        checker.tags_written(an.ts.cc.ck, tag_page_states(an.ts.cc), an.pa.pfn_base, pfns)
    return OK


@njit(cache=True)
def _copy_to_new(an, pid, idx, room_done):
    """Move ``pid``'s pages at ``idx`` to fresh frames, in place, each as tagged as the page
    it replaces (copy_highpage() for the PROT_MTE ones), and drop the process's reference to
    the old frames."""
    base = an.pa.pfn_base
    run = _run(an, pid)
    k = len(idx)
    old = np.empty(k, np.int64)
    t_idx = np.empty(k, np.int64)
    u_idx = np.empty(k, np.int64)
    nt = nu = 0
    for j in range(k):
        p = run[idx[j]]
        old[j] = p
        if an.pa.tagged[p - base]:
            t_idx[nt] = idx[j]
            nt += 1
        else:
            u_idx[nu] = idx[j]
            nu += 1
    rc, new_t, new_u = _get(an, nt, nu, room_done)
    if rc != OK:
        return rc
    run = _run(an, pid)
    if nt:
        src = np.empty(nt, np.int64)
        for j in range(nt):
            src[j] = run[t_idx[j]]
        rc = copy_highpage(an.ts, new_t, src)
        if rc != OK:
            return rc
        an.c[COPIES] += nt
        if an.ts.cc.checking:
            checker.tags_written(an.ts.cc.ck, tag_page_states(an.ts.cc), base, new_t)
    for j in range(nt):
        run[t_idx[j]] = new_t[j]
    for j in range(nu):
        run[u_idx[j]] = new_u[j]
    return _put(an, old)


@njit(cache=True)
def _pick(an, pid, n, shared, from_end):
    """Indexes into ``pid``'s run of its pages with mapcount > 1 (``shared``) or == 1, the
    first ``n`` of them (Python's ``[:n]``) counted from the end or the start."""
    base = an.pa.pfn_base
    run = _run(an, pid)
    count = 0
    for p in run:
        mc = an.mapcount[p - base]
        if (mc > 1) if shared else (mc == 1):
            count += 1
    take = _slice_len(count, n)
    idx = np.empty(take, np.int64)
    j = 0
    m = len(run)
    for t in range(m):
        if j == take:
            break
        i = m - 1 - t if from_end else t
        mc = an.mapcount[run[i] - base]
        if (mc > 1) if shared else (mc == 1):
            idx[j] = i
            j += 1
    return idx


# -- operations --------------------------------------------------------------------------------

@njit(cache=True)
def anon_mte_map(an, pid, n, nr_tagged, room_done):
    """mmap() and first touch of ``n`` pages, the first ``nr_tagged`` with PROT_MTE: frames
    allocated, set_ptes_at() reserves for the PROT_MTE ones."""
    if n < 0 or pid < 0:
        return ERR_BAD_ARG
    k = max(0, min(n, nr_tagged))
    rc, tagged, untagged = _get(an, k, n - k, room_done)
    if rc != OK:
        return rc
    rc = _set_ptes(an, tagged)
    if rc != OK:
        return rc
    _append(an, pid, tagged)
    _append(an, pid, untagged)
    return OK


@njit(cache=True)
def anon_fork(an, parent, child):
    """dup_mmap(): the child shares every frame copy-on-write; no tag work yet."""
    if parent < 0 or child < 0:
        return ERR_BAD_ARG
    if not _has(an, parent) or an.length[parent] == 0:
        return OK
    pfns = _run(an, parent).copy()
    base = an.pa.pfn_base
    for p in pfns:
        an.mapcount[p - base] = (int(an.mapcount[p - base]) + 1) & 0xFFFF
    _append(an, child, pfns)
    return OK


@njit(cache=True)
def anon_cow(an, pid, n, room_done):
    """Write faults on shared pages (the last ``n``): new frame, copy_highpage()."""
    if not _has(an, pid):
        return OK
    idx = _pick(an, pid, n, True, True)
    if len(idx) == 0:
        return OK
    return _copy_to_new(an, pid, idx, room_done)


@njit(cache=True)
def anon_migrate(an, pid, n, room_done):
    """Compaction moves private pages (the first ``n``): new frame, copy_highpage() for
    PROT_MTE ones, old frame freed."""
    if not _has(an, pid):
        return OK
    idx = _pick(an, pid, n, False, False)
    if len(idx) == 0:
        return OK
    return _copy_to_new(an, pid, idx, room_done)


@njit(cache=True)
def anon_swap_out(an, pid, n):
    """Reclaim swaps out private pages (the last ``n``): mte_save_tags() for PROT_MTE ones,
    then the frame is freed."""
    if not _has(an, pid):
        return OK
    idx = _pick(an, pid, n, False, True)
    k = len(idx)
    if k == 0:
        return OK
    base = an.pa.pfn_base
    run = _run(an, pid)
    out = np.empty(k, np.int64)
    nt = 0
    for j in range(k):
        out[j] = run[idx[j]]
        if an.pa.tagged[out[j] - base]:
            nt += 1
    rc = _put(an, out)
    if rc != OK:
        return rc
    keep = np.ones(len(run), np.bool_)
    for j in range(k):
        keep[idx[j]] = False
    m = 0
    for i in range(len(run)):
        if keep[i]:
            run[m] = run[i]
            m += 1
    an.length[pid] = m
    an.swapped[pid] += k
    an.swapped_tagged[pid] += nt
    return OK


@njit(cache=True)
def anon_swap_in(an, pid, n, room_done):
    """Faults on swapped pages: new frames; arch_swap_restore() reserves and restores the
    tags of the PROT_MTE ones (those come back first)."""
    if pid < 0:
        return ERR_BAD_ARG
    if pid >= len(an.live):
        return OK
    n = min(n, an.swapped[pid])
    if n <= 0:
        return OK
    k = min(n, an.swapped_tagged[pid])
    rc, tagged, untagged = _get(an, k, n - k, room_done)
    if rc != OK:
        return rc
    if len(tagged):
        rc = arch_swap_restore(an.ts, tagged)
        if rc != OK:
            return rc
        if an.ts.cc.checking:
            checker.tags_written(an.ts.cc.ck, tag_page_states(an.ts.cc), an.pa.pfn_base, tagged)
    an.swapped[pid] -= n
    an.swapped_tagged[pid] -= k
    _append(an, pid, tagged)
    _append(an, pid, untagged)
    return OK


@njit(cache=True)
def anon_exit(an, pid):
    """exit_mmap(): every mapping goes; swap slots are freed (mte_invalidate_tags)."""
    if pid < 0:
        return ERR_BAD_ARG
    if pid >= len(an.live):
        return OK
    an.swapped[pid] = 0
    an.swapped_tagged[pid] = 0
    if not an.live[pid]:
        return OK
    pfns = _run(an, pid).copy()
    an.live[pid] = False
    an.length[pid] = 0
    an.cap[pid] = 0
    if len(pfns):
        return _put(an, pfns)
    return OK


@njit(cache=True)
def anon_step(an, op, a0, a1, a2, room_done):
    """One MTE_* event of a trace (workloads/events.py's columns); OK for any other op."""
    if op == OP_MAP:
        return anon_mte_map(an, a0, a1, a2, room_done)
    if op == OP_FORK:
        return anon_fork(an, a0, a1)
    if op == OP_COW:
        return anon_cow(an, a0, a1, room_done)
    if op == OP_SWAP_OUT:
        return anon_swap_out(an, a0, a1)
    if op == OP_SWAP_IN:
        return anon_swap_in(an, a0, a1, room_done)
    if op == OP_MIGRATE:
        return anon_migrate(an, a0, a1, room_done)
    if op == OP_EXIT:
        return anon_exit(an, a0)
    return OK


# -- captured kmem events ----------------------------------------------------------------------

@njit(cache=True)
def anon_tag_pfns(an, pfn, order, room_done):
    """A captured user page allocation at a real PFN, treated as PROT_MTE: the frames are
    taken as they are and set_ptes_at() reserves their tag block. ERR_UNTAGGABLE (nothing
    done) outside the modelled tagged memory."""
    pa = an.pa
    base = pa.pfn_base
    npg = 1 << order
    i0 = pfn - base
    if i0 < 0 or i0 + npg - 1 >= len(pa.free):
        return ERR_UNTAGGABLE
    nfresh = 0
    for i in range(i0, i0 + npg):
        if not pa.taggable[i]:
            return ERR_UNTAGGABLE
        if an.mapcount[i] == 0:
            nfresh += 1
    if nfresh == 0:
        return OK
    if not room_done:
        an.c[ROOM_WANTED] = nfresh
        return NEED_ROOM
    fresh = np.empty(nfresh, np.int64)
    j = 0
    for i in range(i0, i0 + npg):
        if an.mapcount[i] == 0:
            fresh[j] = i + base
            j += 1
            if pa.free[i]:
                take_frame(pa, i)
            pa.tagged[i] = True
            an.mapcount[i] = 1
    c = an.c
    c[NR_PAGES] += nfresh
    c[PEAK_PAGES] = max(c[PEAK_PAGES], c[NR_PAGES])
    c[NR_TAGGED] += nfresh
    c[PEAK_TAGGED] = max(c[PEAK_TAGGED], c[NR_TAGGED])
    rc = set_ptes_at(an.ts, fresh, 0)
    if rc == OK and an.ts.cc.checking:
        checker.tags_written(an.ts.cc.ck, tag_page_states(an.ts.cc), base, fresh)
    return rc


@njit(cache=True)
def anon_untag_pfns(an, pfn, order):
    """A captured page free: a frame tagged by anon_tag_pfns() (PROT_MTE, mapped once) is
    released."""
    pa = an.pa
    base = pa.pfn_base
    npg = 1 << order
    i0 = pfn - base
    lo, hi = max(i0, 0), min(i0 + npg, len(pa.free))
    out = np.empty(max(hi - lo, 0), np.int64)
    k = 0
    for i in range(lo, hi):
        if pa.tagged[i] and an.mapcount[i] == 1:
            an.mapcount[i] = 0
            out[k] = i + base
            k += 1
    if k == 0:
        return OK
    return _release(an, out[:k])


# -- from Python -------------------------------------------------------------------------------

def anon_call(an: AnonState, fn: Callable[..., int], *args: int,
              make_room: Callable[[int], object] | None = None) -> int:
    """``fn(an, *args, room_done)`` (an operation that may take frames), reclaiming through
    ``make_room(n)`` when it asks (None: it is not asked, as with a fixed capacity)."""
    if make_room is None:
        return int(fn(an, *args, True))
    rc = int(fn(an, *args, False))
    if rc == NEED_ROOM:
        make_room(int(an.c[ROOM_WANTED]))
        rc = int(fn(an, *args, True))
    return rc


def anon_report(an: AnonState) -> dict[str, int]:
    """What replay reads of anonymous memory: nr_pages, peak_pages, nr_tagged, peak_tagged,
    copies."""
    c = an.c
    return {name: int(c[k]) for k, name in enumerate(STAT_NAMES)}


def anon_procs(an: AnonState) -> dict[int, np.ndarray]:
    """Each process's PFN list, copies."""
    return {int(p): an.pool[an.start[p]:an.start[p] + an.length[p]].copy()
            for p in np.flatnonzero(an.live)}


def anon_swapped(an: AnonState) -> tuple[dict[int, int], dict[int, int]]:
    """Pages out on swap per pid, and of those PROT_MTE (non-zero entries)."""
    return ({int(p): int(an.swapped[p]) for p in np.flatnonzero(an.swapped)},
            {int(p): int(an.swapped_tagged[p]) for p in np.flatnonzero(an.swapped_tagged)})
