"""The offline optimum (Belady's MIN) of an exclusive cleancache whose capacity varies in time,
compiled: the most page hits any policy could get from a log of cleancache calls.

The log is three int64 arrays of one length, ``op``, ``a``, ``b``, in time order::

    LOG_STORE       pages [a, a + b) offered clean by reclaim; each may be stored from now
    LOG_LOOKUP      pages [a, b) looked up before a read from disk
    LOG_INVALIDATE  pages [a, b) written or truncated: a stored copy is worthless from now
    LOG_CAPACITY    at most a pages held from now (b unused); a negative capacity counts as 0

Per page, a copy stored at entry i hits once if it is still held at the next LOOKUP of the
page, at entry j, with no INVALIDATE or STORE of the page in between (a later STORE replaces
the copy, an INVALIDATE kills it): the hit removes it (exclusive). So each stored page is
either a *candidate*, the interval [i, j) ending in one hit, or is never worth holding. A page
may be dropped at any time and never comes back; after every entry k the pages held (the
candidates with i <= k < j kept so far) must be at most the capacity in force after k, so a
capacity drop below what is held drops pages right there. The optimum is the largest feasible
set of candidates.

Pages are independent here, whereas the frontend (engine/cleancache.py) restores a folio whole
or not at all: the oracle relaxes that, so its count is an upper bound on what any policy of
the real frontend gets from the same log, not always reachable.

Algorithm. A backward pass gives each stored page the entry of the LOOKUP that would hit it
(-1 if an INVALIDATE, a STORE or the end of the log comes first). A forward sweep holds every
candidate from its store on, in a max-heap keyed by that entry, and whenever more pages are
held than the capacity drops the one whose hit is furthest (Belady). Exchange argument, unit
weights, any capacity curve: an optimal schedule may be taken lazy (a drop postponed until the
room is needed loses no hit), so at each entry k it keeps min(|H|, cap(k)) of H, the candidates
held just before k or stored at k, all of which contain k. Take a lazy optimal O that holds
what the sweep holds after every entry before k, k as late as possible. If they differ at k,
there is x that O keeps and the sweep drops and y the reverse, end(y) <= end(x) since the sweep
keeps those ending soonest; holding y over [k, end(y)) instead of x over [k, end(x)) keeps the
hits and holds no more pages at any entry, and made lazy again after k it agrees with the sweep
up to k too: a contradiction.

A held page is a candidate, so the next entry naming it is its LOOKUP: it leaves only by a hit
or by being dropped. The heap deletes lazily: a hit leaves the page's entry in the heap, and
the per-slot ``held_end`` (the hit entry of the copy held, -1 for none; distinct for the
successive copies of a slot) is the generation stamp an entry must match to be live. A stale
entry ends at or before now and every live one after, so the top is live whenever a page is
held; the heap is rebuilt from its live entries when the stale ones outnumber them.

Per slot, sized by the largest stored slot + 1 (pages never stored cannot hit; other ranges are
clipped to it): ``nxt`` (backward pass) and ``held_end`` (sweep). Per stored page: ``ends``;
per candidate: the heap's ``hkey`` and ``hslot``. All int64. Time O(n + P log P + W), P the
pages stored, W the width of the LOOKUP and INVALIDATE ranges within the slots stored (the
engine's frontend walks them the same way).
"""

from __future__ import annotations

import numpy as np
from numba import njit

LOG_STORE, LOG_LOOKUP, LOG_INVALIDATE, LOG_CAPACITY = 0, 1, 2, 3


# -- the heap: keys (the hit entry) and slots, a max-heap on keys ------------------------------

@njit(cache=True)
def _sift_up(hkey, hslot, i):
    key, slot = hkey[i], hslot[i]
    while i > 0:
        parent = (i - 1) >> 1
        if hkey[parent] >= key:
            break
        hkey[i], hslot[i] = hkey[parent], hslot[parent]
        i = parent
    hkey[i], hslot[i] = key, slot


@njit(cache=True)
def _sift_down(hkey, hslot, hn, i):
    key, slot = hkey[i], hslot[i]
    while True:
        child = 2 * i + 1
        if child >= hn:
            break
        if child + 1 < hn and hkey[child + 1] > hkey[child]:
            child += 1
        if hkey[child] <= key:
            break
        hkey[i], hslot[i] = hkey[child], hslot[child]
        i = child
    hkey[i], hslot[i] = key, slot


@njit(cache=True)
def _heap_pop(hkey, hslot, hn):
    """Remove the top (largest key) of a heap of ``hn`` entries; the new size. The removed
    entry is left at index ``hn - 1``."""
    hn -= 1
    top_key, top_slot = hkey[0], hslot[0]
    if hn > 0:
        hkey[0], hslot[0] = hkey[hn], hslot[hn]
        _sift_down(hkey, hslot, hn, 0)
    hkey[hn], hslot[hn] = top_key, top_slot
    return hn


@njit(cache=True)
def _heap_purge(hkey, hslot, hn, held_end):
    """Keep only the live entries (``held_end[slot] == key``) and heapify; the new size."""
    m = 0
    for i in range(hn):
        if held_end[hslot[i]] == hkey[i]:
            hkey[m], hslot[m] = hkey[i], hslot[i]
            m += 1
    for i in range(m // 2 - 1, -1, -1):
        _sift_down(hkey, hslot, m, i)
    return m


# -- the two passes ------------------------------------------------------------------------------

@njit(cache=True)
def _check_log(op, a, b):
    """The number of slots stored (largest stored slot + 1) and of pages stored; raises on a
    malformed log."""
    n = len(op)
    if len(a) != n or len(b) != n:
        raise ValueError("op, a and b must have the same length")
    nslots = 0
    npages = 0
    for k in range(n):
        o = op[k]
        if o < LOG_STORE or o > LOG_CAPACITY:
            raise ValueError("unknown log op")
        if o == LOG_STORE and b[k] > 0:
            if a[k] < 0:
                raise ValueError("a store of a negative slot")
            nslots = max(nslots, a[k] + b[k])
            npages += b[k]
    return nslots, npages


@njit(cache=True)
def oracle_store_ends(op, a, b, nslots, npages):
    """Backward pass: for each page stored, in log order (the pages of one STORE in slot
    order), the entry of the LOOKUP that would hit it, or -1; and how many are not -1."""
    ends = np.empty(npages, dtype=np.int64)
    nxt = np.full(nslots, -1, dtype=np.int64)      # next entry naming the slot, -1 none
    off = npages
    ncand = 0
    for k in range(len(op) - 1, -1, -1):
        o = op[k]
        if o == LOG_STORE:
            if b[k] <= 0:
                continue
            off -= b[k]
            for q in range(b[k]):
                s = a[k] + q
                j = nxt[s]
                if j >= 0 and op[j] == LOG_LOOKUP:
                    ends[off + q] = j
                    ncand += 1
                else:
                    ends[off + q] = -1
                nxt[s] = k
        elif o == LOG_LOOKUP or o == LOG_INVALIDATE:
            for s in range(max(a[k], 0), min(b[k], nslots)):
                nxt[s] = k
    return ends, ncand


@njit(cache=True)
def oracle_hits(op, a, b, capacity0):
    """The most page hits any policy of an exclusive cleancache gets from the log ``op``,
    ``a``, ``b`` (int64 arrays) starting with capacity ``capacity0`` pages (Belady's MIN)."""
    nslots, npages = _check_log(op, a, b)
    ends, ncand = oracle_store_ends(op, a, b, nslots, npages)
    held_end = np.full(nslots, -1, dtype=np.int64)  # hit entry of the copy held, -1 none
    hkey = np.empty(ncand, dtype=np.int64)
    hslot = np.empty(ncand, dtype=np.int64)
    hn = 0
    nheld = 0
    hits = 0
    cap = max(capacity0, 0)
    off = 0
    for k in range(len(op)):
        o = op[k]
        if o == LOG_STORE:
            if b[k] <= 0:
                continue
            for q in range(b[k]):
                j = ends[off + q]
                if j >= 0:
                    s = a[k] + q
                    held_end[s] = j
                    hkey[hn], hslot[hn] = j, s
                    _sift_up(hkey, hslot, hn)
                    hn += 1
                    nheld += 1
            off += b[k]
        elif o == LOG_LOOKUP:
            for s in range(max(a[k], 0), min(b[k], nslots)):
                if held_end[s] == k:
                    held_end[s] = -1
                    nheld -= 1
                    hits += 1
            if hn - nheld > nheld:
                hn = _heap_purge(hkey, hslot, hn, held_end)
            continue
        elif o == LOG_CAPACITY:
            cap = max(a[k], 0)
        else:
            continue                                 # an INVALIDATE names no held page
        # Drop the pages hit furthest away. The heap holds every page held, so ``hn > 0``
        # only guards the memory.
        while nheld > cap and hn > 0:
            hn = _heap_pop(hkey, hslot, hn)
            s = hslot[hn]
            if held_end[s] == hkey[hn]:
                held_end[s] = -1
                nheld -= 1
    return hits
