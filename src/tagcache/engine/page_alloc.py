"""Page frames and the page allocator for anonymous memory, compiled (the part of
mm/page_alloc.c that anonymous memory needs).

The memmap is ``free`` and ``tagged`` (bool per PFN of the span); tag-storage frames are never
free. An allocation of order N hands out naturally aligned, contiguous, wholly free blocks of
``1 << N`` frames (aligned by PFN, not by index), as the buddy allocator does. A tagged
allocation comes from taggable frames only; an untagged one from untaggable frames first, then
from the rest::

    tagged:    blocks wholly in  free & taggable                 (MASK_TAGGED)
    untagged:  blocks wholly in  free & ~taggable                (MASK_UNTAGGED), and if too
               few, all of them, then blocks wholly free with a taggable frame (MASK_REST)

Placement policy (choices.ALLOC_POLICIES):

* ``sequential``: lowest free blocks first.
* ``random``: chunks of ``chunk_pages`` frames (by index) holding a candidate block, in the
  order of a permutation drawn from the seeded numpy Generator, each chunk's blocks in
  ascending order; a placement of no block draws nothing.
* ``pack``: tagged allocations take blocks under an already reserved tag block first
  (``block_refs``: engine/tags.py's ``refs``), untagged ones avoid them (randomly placed among
  the others, then the reserved ones).

No allocation scans the memmap. For every order allocated so far (tracked from its first
allocation on, one O(PFNs) pass), the state keeps each block's free frames (``bfree``; order 0
reads ``free`` itself), its taggable class (``btcl``: 0 no frame taggable, 1 some, 2 all) and,
per chunk of ``chunk_pages`` frames, how many wholly free blocks of each class start in it
(``ccnt``), updated frame by frame as frames are taken and given back. A candidate count is
then O(1), the candidate chunks one pass over the chunks (O(PFNs / chunk_pages)), and the
blocks taken are read from their chunks only. ``pack`` tests a candidate block against
``block_refs`` when it is read (the tag storage changes those behind the allocator's back).

The random permutation is numpy's ``Generator.permutation(m)``: the same Fisher-Yates shuffle
from the last element down over ``random_interval()`` draws, with numpy's PCG64 step inlined
on the generator's own state (read and written back through its state pointer; verified
against ``bit_generator.state`` when the state is made, numba's call into numpy otherwise),
about twice as fast as a call per draw. Under NUMBA_DISABLE_JIT, numpy's own shuffle.

:func:`page_alloc` returns OUT_OF_MEMORY (engine/rc.py) taking nothing when too few blocks are
free.
"""

from __future__ import annotations

import ctypes

import numpy as np
from numba import njit, types
from numba.core import config
from numba.experimental import structref

from tagcache.engine.choices import ALLOC_POLICIES
from tagcache.engine.flat import state_class
from tagcache.engine.rc import ERR_DOUBLE_FREE, ERR_NOT_WHOLE, OK, OUT_OF_MEMORY

SEQUENTIAL, RANDOM, PACK = range(3)
MASK_TAGGED, MASK_UNTAGGED, MASK_FREE, MASK_REST = range(4)
RES_ANY, RES_RESERVED, RES_UNRESERVED = range(3)
NR_ORDERS = 32
"""Orders an allocation may have (blocks of up to 2**31 frames)."""

NR_FREE, BAD_PFN, NR_TRACKED = range(3)
NR_COUNTERS = 3

_b = types.boolean[::1]
_i64 = types.int64[::1]
FIELDS = (
    ("policy", types.int64),            # SEQUENTIAL, RANDOM or PACK
    ("chunk_pages", types.int64),
    ("rng", types.NumPyRandomGeneratorType("NumPyRandomGeneratorType")),
    ("fast_rng", types.boolean),        # PCG64 inlined on the generator's state
    ("free", _b),                       # per PFN of the span
    ("tagged", _b),                     # per PFN: holds a PROT_MTE page
    ("taggable", _b),                   # the layout's taggable_mask
    ("block_map", types.int32[::1]),    # the layout's: tag block per 1 << block_shift PFNs
    ("block_shift", types.int64),
    ("block_refs", types.int32[::1]),   # engine/tags.py's refs (pack)
    ("pfn_base", types.int64),
    ("c", _i64),                        # NR_FREE, BAD_PFN, NR_TRACKED
    # per tracked order: which (tracked[:c[NR_TRACKED]]), grid offset and blocks
    ("tracked", _i64),
    ("goff", _i64),                     # per order: index of the first aligned block
    ("gk", _i64),                       # per order: blocks in the grid
    ("bbase", _i64),                    # per order: its blocks' start in bfree/btcl
    ("cbase", _i64),                    # per order: its start in ccnt (3 x chunks)
    ("ctot", _i64),                     # per order and class: wholly free blocks
    ("bfree", types.int32[::1]),        # per block (order > 0): free frames
    ("btcl", types.int8[::1]),          # per block (order > 0): taggable class
    ("ccnt", types.int32[::1]),         # per order, class, chunk: wholly free blocks
)


@structref.register
class PageAllocStateType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


PAGE_ALLOC_STATE = PageAllocStateType(list(FIELDS))


@njit(cache=True)
def _new(policy, chunk_pages, rng, fast_rng, free, tagged, taggable, block_map, block_shift,
         block_refs, pfn_base, c, tracked, goff, gk, bbase, cbase, ctot, bfree, btcl, ccnt):
    pa = structref.new(PAGE_ALLOC_STATE)
    pa.policy = policy
    pa.chunk_pages = chunk_pages
    pa.rng = rng
    pa.fast_rng = fast_rng
    pa.free = free
    pa.tagged = tagged
    pa.taggable = taggable
    pa.block_map = block_map
    pa.block_shift = block_shift
    pa.block_refs = block_refs
    pa.pfn_base = pfn_base
    pa.c = c
    pa.tracked = tracked
    pa.goff = goff
    pa.gk = gk
    pa.bbase = bbase
    pa.cbase = cbase
    pa.ctot = ctot
    pa.bfree = bfree
    pa.btcl = btcl
    pa.ccnt = ccnt
    return pa


@njit(cache=True)
def _unpack(pa):
    return (pa.policy, pa.chunk_pages, pa.rng, pa.fast_rng, pa.free, pa.tagged, pa.taggable,
            pa.block_map, pa.block_shift, pa.block_refs, pa.pfn_base, pa.c, pa.tracked,
            pa.goff, pa.gk, pa.bbase, pa.cbase, pa.ctot, pa.bfree, pa.btcl, pa.ccnt)


PageAllocState = state_class(
    PageAllocStateType, [f for f, _ in FIELDS], _new, _unpack, "PageAllocState", __name__,
    "The memmap (free, tagged), per-order free-block counts, the placement policy and its "
    "random stream.")


def _pcg64_inlinable(rng: np.random.Generator) -> bool:
    """Is ``rng`` numpy's PCG64 with the state layout the inlined step reads (``pcg64_state``
    = {pcg64_random_t *, int has_uint32, uint32 uinteger}, a native 128-bit state and
    increment, low word first)?"""
    bg = rng.bit_generator
    if type(bg) is not np.random.PCG64 or config.DISABLE_JIT:
        return False
    st = bg.state
    addr = bg.ctypes.state_address
    p = ctypes.c_uint64.from_address(addr).value
    words = [ctypes.c_uint64.from_address(p + 8 * k).value for k in range(4)]
    has = ctypes.c_int32.from_address(addr + 8).value
    buf = ctypes.c_uint32.from_address(addr + 12).value
    m64 = (1 << 64) - 1
    return (words == [st["state"]["state"] & m64, st["state"]["state"] >> 64,
                      st["state"]["inc"] & m64, st["state"]["inc"] >> 64]
            and has == st["has_uint32"] and buf == st["uinteger"])


def make_page_alloc(layout, block_refs: np.ndarray, policy: str = "random",
                    chunk_pages: int = 16, seed: int = 0) -> PageAllocState:
    """The allocator over ``layout`` with every frame free (``policy``, ``chunk_pages``,
    ``seed``); ``block_refs`` is the tag storage's refcount array (engine/tags.py ``ts.refs``)."""
    if policy not in ALLOC_POLICIES:
        raise ValueError(f"unknown allocation policy {policy!r}; choose from {ALLOC_POLICIES}")
    free = np.ascontiguousarray(layout.data_pfn_mask, np.bool_)   # a new array each read
    c = np.zeros(NR_COUNTERS, np.int64)
    c[NR_FREE] = int(free.sum())
    rng = np.random.default_rng(seed)
    neg = np.full(NR_ORDERS, -1, np.int64)
    pa = PageAllocState(ALLOC_POLICIES.index(policy), max(1, int(chunk_pages)), rng,
                        _pcg64_inlinable(rng), free, np.zeros(layout.nr_pfns, np.bool_),
                        np.ascontiguousarray(layout.taggable_mask, np.bool_),
                        np.ascontiguousarray(layout.block_map, np.int32),
                        int(layout.block_shift), block_refs,
                        int(layout.pfn_base), c, np.zeros(NR_ORDERS, np.int64),
                        np.zeros(NR_ORDERS, np.int64), np.zeros(NR_ORDERS, np.int64),
                        neg.copy(), neg.copy(), np.zeros(3 * NR_ORDERS, np.int64),
                        np.zeros(0, np.int32), np.zeros(0, np.int8), np.zeros(0, np.int32))
    return pa


# -- the per-order counts ----------------------------------------------------------------------

@njit(cache=True)
def _nchunks(pa):
    return (len(pa.free) + pa.chunk_pages - 1) // pa.chunk_pages


@njit(cache=True)
def _track(pa, o):
    """Start keeping order ``o``'s counts (one pass over the memmap)."""
    if pa.cbase[o] >= 0:
        return
    size = 1 << o
    off = (size - pa.pfn_base % size) % size if size > 1 else 0
    k = max((len(pa.free) - off) // size, 0)
    pa.goff[o] = off
    pa.gk[o] = k
    nch = _nchunks(pa)
    cb = len(pa.ccnt)
    ccnt = np.zeros(cb + 3 * nch, np.int32)
    ccnt[:cb] = pa.ccnt
    bb = len(pa.bfree)
    nb = k if o > 0 else 0                        # order 0 reads free itself
    bfree = np.zeros(bb + nb, np.int32)
    bfree[:bb] = pa.bfree
    btcl = np.zeros(bb + nb, np.int8)
    btcl[:bb] = pa.btcl
    _track_k(pa.free, pa.taggable, o, off, k, pa.chunk_pages, nch, bfree[bb:], btcl[bb:],
             ccnt[cb:], pa.ctot[3 * o:3 * o + 3])
    pa.bfree = bfree
    pa.btcl = btcl
    pa.ccnt = ccnt
    pa.bbase[o] = bb
    pa.cbase[o] = cb
    pa.tracked[pa.c[NR_TRACKED]] = o
    pa.c[NR_TRACKED] += 1


@njit(cache=True)
def _track_k(free, taggable, o, off, k, cp, nch, bfree, btcl, ccnt, ctot):
    size = 1 << o
    if o == 0:
        for i in range(len(free)):
            if free[i]:
                cls = 2 if taggable[i] else 0
                ccnt[cls * nch + i // cp] += 1
                ctot[cls] += 1
        return
    for t in range(k):
        s = off + t * size
        nf = 0
        nt = 0
        for i in range(s, s + size):
            if free[i]:
                nf += 1
            if taggable[i]:
                nt += 1
        cls = 2 if nt == size else (1 if nt else 0)
        bfree[t] = nf
        btcl[t] = cls
        if nf == size:
            ccnt[cls * nch + s // cp] += 1
            ctot[cls] += 1


@njit(cache=True)
def _mark_k(free, tagged, taggable, tracked, goff, gk, bbase, cbase, ctot, bfree, btcl, ccnt,
            ntr, cp, nch, pfns, base, now_free, tag):
    """Frames ``pfns`` become free (``now_free``) or taken, ``tagged`` = ``tag``: every
    tracked order's block holding one, and its chunk's count if the block is or was wholly
    free. A frame already so (listed twice) counts once. (Arrays passed: a tight loop.)"""
    d = 1 if now_free else -1
    for j in range(len(pfns)):
        i = pfns[j] - base
        tagged[i] = tag
        if free[i] == now_free:
            continue
        free[i] = now_free
        for q in range(ntr):
            o = tracked[q]
            if o == 0:
                cls = 2 if taggable[i] else 0
                ccnt[cbase[0] + cls * nch + i // cp] += d
                ctot[cls] += d
                continue
            off = goff[o]
            if i < off:
                continue
            t = (i - off) >> o
            if t >= gk[o]:
                continue
            size = 1 << o
            b = bbase[o] + t
            if bfree[b] == (size if d < 0 else size - 1):
                cls = int(btcl[b])      # int8: promoted before the products below
                ccnt[cbase[o] + cls * nch + (off + t * size) // cp] += d
                ctot[3 * o + cls] += d
            bfree[b] += d


@njit(cache=True)
def _mark(pa, pfns, now_free, tag):
    _mark_k(pa.free, pa.tagged, pa.taggable, pa.tracked, pa.goff, pa.gk, pa.bbase, pa.cbase,
            pa.ctot, pa.bfree, pa.btcl, pa.ccnt, pa.c[NR_TRACKED], pa.chunk_pages, _nchunks(pa),
            pfns, pa.pfn_base, now_free, tag)


@njit(cache=True)
def take_frame(pa, i):
    """Frame index ``i`` (free) is taken outside an allocation (a captured page)."""
    one = np.empty(1, np.int64)
    one[0] = i + pa.pfn_base
    _mark(pa, one, False, pa.tagged[i])
    pa.c[NR_FREE] -= 1


# -- candidate blocks --------------------------------------------------------------------------
#
# The scans take the arrays and the order's grid as arguments, ``A`` = (free, taggable, bfree,
# btcl, ccnt, block_map, block_refs, block_shift) and ``g`` = (order, grid offset, blocks,
# bfree base, ccnt base, chunks, chunk_pages): a field read through the state in a loop costs
# two atomic reference counts each time.

@njit(cache=True, inline='always')
def _cls_range(mask):
    """The taggable classes [lo, hi] of ``mask``'s blocks."""
    if mask == MASK_TAGGED:
        return 2, 2
    if mask == MASK_UNTAGGED:
        return 0, 0
    if mask == MASK_REST:
        return 1, 2
    return 0, 2


@njit(cache=True)
def _args(pa, o):
    A = (pa.free, pa.taggable, pa.bfree, pa.btcl, pa.ccnt, pa.block_map, pa.block_refs,
         pa.block_shift)
    g = (o, pa.goff[o], pa.gk[o], pa.bbase[o], pa.cbase[o], _nchunks(pa), pa.chunk_pages)
    return A, g


@njit(cache=True)
def _reserved(p2b, refs, shift, s, size):
    """Does the block lie under a tag block that holds a reservation?"""
    prev = -1
    for i in range(s, s + size):
        b = p2b[i >> shift]
        if b != prev:
            if b >= 0 and refs[b] > 0:
                return True
            prev = b
    return False


@njit(cache=True)
def _scan_k(A, g, mask, res, n, out, pos, chunks, order, what):
    """The one scan over the chunks, its tests written out (a field read through the state
    in a loop costs atomic reference counts):

    * ``what`` 0: the chunks holding a candidate of ``mask`` and ``res``, ascending, into
      ``chunks``; how many;
    * 1: how many candidates;
    * 2: the first ``n`` candidates, ascending, into ``out[pos:]``; the new ``pos``;
    * 3: the same, the chunks taken in the order ``chunks[order[r]]``, r = 0, 1, ...
    """
    free, taggable, bfree, btcl, ccnt, p2b, refs, shift = A
    o, off, k, bb, cb, nch, cp = g
    lo, hi = _cls_range(mask)
    size = 1 << o
    m = len(order) if what == 3 else nch
    got = 0
    for r in range(m):
        if what >= 2 and got >= n:
            break
        ch = r
        if what == 3:
            ch = chunks[order[r]]
        at = cb + ch                              # wholly free blocks of the classes here
        cnt = ccnt[at + lo * nch]
        for cls in range(lo + 1, hi + 1):
            cnt += ccnt[at + cls * nch]
        if cnt == 0:
            continue
        if what == 0 and res == RES_ANY:
            chunks[got] = ch
            got += 1
            continue
        c0 = ch * cp                              # the blocks starting in the chunk
        c1 = c0 + cp
        t0 = 0 if c0 <= off else (c0 - off + size - 1) >> o
        t1 = 0 if c1 <= off else min(k, (c1 - off + size - 1) >> o)
        found = 0
        for t in range(t0, t1):
            s = off + (t << o)
            if o == 0:
                if not free[s]:
                    continue
                cls = 2 if taggable[s] else 0
            else:
                if bfree[bb + t] != size:
                    continue
                cls = btcl[bb + t]
            if cls < lo or cls > hi:
                continue
            if res != RES_ANY and _reserved(p2b, refs, shift, s, size) != (res == RES_RESERVED):
                continue
            found += 1
            if what == 0:
                break
            if what >= 2:
                out[pos] = s
                pos += 1
                if got + found == n:
                    break
        if what == 0:
            if found:
                chunks[got] = ch
                got += 1
        else:
            got += found
    return got if what < 2 else pos


@njit(cache=True)
def _args(pa, o):
    A = (pa.free, pa.taggable, pa.bfree, pa.btcl, pa.ccnt, pa.block_map, pa.block_refs,
         pa.block_shift)
    g = (o, pa.goff[o], pa.gk[o], pa.bbase[o], pa.cbase[o], _nchunks(pa), pa.chunk_pages)
    return A, g


@njit(cache=True)
def _scan_k(A, g, mask, res, n, out, pos, chunks, order, what):
    """The one scan over the chunks, its tests written out (a call with array arguments in
    the loop costs atomic reference counts; so does a field read through the state):

    * ``what`` 0: the chunks holding a candidate of ``mask`` and ``res``, ascending, into
      ``chunks``; how many;
    * 1: how many candidates;
    * 2: the first ``n`` candidates, ascending, into ``out[pos:]``; the new ``pos``;
    * 3: the same, the chunks taken in the order ``chunks[order[r]]``, r = 0, 1, ...
    """
    free, taggable, bfree, btcl, ccnt, p2b, refs, shift = A
    o, off, k, bb, cb, nch, cp = g
    lo, hi = _cls_range(mask)
    size = 1 << o
    m = len(order) if what == 3 else nch
    got = 0
    for r in range(m):
        if what == 2 and got >= n:
            break
        ch = chunks[order[r]] if what == 3 else r
        at = cb + ch                              # wholly free blocks of the classes here
        cnt = ccnt[at + lo * nch]
        for cls in range(lo + 1, hi + 1):
            cnt += ccnt[at + cls * nch]
        if cnt == 0:
            continue
        if what == 0 and res == RES_ANY:
            chunks[got] = ch
            got += 1
            continue
        c0 = ch * cp                              # the blocks starting in the chunk
        c1 = c0 + cp
        t0 = 0 if c0 <= off else (c0 - off + size - 1) >> o
        t1 = 0 if c1 <= off else min(k, (c1 - off + size - 1) >> o)
        for t in range(t0, t1):
            s = off + (t << o)
            if o == 0:
                if not free[s]:
                    continue
                cls = 2 if taggable[s] else 0
            else:
                if bfree[bb + t] != size:
                    continue
                cls = btcl[bb + t]
            if cls < lo or cls > hi:
                continue
            if res != RES_ANY:
                reserved = False                  # under a tag block holding a reservation?
                prev = -1
                for i in range(s, s + size):
                    b = p2b[i >> shift]
                    if b != prev:
                        if b >= 0 and refs[b] > 0:
                            reserved = True
                            break
                        prev = b
                if reserved != (res == RES_RESERVED):
                    continue
            if what == 0:
                chunks[got] = ch
                got += 1
                break
            got += 1
            if what == 1:
                continue
            out[pos] = s
            pos += 1
            if got == n:
                break
        if what == 3 and got == n:
            break
    return got if what < 2 else pos


@njit(cache=True)
def _args(pa, o):
    A = (pa.free, pa.taggable, pa.bfree, pa.btcl, pa.ccnt, pa.block_map, pa.block_refs,
         pa.block_shift)
    g = (o, pa.goff[o], pa.gk[o], pa.bbase[o], pa.cbase[o], _nchunks(pa), pa.chunk_pages)
    return A, g


@njit(cache=True, inline='always')
def _chunk_count(ccnt, cb, nch, lo, hi, ch):
    """Wholly free blocks of classes [lo, hi] starting in chunk ``ch``."""
    at = cb + ch
    n = ccnt[at + lo * nch]
    for cls in range(lo + 1, hi + 1):
        n += ccnt[at + cls * nch]
    return n


@njit(cache=True, inline='always')
def _block_ok(free, taggable, bfree, btcl, p2b, refs, shift, o, off, bb, t, mask, res):
    """Is block ``t`` of order ``o`` a candidate of ``mask`` and ``res``?"""
    s = off + (t << o)
    if o == 0:
        if not free[s]:
            return False
        cls = 2 if taggable[s] else 0
    else:
        b = bb + t
        if bfree[b] != (1 << o):
            return False
        cls = btcl[b]
    if mask == MASK_TAGGED and cls != 2 or mask == MASK_UNTAGGED and cls != 0 \
            or mask == MASK_REST and cls == 0:
        return False
    if res == RES_ANY:
        return True
    reserved = False                              # under a tag block holding a reservation?
    prev = -1
    for i in range(s, s + (1 << o)):
        b = p2b[i >> shift]
        if b != prev:
            if b >= 0 and refs[b] > 0:
                reserved = True
                break
            prev = b
    return reserved == (res == RES_RESERVED)


@njit(cache=True, inline='always')
def _chunk_blocks(o, off, k, cp, ch):
    """The grid indexes [t0, t1) of order ``o``'s blocks starting in chunk ``ch``."""
    size = 1 << o
    lo = ch * cp
    hi = lo + cp
    t0 = 0 if lo <= off else (lo - off + size - 1) >> o
    t1 = 0 if hi <= off else min(k, (hi - off + size - 1) >> o)
    return t0, t1


@njit(cache=True)
def _scan_k(A, g, mask, res, n, out, pos, chunks, order, what):
    """The one scan over the chunks (arrays unpacked once, then tight loops):

    * ``what`` 0: the chunks holding a candidate, ascending, into ``chunks``; how many;
    * 1: how many candidates;
    * 2: the first ``n`` candidates, ascending, into ``out[pos:]``; the new ``pos``;
    * 3: the same, the chunks taken in the order ``chunks[order[r]]``, r = 0, 1, ...
    """
    free, taggable, bfree, btcl, ccnt, p2b, refs, shift = A
    o, off, k, bb, cb, nch, cp = g
    lo, hi = _cls_range(mask)
    m = len(order) if what == 3 else nch
    got = 0
    for r in range(m):
        if what == 2 and got >= n:
            break
        ch = chunks[order[r]] if what == 3 else r
        if _chunk_count(ccnt, cb, nch, lo, hi, ch) == 0:
            continue
        if what == 0 and res == RES_ANY:
            chunks[got] = ch
            got += 1
            continue
        t0, t1 = _chunk_blocks(o, off, k, cp, ch)
        for t in range(t0, t1):
            if _block_ok(free, taggable, bfree, btcl, p2b, refs, shift, o, off, bb, t, mask, res):
                if what == 0:
                    chunks[got] = ch
                    got += 1
                    break
                if what == 1:
                    got += 1
                    continue
                out[pos] = off + (t << o)
                pos += 1
                got += 1
                if got == n:
                    break
        if what == 3 and got == n:
            break
    return got if what < 2 else pos


@njit(cache=True)
def _args(pa, o):
    A = (pa.free, pa.taggable, pa.bfree, pa.btcl, pa.ccnt, pa.block_map, pa.block_refs,
         pa.block_shift)
    g = (o, pa.goff[o], pa.gk[o], pa.bbase[o], pa.cbase[o], _nchunks(pa), pa.chunk_pages)
    return A, g


@njit(cache=True)
def _count(pa, o, mask, res):
    if res == RES_ANY:
        lo, hi = _cls_range(mask)
        n = 0
        for cls in range(lo, hi + 1):
            n += pa.ctot[3 * o + cls]
        return n
    A, g = _args(pa, o)
    none = np.zeros(0, np.int64)
    return _scan_k(A, g, mask, res, 0, none, 0, none, none, 1)


@njit(cache=True)
def _take_ascending(pa, o, mask, res, n, out, pos):
    """The first ``n`` candidates, ascending, into ``out[pos:]``; the new ``pos``."""
    if n <= 0:
        return pos
    A, g = _args(pa, o)
    none = np.zeros(0, np.int64)
    return _scan_k(A, g, mask, res, n, out, pos, none, none, 2)


# -- numpy's permutation -----------------------------------------------------------------------

if config.DISABLE_JIT:
    def _shuffle(pa, a):
        """numpy's Generator.shuffle() of a 1-d array."""
        pa.rng.shuffle(a)
else:
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic
    from numba.np.random.random_methods import random_interval

    _MUL = 0x2360ED051FC65DA44385DF649FCCF645      # PCG_DEFAULT_MULTIPLIER_128

    @intrinsic
    def _bitgen_state(tyctx, bitgen):
        """The bit generator's state address (numpy's ``bitgen_t.state``)."""
        def codegen(ctx, builder, sig, args):
            return cgutils.create_struct_proxy(sig.args[0])(ctx, builder, value=args[0]).state
        return types.uintp(bitgen), codegen

    def _load(width):
        ty = types.uint64 if width == 64 else types.uint32

        @intrinsic
        def load(tyctx, addr):
            def codegen(ctx, builder, sig, args):
                return builder.load(builder.inttoptr(args[0], ir.IntType(width).as_pointer()))
            return ty(types.uintp), codegen

        @intrinsic
        def store(tyctx, addr, v):
            def codegen(ctx, builder, sig, args):
                builder.store(args[1],
                              builder.inttoptr(args[0], ir.IntType(width).as_pointer()))
                return ctx.get_dummy_value()
            return types.void(types.uintp, ty), codegen
        return load, store

    _ld64, _st64 = _load(64)
    _ld32, _st32 = _load(32)

    @intrinsic
    def _pcg_step(tyctx, lo, hi, ilo, ihi):
        """PCG64's 128-bit LCG step: state * multiplier + inc, as (low, high) words."""
        def codegen(ctx, builder, sig, args):
            w = ir.IntType(128)

            def wide(lo, hi):
                return builder.or_(builder.zext(lo, w),
                                   builder.shl(builder.zext(hi, w), ir.Constant(w, 64)))
            s = builder.add(builder.mul(wide(args[0], args[1]), ir.Constant(w, _MUL)),
                            wide(args[2], args[3]))
            return ctx.make_tuple(builder, sig.return_type, [
                builder.trunc(s, ir.IntType(64)),
                builder.trunc(builder.lshr(s, ir.Constant(w, 64)), ir.IntType(64))])
        u = types.uint64
        return types.UniTuple(u, 2)(u, u, u, u), codegen

    @njit(cache=True)
    def _shuffle_pcg64(rng, a):
        """Generator.shuffle(a) for PCG64 with the step inlined: numpy's _shuffle_raw() over
        random_interval() (32-bit draws from pcg64_next32(), its buffered half included),
        the state loaded once and stored back."""
        m = len(a)
        if m <= 1:
            return
        st = _bitgen_state(rng.bit_generator)
        p = _ld64(st)                                   # pcg64_random_t *
        lo, hi, ilo, ihi = _ld64(p), _ld64(p + 8), _ld64(p + 16), _ld64(p + 24)
        has = _ld32(st + 8)
        buf = _ld32(st + 12)
        one = np.uint64(1)
        for i in range(m - 1, 0, -1):
            mask = np.uint64(i)
            mask |= mask >> one
            mask |= mask >> np.uint64(2)
            mask |= mask >> np.uint64(4)
            mask |= mask >> np.uint64(8)
            mask |= mask >> np.uint64(16)
            mask |= mask >> np.uint64(32)
            while True:
                if has:
                    has = np.uint32(0)
                    v = np.uint64(buf)
                else:
                    lo, hi = _pcg_step(lo, hi, ilo, ihi)
                    x = hi ^ lo                         # XSL-RR output
                    r = hi >> np.uint64(58)
                    out = (x >> r) | (x << ((np.uint64(64) - r) & np.uint64(63)))
                    has = np.uint32(1)
                    buf = np.uint32(out >> np.uint64(32))
                    v = out & np.uint64(0xFFFFFFFF)
                v &= mask
                if v <= np.uint64(i):
                    break
            j = np.int64(v)
            t = a[i]
            a[i] = a[j]
            a[j] = t
        _st64(p, lo)
        _st64(p + 8, hi)
        _st32(st + 8, has)
        _st32(st + 12, buf)

    @njit(cache=True)
    def _shuffle(pa, a):
        """numpy's Generator.shuffle() of a 1-d array, the same draws (random_interval()
        from the last element down, as numpy's _shuffle_raw() and numba's own shuffle(),
        which is 5 times slower for its 0-d buffer copies)."""
        if pa.fast_rng:
            _shuffle_pcg64(pa.rng, a)
            return
        for i in range(len(a) - 1, 0, -1):
            j = np.int64(random_interval(pa.rng.bit_generator, i))
            t = a[i]
            a[i] = a[j]
            a[j] = t


@njit(cache=True)
def _random_chunks(pa, o, mask, res, n, out, pos):
    """The first ``n`` candidates taken chunk by chunk, the chunks (of ``chunk_pages``) in the
    order of a random permutation, each chunk's candidates ascending (page_alloc.py's
    _random_chunks()); into ``out[pos:]``, the new ``pos``."""
    if n <= 0:
        return pos
    A, g = _args(pa, o)
    chunks = np.empty(g[5], np.int64)
    none = np.zeros(0, np.int64)
    m = _scan_k(A, g, mask, res, 0, none, 0, chunks, none, 0)
    rank = np.arange(m)
    _shuffle(pa, rank)                            # = rng.permutation(m)
    by_rank = np.empty(m, np.int64)               # chunk j has rank rank[j]
    for j in range(m):
        by_rank[rank[j]] = j
    return _scan_k(A, g, mask, res, n, out, pos, chunks, by_rank, 3)


@njit(cache=True)
def _place(pa, o, mask, k, tagged, out, pos):
    """Choose ``k`` of the candidates of ``mask`` by the placement policy (_place())."""
    if k <= 0:
        return pos                                # no block: nothing drawn either
    if pa.policy == SEQUENTIAL:
        return _take_ascending(pa, o, mask, RES_ANY, k, out, pos)
    if pa.policy == RANDOM:
        return _random_chunks(pa, o, mask, RES_ANY, k, out, pos)
    if tagged:
        p = _take_ascending(pa, o, mask, RES_RESERVED, k, out, pos)
        return _take_ascending(pa, o, mask, RES_UNRESERVED, k - (p - pos), out, p)
    nun = _count(pa, o, mask, RES_UNRESERVED)
    p = _random_chunks(pa, o, mask, RES_UNRESERVED, min(k, nun), out, pos)
    return _take_ascending(pa, o, mask, RES_RESERVED, k - (p - pos), out, p)


@njit(cache=True)
def page_alloc(pa, n, tagged, order):
    """Take ``n`` free frames as ``n >> order`` naturally aligned, contiguous blocks of
    ``1 << order`` frames: (OK, their PFNs block after block in allocation order), or
    (OUT_OF_MEMORY, none) taking nothing, or (ERR_NOT_WHOLE, none); ``n <= 0``: (OK, none)."""
    empty = np.zeros(0, np.int64)
    size = 1 << order
    if n % size:
        return ERR_NOT_WHOLE, empty
    if n <= 0:
        return OK, empty
    _track(pa, order)
    want = n >> order
    starts = np.empty(want, np.int64)
    if tagged:
        if _count(pa, order, MASK_TAGGED, RES_ANY) < want:
            return OUT_OF_MEMORY, empty
        _place(pa, order, MASK_TAGGED, want, True, starts, 0)
    else:
        nfirst = _count(pa, order, MASK_UNTAGGED, RES_ANY)
        if nfirst >= want:
            _place(pa, order, MASK_UNTAGGED, want, False, starts, 0)
        else:
            if _count(pa, order, MASK_FREE, RES_ANY) < want:
                return OUT_OF_MEMORY, empty
            p = _place(pa, order, MASK_UNTAGGED, nfirst, False, starts, 0)
            _place(pa, order, MASK_REST, want - nfirst, False, starts, p)
    pfns = np.empty(n, np.int64)
    j = 0
    for b in range(want):
        for i in range(starts[b], starts[b] + size):
            pfns[j] = i
            j += 1
    pfns += pa.pfn_base
    _mark(pa, pfns, False, tagged)
    pa.c[NR_FREE] -= n
    return OK, pfns


@njit(cache=True)
def _first_free(free, pfns, base):
    for j in range(len(pfns)):
        if free[pfns[j] - base]:
            return j
    return -1


@njit(cache=True)
def free_pfns(pa, pfns):
    """Give frames back; ERR_DOUBLE_FREE (nothing freed, ``c[BAD_PFN]``) if one is free."""
    bad = _first_free(pa.free, pfns, pa.pfn_base)
    if bad >= 0:
        pa.c[BAD_PFN] = pfns[bad]
        return ERR_DOUBLE_FREE
    _mark(pa, pfns, True, False)
    pa.c[NR_FREE] += len(pfns)
    return OK
