"""Free MTE tag storage as a cleancache backend, as flat state and compiled step functions.

Free tag pages are found through a stack of candidates with lazy deletion (a page claimed by
tags stays in the stack until popped and skipped); stored pages are kept in store order on a
list, oldest evicted first. Its arrays and counters are fields of the cleancache state
(engine/cleancache.py, which owns the record and the frontend); the functions here take that
state ``cc`` and touch only the backend's part of it. What a kernel implementation would keep
per tag page is engine/cleancache.py's TAG_PAGE_RECORD (12 bytes).

Each tag page is in one of three states (four with a design that lends free tag pages to the
page allocator, backends/cma.py: MOVABLE, holding ordinary movable data, entered from and left
to FREE, claimed by migration to TAGS); every change goes through :func:`tp_set_state`, the
single door, which refuses an edge the diagram does not have::

                 S: store_folio()                    legend
        +-----------------------------+              FREE  : free, may take a stored page
        |                             v              CACHE : holds one page of a stored folio
      FREE  <--- R: restore -------  CACHE           TAGS  : holds MTE tags (block reserved)
       |  ^      I: invalidate         |
       |  |      E: evict (full)       |
     C |  | F                          | D
       v  |                            |
      TAGS  <--------------------------+

    S  tagstore_store_folio(): a clean folio is copied into 2^order free tag pages.
    R  tagstore_restore_range(): exclusive restore; the copy is handed back, the page freed.
    I  tagstore_restore_range() for an invalidation: write, truncate, inode eviction, unmount.
    E  tagstore_store_folio() when no tag page is free: the victim's folio is dropped.
    C  tagstore_reserve_block(): tags need the block; a free page simply changes hands.
    D  tagstore_reserve_block(): tags need the block; the stored page is dropped (clean,
       nothing copied). Policy "whole" drops the rest of its folio too (collateral); "split"
       keeps the rest, still restorable. Either way ``c[SIBLINGS]`` counts the rest: while
       it is 0 the policies have not differed.
    F  tagstore_release_block(): the last tagged page of the block is gone.

An edge not in the diagram, or a page stored twice, is refused: the state is left as it was and
``c[BAD_EDGES]`` (``c[BAD_EDGE_TP]`` the tag page) or ``c[BAD_STORES]`` counts it, for the
caller or the checker to report. With a correct frontend and balanced reservations neither ever
moves.

Replacement (``cc.replacement``, backends/base.py REPLACEMENTS) picks the victim of edge E:
``fifo`` the oldest stored page; ``lru`` the same list, but a restore that keeps the copy
(non-exclusive frontends) or a re-store moves the page to the young end, so under the
exclusive frontend, where a stored page is never touched again, it takes exactly FIFO's
steps; ``s3fifo`` a small queue (10% of the room) in front of the main queue, a 2-bit
frequency per page raised by each touch, and a ghost FIFO of the slots evicted from the small
queue unread (as many as 90% of the tag pages): a slot stored again while in the ghost goes
straight to the main queue. The main queue's victim with a frequency above 0 is given another
round (frequency less one), the small queue's is moved to the main queue. Under the exclusive
frontend frequencies never rise, and S3-FIFO is a small FIFO with ghost-admitted main queue.
A victim's whole folio is dropped.

Placement (``cc.placement``, backends/cleancache.py): ``first`` takes the free stack's top (a
page tags gave back is on top, reused first); ``cold`` keeps the pages tags gave back in a FIFO
ring (``cold_ring``, IN_COLD in ``tp_freq``) and takes one only when no other page is free,
the one given back longest ago first: the frames under a tag block just released are freed
anonymous memory, likely to be tagged again soon; ``occupancy`` takes the free tag page whose
32 data frames have the fewest free (XNU's bucket signal, read from the page allocator's free
frames, ``frame_free``): tagged memory is allocated into free frames, so a tag page whose
frames are all in use is the least likely to be claimed soon. Its ranking of the free pages
(``cell_queue``) is redone every RERANK_EVERY copies, a pass over the frames.

Per tag page (arrays of the state): ``tp_state`` uint8, ``tp_order`` uint8, ``tp_slot`` int32
(the page-cache slot stored), ``tp_prev``/``tp_next`` int32 (the queues, entries
``nr_tag_pages`` and ``nr_tag_pages + 1`` the sentinels of the main and the small queue),
``tp_freq`` uint8 (S3-FIFO: frequency, IN_SMALL bit), ``free_stack`` int32 and ``in_stack``
bool (candidates for a free page); per page-cache slot ``slot_tp`` int32 (the backend's index,
the kernel's per-inode xarray) and, with S3-FIFO only, ``ghost_seq`` int64 (when it entered the
ghost, ring ``ghost_ring``). ``c[W_*]`` holds the ReserveWork of the latest claim (dropped,
collateral, folios, copied, slept, failed), where the checker reads what reserve_block()
declared.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tagcache.engine.choices import (
    OP_INVALIDATE,
    OP_LOOKUP,
    OP_PRESENT,
    OP_RELEASE,
    OP_RESERVE,
    OP_RESTORE,
    OP_STORE,
    OP_TOUCH,
    POLICIES,
)
from tagcache.hw.layout import TAG_RATIO

TP_FREE, TP_CACHE, TP_TAGS, TP_MOVABLE = 0, 1, 2, 3
POLICY_WHOLE, POLICY_SPLIT = 0, 1
assert POLICIES[POLICY_WHOLE] == "whole" and POLICIES[POLICY_SPLIT] == "split"

# The cleancache state's counter array: the frontend's counters (as /sys/kernel/mm/cleancache
# and CleancacheStats), then the backend's.
STORED, SKIPPED, RESTORED, MISSED, INVALIDATED, RECLAIMED, COLLATERAL = range(7)
EVICTED, NR_CACHED, PEAK_CACHED, NR_FREE, FREE_TOP = range(7, 12)
W_DROPPED, W_COLLATERAL, W_FOLIOS, W_COPIED, W_SLEPT, W_FAILED = range(12, 18)
BAD_EDGES, BAD_EDGE_TP, BAD_STORES = range(18, 21)
# Pages still stored in the folio of a page a claim drops (edge D): policy "whole" drops them,
# "split" keeps them. While it stays 0 the two policies have taken exactly the same steps, so a
# run of one is the run of the other (replay.py runs the second only when it is not 0).
SIBLINGS = 21
# The latest claim's extra work in backends that migrate or write back (ns of its call and of
# a tagged page's wait), and whole-run sums every design reports (0 where they cannot occur).
W_EXTRA_NS, W_FALLBACK = 22, 23
MIGRATED, FALLBACKS, WRITEBACKS, NR_WAITS, NR_MOVABLE = range(24, 29)
NR_SMALL, GHOST_INSERTS, GHOST_CAP, RNG = range(29, 33)
BACKEND0 = 33                       # a backend's own counters (BackendSpec.stats)
SCRATCH = 47                        # a backend's cursor
COLD_HEAD, COLD_TAIL = 48, 49       # placement "cold": the ring of pages tags gave back
PRIVATE0 = 50                       # a backend's own bookkeeping, not reported (10)
OCC_POS, OCC_LEN, OCC_LEFT = 50, 51, 52     # placement "occupancy": its ranked list
NR_COUNTERS = 60
IN_SMALL = 0x80                     # tp_freq: in the small queue (S3-FIFO)
IN_COLD = 0x40                      # tp_freq: in the ring of pages tags gave back
PLACE_FIRST, PLACE_COLD, PLACE_OCCUPANCY = 0, 1, 2
RERANK_EVERY = 1024                 # copies placed between two rankings ("occupancy")
CELL_INTS, CELL_FRAME0 = 3, 2       # a cell (backends/claim.py; per tag block in cc.cells):
                                    # 3 int32, the third its first covered data frame
FREQ_MAX = 3
REPL_FIFO, REPL_LRU, REPL_S3FIFO = 0, 1, 2
S3_SMALL_RATIO, S3_GHOST_RATIO = 0.10, 0.90
FRONTEND_COUNTERS = ("stored", "skipped", "restored", "missed", "invalidated", "reclaimed",
                     "collateral")
"""CleancacheStats' fields, in the order of the constants STORED..COLLATERAL."""
WORK_FIELDS = ("dropped", "collateral", "folios", "copied", "slept", "failed")
"""ReserveWork's fields, in the order of the constants W_DROPPED..W_FAILED."""


# -- the single door ---------------------------------------------------------------------------

@njit(cache=True)
def tp_set_state(cc, tp, new):
    """Move tag page ``tp`` to state ``new`` along an edge of the diagram; False (nothing
    changed, ``c[BAD_EDGES]`` counted) for any other move."""
    c = cc.c
    old = cc.tp_state[tp]
    if old == new or (new == TP_CACHE and old != TP_FREE) or (
            new == TP_MOVABLE and old != TP_FREE) or (old == TP_MOVABLE and new == TP_CACHE):
        c[BAD_EDGES] += 1
        c[BAD_EDGE_TP] = tp
        return False
    cc.tp_state[tp] = new
    if old == TP_FREE:
        c[NR_FREE] -= 1
    elif old == TP_CACHE:
        c[NR_CACHED] -= 1
    elif old == TP_MOVABLE:
        c[NR_MOVABLE] -= 1
    if new == TP_MOVABLE:
        c[NR_MOVABLE] += 1
    if new == TP_FREE:
        c[NR_FREE] += 1
        if old == TP_TAGS and cc.placement == PLACE_COLD:
            # Tags just gave it back: the same frames are likely tagged again soon, so it
            # takes a copy only when no other page is free, the longest given back first.
            if not cc.tp_freq[tp] & IN_COLD:
                cc.tp_freq[tp] = IN_COLD
                cc.cold_ring[c[COLD_TAIL] % len(cc.cold_ring)] = tp
                c[COLD_TAIL] += 1
        elif not cc.in_stack[tp]:
            cc.free_stack[c[FREE_TOP]] = tp
            c[FREE_TOP] += 1
            cc.in_stack[tp] = True
    elif new == TP_CACHE:
        c[NR_CACHED] += 1
        if c[NR_CACHED] > c[PEAK_CACHED]:
            c[PEAK_CACHED] = c[NR_CACHED]
    return True


@njit(cache=True)
def frames_free(cc, first, n):
    """Free frames among the page allocator's ``[first, first + n)`` (``cc.frame_free``;
    0 when no allocator is attached)."""
    if len(cc.frame_free) == 0:
        return 0
    free = 0
    for i in range(first, first + n):
        free += cc.frame_free[i]
    return free


@njit(cache=True)
def _rank_free_pages(cc):
    """Placement "occupancy": the free tag pages in ``cc.cell_queue``, fewest free covered
    frames first (the allocator's, ``cc.frame_free``; ties by tag page), for the next
    RERANK_EVERY copies."""
    c = cc.c
    n = 0
    keys = np.empty(len(cc.tp_state), np.int64)
    for b in range(len(cc.block_tag_pages)):
        p0 = cc.block_first_tag_page[b]
        f0 = cc.cells[CELL_INTS * b + CELL_FRAME0]
        for k in range(cc.block_tag_pages[b]):
            tp = p0 + k
            if cc.tp_state[tp] != TP_FREE:
                continue
            keys[n] = (frames_free(cc, f0 + TAG_RATIO * k, TAG_RATIO) << 32) | tp
            n += 1
    keys = np.sort(keys[:n])
    for k in range(n):
        cc.cell_queue[k] = keys[k] & 0xFFFFFFFF
    c[OCC_POS] = 0
    c[OCC_LEN] = n
    c[OCC_LEFT] = RERANK_EVERY


@njit(cache=True)
def _pop_occupied(cc):
    """Placement "occupancy": the free tag page covering the fewest free data frames, by the
    latest ranking (re-ranked every RERANK_EVERY copies, or when its list runs out while a
    page is free): tags come where tagged memory is allocated, into free frames."""
    c = cc.c
    fresh = False
    if c[OCC_LEFT] <= 0:
        _rank_free_pages(cc)
        fresh = True
    while True:
        while c[OCC_POS] < c[OCC_LEN]:
            tp = cc.cell_queue[c[OCC_POS]]
            c[OCC_POS] += 1
            if cc.tp_state[tp] == TP_FREE:
                c[OCC_LEFT] -= 1
                return tp
        if fresh or c[NR_FREE] == 0:
            return -1
        _rank_free_pages(cc)
        fresh = True


@njit(cache=True)
def _pop_free(cc):
    """A free page for a copy: the free stack's top; under placement "cold" the pages tags
    gave back wait in their ring (oldest first) until the stack has none; under placement
    "occupancy" the page covering the fewest free frames (:func:`_pop_occupied`)."""
    c = cc.c
    if cc.placement == PLACE_OCCUPANCY:
        return _pop_occupied(cc)
    while c[FREE_TOP] > 0:
        c[FREE_TOP] -= 1
        tp = cc.free_stack[c[FREE_TOP]]
        cc.in_stack[tp] = False
        if cc.tp_state[tp] == TP_FREE and not cc.tp_freq[tp] & IN_COLD:
            return tp
    while c[COLD_HEAD] < c[COLD_TAIL]:
        tp = cc.cold_ring[c[COLD_HEAD] % len(cc.cold_ring)]
        c[COLD_HEAD] += 1
        cc.tp_freq[tp] = 0
        if cc.tp_state[tp] == TP_FREE:
            return tp
    return -1


@njit(cache=True)
def _link(cc, tp):
    """Append ``tp`` at the young end of the main queue."""
    _link_at(cc, tp, len(cc.tp_state))


@njit(cache=True)
def _link_at(cc, tp, sentinel):
    last = cc.tp_prev[sentinel]
    cc.tp_prev[tp] = last
    cc.tp_next[tp] = sentinel
    cc.tp_next[last] = tp
    cc.tp_prev[sentinel] = tp


@njit(cache=True)
def _unlink(cc, tp):
    if cc.tp_freq[tp] & IN_SMALL:
        cc.tp_freq[tp] = 0
        cc.c[NR_SMALL] -= 1
    p, n = cc.tp_prev[tp], cc.tp_next[tp]
    cc.tp_next[p] = n
    cc.tp_prev[n] = p
    cc.tp_prev[tp] = -1
    cc.tp_next[tp] = -1


@njit(cache=True)
def _drop_page(cc, tp, new_state):
    """Forget the page stored on ``tp`` (edges R, I, E, D)."""
    cc.slot_tp[cc.tp_slot[tp]] = -1
    cc.tp_slot[tp] = -1
    _unlink(cc, tp)
    tp_set_state(cc, tp, new_state)


@njit(cache=True)
def _folio_span(cc, tp):
    """The slot range ``[head, end)`` where the rest of ``tp``'s stored folio is looked up,
    and its order: a slot ``s`` in it with ``slot_tp[s] >= 0`` and ``tp_order[slot_tp[s]]``
    equal to the order is a page of the folio."""
    order = int(cc.tp_order[tp])
    nr = 1 << order
    head = cc.tp_slot[tp] & ~(nr - 1)
    end = min(head + nr, len(cc.slot_tp))
    return head, end, order


# -- cleancache_ops ----------------------------------------------------------------------------

@njit(cache=True)
def tagstore_store_folio(cc, head, order):
    """Keep a copy of the clean folio at ``head`` (edge S), evicting the oldest stored folios
    while no tag page is free (edge E); False if it cannot fit (skipped) or a page of it is
    already stored (``c[BAD_STORES]``: the frontend invalidates first)."""
    c = cc.c
    nr = 1 << order
    if nr > c[NR_FREE] + c[NR_CACHED]:
        return False
    for s in range(head, min(head + nr, len(cc.slot_tp))):
        if cc.slot_tp[s] >= 0:
            c[BAD_STORES] += 1
            return False
    sentinel = len(cc.tp_state)
    oldest = cc.tp_next[sentinel]
    if (nr == 1 and c[NR_FREE] == 0 and oldest != sentinel and cc.tp_order[oldest] == 0
            and not cc.in_stack[oldest] and cc.replacement != REPL_S3FIFO):
        # The steady state of a full cache, one page in, one out: edge E would free the
        # oldest page, push it on the free stack and pop it straight back (the only free
        # page, on top), so it is reused in place, every array and counter left as that
        # detour leaves them (the stack's entries below its top, NR_FREE and NR_CACHED).
        cc.slot_tp[cc.tp_slot[oldest]] = -1
        _unlink(cc, oldest)
        cc.tp_slot[oldest] = head
        cc.slot_tp[head] = oldest
        _link(cc, oldest)
        c[EVICTED] += 1
        return True
    s3 = cc.replacement == REPL_S3FIFO
    while c[NR_FREE] < nr:                          # edge E: drop the victim's folio
        victim = _s3_victim(cc) if s3 else cc.tp_next[sentinel]
        if cc.tp_order[victim] == 0:
            _drop_page(cc, victim, TP_FREE)
            c[EVICTED] += 1
            continue
        h, e, order_ = _folio_span(cc, victim)
        for s in range(h, e):
            v = cc.slot_tp[s]
            if v >= 0 and cc.tp_order[v] == order_:
                _drop_page(cc, v, TP_FREE)
                c[EVICTED] += 1
    small = s3 and not _ghost_has(cc, head)
    for i in range(nr):
        tp = _pop_free(cc)
        tp_set_state(cc, tp, TP_CACHE)
        cc.tp_slot[tp] = head + i
        cc.tp_order[tp] = order
        cc.slot_tp[head + i] = tp
        if small:
            _link_at(cc, tp, sentinel + 1)
            cc.tp_freq[tp] = IN_SMALL
            c[NR_SMALL] += 1
        else:
            _link(cc, tp)
            cc.tp_freq[tp] = 0
    return True


@njit(cache=True)
def _s3_victim(cc):
    """S3-FIFO's next victim (a stored page; its folio is dropped), moving the pages it passes
    over: the small queue's oldest, read, goes to the main queue; the main queue's oldest with
    a frequency above 0 goes round again with one less; the small queue's unread victim is
    remembered in the ghost."""
    c = cc.c
    t = len(cc.tp_state)
    while True:
        room = c[NR_FREE] + c[NR_CACHED]
        if c[NR_SMALL] > 0 and (c[NR_SMALL] >= S3_SMALL_RATIO * room
                                or cc.tp_next[t] == t):
            tp = cc.tp_next[t + 1]
            if cc.tp_freq[tp] & ~IN_SMALL:
                _unlink(cc, tp)                     # to main, frequency cleared
                _link(cc, tp)
                continue
            h, _e, _o = _folio_span(cc, tp)
            _ghost_add(cc, h)
            return tp
        tp = cc.tp_next[t]
        f = cc.tp_freq[tp]
        if f:
            _unlink(cc, tp)
            _link(cc, tp)
            cc.tp_freq[tp] = f - 1
            continue
        return tp


@njit(cache=True)
def _ghost_add(cc, slot):
    c = cc.c
    cap = c[GHOST_CAP]
    if cap <= 0:
        return
    c[GHOST_INSERTS] += 1
    cc.ghost_ring[c[GHOST_INSERTS] % cap] = slot
    cc.ghost_seq[slot] = c[GHOST_INSERTS]


@njit(cache=True)
def _ghost_has(cc, slot):
    """Whether ``slot`` is among the ghost's last GHOST_CAP entries (and leaves it)."""
    c = cc.c
    cap = c[GHOST_CAP]
    if cap <= 0 or slot >= len(cc.ghost_seq):
        return False
    q = cc.ghost_seq[slot]
    if q <= 0 or q <= c[GHOST_INSERTS] - cap or cc.ghost_ring[q % cap] != slot:
        return False
    cc.ghost_seq[slot] = 0
    return True


@njit(cache=True)
def tagstore_touch_range(cc, first, end):
    """A restore that keeps the copies, or a re-store, of slots ``[first, end)``: LRU moves
    them to the young end, S3-FIFO raises their frequency, FIFO does nothing."""
    if cc.replacement == REPL_FIFO:
        return
    for s in range(first, min(end, len(cc.slot_tp))):
        tp = cc.slot_tp[s]
        if tp < 0:
            continue
        if cc.replacement == REPL_LRU:
            _unlink(cc, tp)
            _link(cc, tp)
        else:
            f = cc.tp_freq[tp]
            if (f & ~IN_SMALL) < FREQ_MAX:
                cc.tp_freq[tp] = f + 1


@njit(cache=True)
def tagstore_restore_range(cc, first, end):
    """Give back and forget the stored pages of slots ``[first, end)`` (edges R and I, in
    slot order); how many there were."""
    n = 0
    for s in range(first, min(end, len(cc.slot_tp))):
        tp = cc.slot_tp[s]
        if tp >= 0:
            _drop_page(cc, tp, TP_FREE)
            n += 1
    return n


@njit(cache=True)
def tagstore_present(cc, first, end):
    """Slots of ``[first, end)`` with a stored copy (the frontend's locate() >= 0)."""
    n = 0
    for s in range(first, min(end, len(cc.slot_tp))):
        if cc.slot_tp[s] >= 0:
            n += 1
    return n


# -- tag hooks ---------------------------------------------------------------------------------

@njit(cache=True)
def clear_work(cc):
    """Zero the latest claim's ReserveWork (``c[W_*]``) before a claim."""
    c = cc.c
    for k in range(W_DROPPED, W_FAILED + 1):
        c[k] = 0
    c[W_EXTRA_NS] = 0
    c[W_FALLBACK] = 0


@njit(cache=True)
def tagstore_reserve_block(cc, block):
    """Tags need tag block ``block``: a free page changes hands (edge C), a stored page is
    dropped (edge D) with, under policy "whole", the rest of its folio. The ReserveWork is
    left in ``c[W_DROPPED..W_FAILED]``."""
    c = cc.c
    clear_work(cc)
    p0 = cc.block_first_tag_page[block]
    p1 = p0 + cc.block_tag_pages[block]
    for tp in range(p0, p1):
        state = cc.tp_state[tp]
        if state == TP_CACHE:                       # edge D
            c[W_FOLIOS] += 1
            if cc.tp_order[tp] != 0:
                whole = cc.policy == POLICY_WHOLE
                h, e, order = _folio_span(cc, tp)
                for s in range(h, e):
                    v = cc.slot_tp[s]
                    if v < 0 or cc.tp_order[v] != order or v == tp:
                        continue
                    c[SIBLINGS] += 1
                    if not whole:
                        continue
                    on_block = p0 <= v < p1
                    if not on_block:
                        c[W_COLLATERAL] += 1
                        _drop_page(cc, v, TP_FREE)
                    else:
                        _drop_page(cc, v, TP_TAGS)
                    c[W_DROPPED] += 1
            if cc.tp_state[tp] == TP_CACHE:
                _drop_page(cc, tp, TP_TAGS)
                c[W_DROPPED] += 1
        elif state == TP_FREE:                      # edge C
            tp_set_state(cc, tp, TP_TAGS)


@njit(cache=True)
def tagstore_release_block(cc, block):
    """Tag block ``block`` holds no tags any more (edge F for each of its tag pages)."""
    p0 = cc.block_first_tag_page[block]
    for tp in range(p0, p0 + cc.block_tag_pages[block]):
        tp_set_state(cc, tp, TP_FREE)


# -- the backend hook (backends/base.py's contract) ------------------------------------------------

@njit(cache=True)
def tagstore_hook(cc, op, a, b):
    """The tag-page store behind the frontend: every operation of the contract."""
    if op == OP_STORE:
        return 1 if tagstore_store_folio(cc, a, b) else 0
    if op == OP_PRESENT or op == OP_LOOKUP:
        return tagstore_present(cc, a, b)
    if op == OP_RESTORE or op == OP_INVALIDATE:
        return tagstore_restore_range(cc, a, b)
    if op == OP_TOUCH:
        tagstore_touch_range(cc, a, b)
    elif op == OP_RESERVE:
        tagstore_reserve_block(cc, a)
    elif op == OP_RELEASE:
        tagstore_release_block(cc, a)
    return 0
