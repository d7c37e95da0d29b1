"""``claim``: XNU's dynamic tag storage (apple-oss-distributions/xnu, osfmk/vm/vm_mteinfo.c,
commit 5c306be): a cell per tag page with its own state machine, tag pages lent only to
relocatable memory and claimed back by relocation, and tagged allocations steered to the
frames under tag pages already active, so that few tag pages are live and few claims must
relocate anything.

A cell is kept per tag block (``cc.cells``, three int32: state, tagged, first covered frame;
XNU's cell_t is 12 bytes per tag page: with the default 4 KiB block size a block is one tag
page). Its states and edges are XNU's, every change through :func:`cell_set` (an edge not in
the diagram is refused and counted in ``c[BAD_EDGES]``)::

                           +--------------+
              +---- D.2 ---| DEACTIVATING |<--- D.1 ----+
              v            +--------------+             |
        +----------+        +------------+        +----------+
        | INACTIVE |- A.1 ->| ACTIVATING |- A.2 ->|  ACTIVE  |<--+
        +----------+        +------------+        +----------+   |
          ^  |  ^                                                R.2
          |  |  |             +--------+                         |
          |  |  |     +- B.2 -| PINNED |<------ B.1 ------+      |
          |  | F.1    v       +--------+                  |      |
          |  |  |  +---------+                      +------------+
          |  +-C.1>| CLAIMED |-------- R.1 -------->| RECLAIMING |
          |        +---------+<------- R.x ---------+------------+
          +------------------------ F.2 -------------------+

    DISABLED (not drawn) is where every cell starts; I.2 makes it INACTIVE when the state
    is built (no tag page of the modelled layouts covers unmanaged memory: U.* and K.* never
    happen).
    A.1/A.2 inline  a tagged page lands on an INACTIVE cell (the allocator found no free
                    frame under an active one): it is activated at once, no data to move.
    A.1/A.2 async   the refill thread (:func:`_refill`) keeps ``free_target`` free frames
                    under active cells, activating the INACTIVE cells with the most free
                    frames first.
    D.1/D.2         it drains active cells holding no tagged page and no free frame (XNU's
                    active(0.0)) while more than ``reserve`` are idle: they become claimable.
    C.1             the page allocator claims INACTIVE cells covering at most 8 free frames
                    (buckets 0 and 1-8), fewest first, for movable data: here the page cache
                    beyond what DRAM holds (engine/machine.py lends them, as for cma).
    F.1             that data is freed: the cell is INACTIVE again.
    R.1/R.2         a CLAIMED cell is relocated (its data migrated, ``page_migrate`` per tag
                    page) and becomes ACTIVE: by the refill thread when its bucket of free
                    frames is higher than the best inactive cell's and that one is below
                    17-24 (relocating costs more), or inline when a tagged page lands on
                    it, which then waits (sleeps).
    B.1/B.2         relocation meets a wired page (``pin_rate``): PINNED; the refill thread
                    puts it back (B.2) and moves on, a tagged page that needs the cell waits
                    for the pin to go (a uniform share of ``pin_ms``) and it is retried.

Projected on the tag-page states the frontend and the checker read (engine/tagstore.py):
INACTIVE is FREE, CLAIMED/PINNED/RECLAIMING are MOVABLE (holding lent data), ACTIVE is TAGS,
whether or not a tagged page uses it (an idle active cell holds zeroed tags ready).

Steering: the page allocator runs its ``pack`` placement over ``cc.block_active`` (1 under an
ACTIVE cell) instead of the refcounts: tagged allocations take frames under active cells
first, untagged ones avoid them (XNU's free queues ordered claimed, inactive, active).

Simplified, where the model has no equivalent:
- the transitional states (ACTIVATING, DEACTIVATING, RECLAIMING) are passed through within
  one step: the model has one thread, and the refill thread runs between events (at every
  OP_LEND, which the machine issues before each tagged-memory event and at its samples),
  with a pass over every cell's frames (XNU keeps the cells in bucketed queues instead; the
  pass costs about 2 ms on a 4 GiB machine);
- a cell's free frames are the allocator's free frames it covers (``cc.frame_free``, the
  allocator's own array). The model's page cache holds no frames of its own: for the claim
  rule (at most 8 free) only the share of them the page cache leaves free counts (the
  machine's ``b`` of OP_LEND, parts per 2**20), since untagged allocations fill inactive
  cells first;
- between two passes a tagged allocation larger than the free frames under active cells
  spills to the next blocks by address (the allocator's ``pack``): inactive ones are
  activated inline, claimed ones relocated inline; XNU's inline path would take the best
  inactive cell, or wait for the refill thread;
- XNU's ``inactive_target`` (every inactive cell claimable when there are too many) is left
  out: it only matters when memory is not under pressure, when nothing is lent;
- every reservation is made at the tagged page's allocation, where XNU may wait: none is in
  atomic context, so there are no fallbacks.

Metadata: the 12-byte cell and, since lent tag pages are ordinary memory, a struct page.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tagcache.backends.base import OP_LEND, OP_RELEASE, OP_RESERVE, BackendSpec, Param
from tagcache.backends.cma import _random, record_wait
from tagcache.engine.tagstore import (
    BACKEND0,
    BAD_EDGE_TP,
    BAD_EDGES,
    CELL_FRAME0,
    CELL_INTS,
    MIGRATED,
    NR_MOVABLE,
    PRIVATE0,
    RNG,
    SCRATCH,
    TP_FREE,
    TP_MOVABLE,
    TP_TAGS,
    W_COPIED,
    W_EXTRA_NS,
    W_FAILED,
    W_SLEPT,
    clear_work,
    frames_free,
    tp_set_state,
)
from tagcache.hw.layout import TAG_RATIO

# Cell states, in XNU's order (mte_cell_state_t).
DISABLED, PINNED, DEACTIVATING, CLAIMED, INACTIVE, RECLAIMING, ACTIVATING, ACTIVE = range(8)
# A cell's three int32 in cc.cells (CELL_INTS); the third, CELL_FRAME0, is its first covered
# frame (engine/tagstore.py defines it: placement "occupancy" reads it too).
CELL_STATE, CELL_TAGGED = 0, 1
CLAIMABLE_FREE = 8                  # C.1: buckets 0 and 1-8
MOST_FREE = 1 << 24                 # sort key of "most free frames first": MOST_FREE - free
BUCKET_17_24 = 3                    # XNU's MTE_BUCKET_17_24: from it up, the refill thread
                                    # activates an inactive cell rather than relocate one

_EDGES = np.zeros((8, 8), np.bool_)
for _old, _new in ((DISABLED, ACTIVE), (DISABLED, INACTIVE),            # I.1, I.2
                   (INACTIVE, ACTIVATING), (ACTIVATING, ACTIVE),        # A.1, A.2
                   (ACTIVE, DEACTIVATING), (DEACTIVATING, INACTIVE),    # D.1, D.2
                   (INACTIVE, CLAIMED), (CLAIMED, INACTIVE),            # C.1, F.1
                   (CLAIMED, RECLAIMING), (RECLAIMING, ACTIVE),         # R.1, R.2
                   (RECLAIMING, CLAIMED), (RECLAIMING, INACTIVE),       # R.x, F.2
                   (RECLAIMING, PINNED), (PINNED, CLAIMED)):            # B.1, B.2
    _EDGES[_old, _new] = True
# What a tag page of a cell in each state is, to the frontend and the checker.
_PROJECTION = np.array([TP_FREE, TP_MOVABLE, TP_TAGS, TP_MOVABLE, TP_FREE, TP_MOVABLE,
                        TP_FREE, TP_TAGS], np.uint8)

# Its counters, c[BACKEND0 + i]: the reported ones (SPEC.stats), then its own bookkeeping.
(ACTIVATED, ACTIVATED_INLINE, DEACTIVATED, CLAIMED_CELLS, RECLAIMED_ASYNC, RECLAIMED_INLINE,
 PINNED_CELLS, NR_IDLE) = (BACKEND0 + i for i in range(8))
SCANS = BACKEND0 + 8
CLAIMABLE, QC_LEN, QC_POS, QI_LEN, QI_POS, QR_LEN, QR_POS = (PRIVATE0 + i for i in range(7))
P_RESERVE, P_FREE_TARGET, P_PIN_RATE, P_PIN_NS, P_MIGRATE_NS = range(5)


def _setup(values: dict, layout, costs, seed: int) -> dict:
    return {"p": [values["reserve"], values["free_target"], values["pin_rate"],
                  values["pin_ms"] * 1e6, costs.page_migrate],
            "c": {RNG: seed * 0x9E3779B9 + 7},
            "cells": _boot_cells(layout)}


def _boot_cells(layout) -> np.ndarray:
    """Every cell INACTIVE (XNU's I.2 at boot), with its first covered frame."""
    cells = np.zeros(CELL_INTS * layout.nr_tag_blocks, np.int32)
    cells[CELL_STATE::CELL_INTS] = INACTIVE
    cells[CELL_FRAME0::CELL_INTS] = layout.block_first_frame()
    return cells


def _lendable(c) -> int:
    """Tag pages the allocator may have now: claimed, and claimable (the latest scan's
    candidates not yet taken)."""
    return int(c[NR_MOVABLE] + c[CLAIMABLE])


SPEC = BackendSpec(
    name="claim",
    summary="XNU's cells: tag pages lent only to relocatable memory, tagged allocations "
            "steered to active tag pages, relocation to claim one back",
    params=(
        Param("reserve", 100, "idle active tag pages (no tagged page) the refill thread "
              "never drains below (XNU's mte_ts_grab_rsv)", lo=0, hi=1 << 30),
        Param("free_target", 2048, "free frames under active tag pages below which the "
              "refill thread activates or relocates (XNU: vm_page_free_target)", lo=0,
              hi=1 << 40),
        Param("pin_rate", 0.01, "share of relocations that meet a wired page (the cell is "
              "PINNED until the pin goes)", lo=0.0, hi=1.0),
        Param("pin_ms", 10.0, "longest a pin lasts, ms", lo=0.0, hi=1e6),
    ),
    label=lambda p: f"claim (XNU, {100 * p['pin_rate']:g}% pinned)",
    may_sleep=True,
    can_fail=True,
    holds_cache=False,
    lends_memory=True,
    steers_tagged=True,
    stats=("activated", "activated_inline", "deactivated", "claimed", "reclaimed_async",
           "reclaimed_inline", "pinned", "active_idle", "scans"),
    metadata_bytes=76.0,
    setup=_setup,
    lendable=_lendable,
)


# -- the cell and its single door ------------------------------------------------------------

@njit(cache=True)
def cell_state(cc, b):
    return cc.cells[CELL_INTS * b + CELL_STATE]


@njit(cache=True)
def cell_set(cc, b, new):
    """Move cell ``b`` along an edge of the diagram, its tag pages to the state the new
    state projects to; False (nothing changed, ``c[BAD_EDGES]`` counted) off the diagram."""
    old = cc.cells[CELL_INTS * b + CELL_STATE]
    p0 = cc.block_first_tag_page[b]
    if not _EDGES[old, new]:
        cc.c[BAD_EDGES] += 1
        cc.c[BAD_EDGE_TP] = p0
        return False
    cc.cells[CELL_INTS * b + CELL_STATE] = new
    ts = _PROJECTION[new]
    for tp in range(p0, p0 + cc.block_tag_pages[b]):
        if cc.tp_state[tp] != ts:
            tp_set_state(cc, tp, ts)
    cc.block_active[b] = 1 if new == ACTIVE else 0
    if new == ACTIVE and not cc.cells[CELL_INTS * b + CELL_TAGGED]:
        cc.c[NR_IDLE] += 1
    elif old == ACTIVE and not cc.cells[CELL_INTS * b + CELL_TAGGED]:
        cc.c[NR_IDLE] -= 1
    return True


@njit(cache=True)
def _free_frames(cc, b):
    """Free frames the cell covers (0 with no allocator attached)."""
    return frames_free(cc, cc.cells[CELL_INTS * b + CELL_FRAME0],
                       TAG_RATIO * cc.block_tag_pages[b])


@njit(cache=True)
def _activate(cc, b):
    """A.1 then A.2: an inactive cell's tag pages take tags (nothing to move)."""
    cell_set(cc, b, ACTIVATING)
    cell_set(cc, b, ACTIVE)
    cc.c[ACTIVATED] += 1


@njit(cache=True)
def _relocate(cc, b, wait_for_pin):
    """R.1, the data migrated, R.2: a claimed cell made active. A wired page stops it (B.1,
    PINNED): the refill thread puts the cell back (B.2) and moves on (False); a tagged page
    that needs this cell waits for the pin to go (``c[W_FAILED]``, its wait recorded), then
    the relocation succeeds."""
    c = cc.c
    cell_set(cc, b, RECLAIMING)
    if _random(cc) < cc.p[P_PIN_RATE]:
        c[PINNED_CELLS] += 1
        cell_set(cc, b, PINNED)
        cell_set(cc, b, CLAIMED)
        if not wait_for_pin:
            return False
        c[W_FAILED] += 1
        record_wait(cc, _random(cc) * cc.p[P_PIN_NS])
        cell_set(cc, b, RECLAIMING)
    c[MIGRATED] += cc.block_tag_pages[b]
    cell_set(cc, b, ACTIVE)
    return True


# -- the hook's operations ---------------------------------------------------------------------

@njit(cache=True)
def _reserve(cc, b):
    """A tagged page needs cell ``b`` (its first): at once if active (steered there),
    activated inline if inactive, relocated inline (the tagged page waits) if claimed."""
    c = cc.c
    clear_work(cc)
    s = cell_state(cc, b)
    if s == INACTIVE:
        _activate(cc, b)
        c[ACTIVATED_INLINE] += 1
    elif s == CLAIMED:
        _relocate(cc, b, True)
        n = cc.block_tag_pages[b]
        c[RECLAIMED_INLINE] += 1
        c[W_SLEPT] += 1
        c[W_COPIED] += n
        c[W_EXTRA_NS] += np.int64(n * cc.p[P_MIGRATE_NS])
    elif s != ACTIVE:
        cell_set(cc, b, ACTIVE)                 # off the diagram: refused, counted
    if cell_state(cc, b) == ACTIVE and not cc.cells[CELL_INTS * b + CELL_TAGGED]:
        c[NR_IDLE] -= 1
    cc.cells[CELL_INTS * b + CELL_TAGGED] = 1


@njit(cache=True)
def _release(cc, b):
    """The cell's last tagged page is freed: it stays ACTIVE, idle, until drained."""
    if cc.cells[CELL_INTS * b + CELL_TAGGED]:
        cc.cells[CELL_INTS * b + CELL_TAGGED] = 0
        if cell_state(cc, b) == ACTIVE:
            cc.c[NR_IDLE] += 1


@njit(cache=True)
def _bucket(free):
    """XNU's bucket of a cell by free covered frames: 0, 1-8, 9-16, 17-24, 25-32."""
    return (free + 7) // 8


@njit(cache=True)
def _scan(cc, share):
    """The refill thread's pass over the cells: drain idle active cells no tagged page can
    use (D.1/D.2, while more than ``reserve`` are idle), rebuild the three candidate lists
    (``cc.cell_queue``: claimable inactive cells fewest free frames first; inactive cells
    most free first; claimed cells with a free frame most free first), then refill
    (:func:`_refill`) from the free frames it counted under active cells."""
    c = cc.c
    nb = len(cc.block_active)
    keys_c = np.empty(nb, np.int64)
    keys_i = np.empty(nb, np.int64)
    keys_r = np.empty(nb, np.int64)
    nc = 0
    ni = 0
    nr = 0
    taggable = 0
    for b in range(nb):
        s = cell_state(cc, b)
        if s != INACTIVE and s != CLAIMED and s != ACTIVE:
            continue
        f = _free_frames(cc, b)
        usable = (f * share) >> 20
        if s == ACTIVE:
            if (cc.cells[CELL_INTS * b + CELL_TAGGED] or f > 0
                    or c[NR_IDLE] <= cc.p[P_RESERVE]):
                taggable += f
                continue
            cell_set(cc, b, DEACTIVATING)                  # active(0.0): drained
            cell_set(cc, b, INACTIVE)
            c[DEACTIVATED] += 1
            s = INACTIVE
        if s == INACTIVE:
            if usable <= CLAIMABLE_FREE:
                keys_c[nc] = (_bucket(usable) << 32) | b
                nc += 1
            if f > 0:
                keys_i[ni] = ((MOST_FREE - f) << 32) | b
                ni += 1
        elif f > 0:
            keys_r[nr] = ((MOST_FREE - f) << 32) | b
            nr += 1
    low = np.int64(0xFFFFFFFF)
    for lst, keys, n in ((0, keys_c, nc), (1, keys_i, ni), (2, keys_r, nr)):
        keys = np.sort(keys[:n])
        for k in range(n):
            cc.cell_queue[lst * nb + k] = keys[k] & low
    c[QC_LEN], c[QI_LEN], c[QR_LEN] = nc, ni, nr
    c[QC_POS] = 0
    c[QI_POS] = 0
    c[QR_POS] = 0
    c[CLAIMABLE] = nc
    c[SCANS] += 1
    _refill(cc, taggable)


@njit(cache=True)
def _peek(cc, lst, length, pos, want):
    """The next cell of candidate list ``lst`` still in state ``want`` (stale entries
    skipped: ``c[pos]`` moves past them), or -1."""
    c = cc.c
    nb = len(cc.block_active)
    while c[pos] < c[length]:
        b = cc.cell_queue[lst * nb + c[pos]]
        if cell_state(cc, b) == want:
            return b
        c[pos] += 1
    return -1


@njit(cache=True)
def _next_claimable(cc):
    """The next inactive cell of the claim list (taken off it), or -1."""
    b = _peek(cc, 0, QC_LEN, QC_POS, INACTIVE)
    if b >= 0:
        cc.c[QC_POS] += 1
        cc.c[CLAIMABLE] = max(0, cc.c[CLAIMABLE] - 1)
    else:
        cc.c[CLAIMABLE] = 0
    return b


@njit(cache=True)
def _refill(cc, taggable):
    """mteinfo_tag_storage_active_refill(): while fewer than ``free_target`` free frames
    lie under active cells, activate the inactive cell with the most free frames, or
    relocate the claimed one with the most when its bucket is higher and the inactive
    one's is below 17-24 (reclaiming costs more), until neither has a free frame."""
    c = cc.c
    while taggable < cc.p[P_FREE_TARGET]:
        i = _peek(cc, 1, QI_LEN, QI_POS, INACTIVE)
        r = _peek(cc, 2, QR_LEN, QR_POS, CLAIMED)
        fi = _free_frames(cc, i) if i >= 0 else 0
        fr = _free_frames(cc, r) if r >= 0 else 0
        ib, cb = _bucket(fi), _bucket(fr)
        if ib > 0 and ib >= min(BUCKET_17_24, cb):
            c[QI_POS] += 1
            _activate(cc, i)
            taggable += fi
        elif cb > 0:
            c[QR_POS] += 1
            if _relocate(cc, r, False):
                c[RECLAIMED_ASYNC] += 1
                taggable += fr
        else:
            return


@njit(cache=True)
def _lend(cc, pages, share):
    """``pages`` lent tag pages hold data now: claim inactive cells (C.1), fewest free
    frames first, or give claimed ones back (F.1). The refill thread runs first
    (:func:`_scan`)."""
    c = cc.c
    _scan(cc, share)
    while c[NR_MOVABLE] < pages:
        b = _next_claimable(cc)
        if b < 0:
            break
        cell_set(cc, b, CLAIMED)
        c[CLAIMED_CELLS] += 1
    nb = len(cc.block_active)
    scanned = 0
    while c[NR_MOVABLE] > pages and scanned < nb:
        b = c[SCRATCH] % nb
        c[SCRATCH] = b + 1
        scanned += 1
        if cell_state(cc, b) == CLAIMED:
            cell_set(cc, b, INACTIVE)


@njit(cache=True)
def hook(cc, op, a, b):
    if op == OP_RESERVE:
        _reserve(cc, a)
    elif op == OP_RELEASE:
        _release(cc, a)
    elif op == OP_LEND:
        _lend(cc, a, b)
    return 0
