"""Page frames and the page allocator for anonymous memory, compiled (mm/page_alloc.c's part
that mm/page_alloc.py models).

The compiled twin of mm/page_alloc.py's PageAllocator, frame for frame and draw for draw. The
memmap is ``free`` and ``tagged`` (bool per PFN of the span); tag-storage frames are never
free. An allocation of order N hands out naturally aligned, contiguous, wholly free blocks of
``1 << N`` frames (aligned by PFN, not by index), as the buddy allocator does. A tagged
allocation comes from taggable frames only; an untagged one from untaggable frames first, then
from the rest::

    tagged:    blocks wholly in  free & taggable                 (MASK_TAGGED)
    untagged:  blocks wholly in  free & ~taggable                (MASK_UNTAGGED), and if too
               few, all of them, then blocks wholly free with a taggable frame (MASK_REST)

Placement policy, as there:

* ``sequential``: lowest free blocks first.
* ``random``: chunks of ``chunk_pages`` frames (by index) holding a candidate block, in the
  order of a permutation drawn from the seeded numpy Generator, each chunk's blocks in
  ascending order. numba runs numpy's own Generator (the same PCG64 state, shared with the
  Python object) and its ``shuffle`` is a translation of numpy's, so ``rng.shuffle(arange(m))``
  here draws exactly what ``rng.permutation(m)`` draws there; like there, a placement of no
  block draws nothing.
* ``pack``: tagged allocations take blocks under an already reserved tag block first
  (``block_refs``: engine/tags.py's ``refs``), untagged ones avoid them (randomly placed among
  the others, then the reserved ones).

:func:`page_alloc` returns OUT_OF_MEMORY (engine/rc.py) taking nothing when too few blocks are
free, where the object raises OutOfMemory. Each call scans the memmap as the object's numpy
code does (O(PFNs), about 1-2 ns a frame; the random policy must, to draw a permutation as
long as the object's), and a random placement allocates its chunk lists per call. Measured on
a 4 GiB machine (1.08M PFNs), mte_map of 1024 pages: sequential 1.7 ms, random 13 ms, pack
18-22 ms a call (the object model: 3, 29, 57-79 ms).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.core import config
from numba.experimental import structref

from tagcache.engine.flat import state_class
from tagcache.engine.rc import ERR_DOUBLE_FREE, ERR_NOT_WHOLE, OK, OUT_OF_MEMORY

ALLOC_POLICIES = ("sequential", "random", "pack")
SEQUENTIAL, RANDOM, PACK = range(3)
MASK_TAGGED, MASK_UNTAGGED, MASK_FREE, MASK_REST = range(4)
RES_ANY, RES_RESERVED, RES_UNRESERVED = range(3)

NR_FREE, BAD_PFN = range(2)
NR_COUNTERS = 2

_b = types.boolean[::1]
FIELDS = (
    ("policy", types.int64),            # SEQUENTIAL, RANDOM or PACK
    ("chunk_pages", types.int64),
    ("rng", types.NumPyRandomGeneratorType("NumPyRandomGeneratorType")),
    ("free", _b),                       # per PFN of the span
    ("tagged", _b),                     # per PFN: holds a PROT_MTE page
    ("taggable", _b),                   # the layout's taggable_mask
    ("pfn_to_block", types.int32[::1]),     # the layout's
    ("block_refs", types.int32[::1]),   # engine/tags.py's refs (pack)
    ("pfn_base", types.int64),
    ("c", types.int64[::1]),            # NR_FREE, BAD_PFN
)


@structref.register
class PageAllocStateType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


PAGE_ALLOC_STATE = PageAllocStateType(list(FIELDS))


@njit(cache=True)
def _new(policy, chunk_pages, rng, free, tagged, taggable, pfn_to_block, block_refs, pfn_base,
         c):
    pa = structref.new(PAGE_ALLOC_STATE)
    pa.policy = policy
    pa.chunk_pages = chunk_pages
    pa.rng = rng
    pa.free = free
    pa.tagged = tagged
    pa.taggable = taggable
    pa.pfn_to_block = pfn_to_block
    pa.block_refs = block_refs
    pa.pfn_base = pfn_base
    pa.c = c
    return pa


@njit(cache=True)
def _unpack(pa):
    return (pa.policy, pa.chunk_pages, pa.rng, pa.free, pa.tagged, pa.taggable,
            pa.pfn_to_block, pa.block_refs, pa.pfn_base, pa.c)


PageAllocState = state_class(
    PageAllocStateType, [f for f, _ in FIELDS], _new, _unpack, "PageAllocState", __name__,
    "The memmap (free, tagged), the placement policy and its random stream.")


def make_page_alloc(layout, block_refs: np.ndarray, policy: str = "random",
                    chunk_pages: int = 16, seed: int = 0) -> PageAllocState:
    """The state ``PageAllocator(layout, policy, chunk_pages, seed)`` starts with;
    ``block_refs`` is the tag storage's refcount array (engine/tags.py ``ts.refs``)."""
    if policy not in ALLOC_POLICIES:
        raise ValueError(f"unknown allocation policy {policy!r}; choose from {ALLOC_POLICIES}")
    free = np.array(layout.data_pfn_mask, np.bool_)
    c = np.zeros(NR_COUNTERS, np.int64)
    c[NR_FREE] = int(free.sum())
    pa = PageAllocState(ALLOC_POLICIES.index(policy), max(1, int(chunk_pages)),
                        np.random.default_rng(seed), free, np.zeros(layout.nr_pfns, np.bool_),
                        np.ascontiguousarray(layout.taggable_mask, np.bool_),
                        np.ascontiguousarray(layout.pfn_to_block, np.int32), block_refs,
                        int(layout.pfn_base), c)
    return pa


# -- candidate blocks --------------------------------------------------------------------------

@njit(cache=True)
def _grid(pa, size):
    """(offset, count) of the naturally aligned blocks of ``size`` frames in the span."""
    nr = len(pa.free)
    if size == 1:
        return 0, nr
    off = (size - pa.pfn_base % size) % size
    k = (nr - off) // size
    return off, max(k, 0)


@njit(cache=True)
def _block_class(free, taggable, s, size):
    """The block of ``size`` frames at index ``s``: -1 not wholly free, else 0 (no frame
    taggable), 1 (some) or 2 (all). (Arrays passed, not the state: the scans stay tight.)"""
    if size == 1:
        if not free[s]:
            return -1
        return 2 if taggable[s] else 0
    nt = 0
    for i in range(s, s + size):
        if not free[i]:
            return -1
        if taggable[i]:
            nt += 1
    return 2 if nt == size else (1 if nt else 0)


@njit(cache=True)
def _reserved(p2b, refs, s, size):
    """Does the block lie under a tag block that holds a reservation?"""
    for i in range(s, s + size):
        b = p2b[i]
        if b >= 0 and refs[b] > 0:
            return True
    return False


@njit(cache=True)
def _block_ok(free, taggable, p2b, refs, s, size, mask, res):
    """Is the block of ``size`` frames at index ``s`` a candidate of ``mask`` and ``res``?"""
    cls = _block_class(free, taggable, s, size)
    if cls < 0:
        return False
    if mask == MASK_TAGGED:
        if cls != 2:
            return False
    elif mask == MASK_UNTAGGED:
        if cls != 0:
            return False
    elif mask == MASK_REST:
        if cls == 0:
            return False
    if res == RES_ANY:
        return True
    return _reserved(p2b, refs, s, size) == (res == RES_RESERVED)


@njit(cache=True)
def _count(pa, size, mask, res):
    free, taggable, p2b, refs = pa.free, pa.taggable, pa.pfn_to_block, pa.block_refs
    off, k = _grid(pa, size)
    n = 0
    for t in range(k):
        if _block_ok(free, taggable, p2b, refs, off + t * size, size, mask, res):
            n += 1
    return n


@njit(cache=True)
def _take_ascending(pa, size, mask, res, n, out, pos):
    """The first ``n`` candidates, ascending, into ``out[pos:]``; the new ``pos``."""
    free, taggable, p2b, refs = pa.free, pa.taggable, pa.pfn_to_block, pa.block_refs
    off, k = _grid(pa, size)
    got = 0
    for t in range(k):
        if got >= n:
            break
        s = off + t * size
        if _block_ok(free, taggable, p2b, refs, s, size, mask, res):
            out[pos] = s
            pos += 1
            got += 1
    return pos


if config.DISABLE_JIT:
    def _shuffle(rng, a):
        """numpy's Generator.shuffle() of a 1-d array."""
        rng.shuffle(a)
else:
    from numba.np.random.random_methods import random_interval

    @njit(cache=True)
    def _shuffle(rng, a):
        """numpy's Generator.shuffle() of a 1-d array, the same draws (random_interval()
        from the last element down, as numpy's _shuffle_raw() and numba's own shuffle(),
        which is 5 times slower for its 0-d buffer copies)."""
        for i in range(len(a) - 1, 0, -1):
            j = np.int64(random_interval(rng.bit_generator, i))
            t = a[i]
            a[i] = a[j]
            a[j] = t


@njit(cache=True)
def _random_chunks(pa, size, mask, res, n, out, pos):
    """The first ``n`` candidates taken chunk by chunk, the chunks (of ``chunk_pages``) in the
    order of a random permutation, each chunk's candidates ascending (page_alloc.py's
    _random_chunks()); into ``out[pos:]``, the new ``pos``."""
    if n <= 0:
        return pos
    free, taggable, p2b, refs = pa.free, pa.taggable, pa.pfn_to_block, pa.block_refs
    off, k = _grid(pa, size)
    cp = pa.chunk_pages
    chunks = np.empty(max(1, min(k, len(free) // cp + 1)), np.int64)   # chunks touched
    m = 0
    for t in range(k):
        s = off + t * size
        if _block_ok(free, taggable, p2b, refs, s, size, mask, res):
            ch = s // cp
            if m == 0 or chunks[m - 1] != ch:
                chunks[m] = ch
                m += 1
    rank = np.arange(m)
    _shuffle(pa.rng, rank)                        # = rng.permutation(m)
    by_rank = np.empty(m, np.int64)
    for j in range(m):
        by_rank[rank[j]] = j
    got = 0
    for r in range(m):
        lo = chunks[by_rank[r]] * cp
        hi = lo + cp
        t0 = 0 if lo <= off else (lo - off + size - 1) // size
        t1 = 0 if hi <= off else min(k, (hi - off + size - 1) // size)
        for t in range(t0, t1):
            s = off + t * size
            if _block_ok(free, taggable, p2b, refs, s, size, mask, res):
                out[pos] = s
                pos += 1
                got += 1
                if got == n:
                    return pos
    return pos


@njit(cache=True)
def _place(pa, size, mask, k, tagged, out, pos):
    """Choose ``k`` of the candidates of ``mask`` by the placement policy (_place())."""
    if k <= 0:
        return pos                                # no block: nothing drawn either
    if pa.policy == SEQUENTIAL:
        return _take_ascending(pa, size, mask, RES_ANY, k, out, pos)
    if pa.policy == RANDOM:
        return _random_chunks(pa, size, mask, RES_ANY, k, out, pos)
    if tagged:
        p = _take_ascending(pa, size, mask, RES_RESERVED, k, out, pos)
        return _take_ascending(pa, size, mask, RES_UNRESERVED, k - (p - pos), out, p)
    nun = _count(pa, size, mask, RES_UNRESERVED)
    p = _random_chunks(pa, size, mask, RES_UNRESERVED, min(k, nun), out, pos)
    return _take_ascending(pa, size, mask, RES_RESERVED, k - (p - pos), out, p)


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
    want = n >> order
    starts = np.empty(want, np.int64)
    if tagged:
        if _count(pa, size, MASK_TAGGED, RES_ANY) < want:
            return OUT_OF_MEMORY, empty
        _place(pa, size, MASK_TAGGED, want, True, starts, 0)
    else:
        nfirst = _count(pa, size, MASK_UNTAGGED, RES_ANY)
        if nfirst >= want:
            _place(pa, size, MASK_UNTAGGED, want, False, starts, 0)
        else:
            if _count(pa, size, MASK_FREE, RES_ANY) < want:
                return OUT_OF_MEMORY, empty
            p = _place(pa, size, MASK_UNTAGGED, nfirst, False, starts, 0)
            _place(pa, size, MASK_REST, want - nfirst, False, starts, p)
    pfns = np.empty(n, np.int64)
    j = 0
    for b in range(want):
        for i in range(starts[b], starts[b] + size):
            pa.free[i] = False
            pa.tagged[i] = tagged
            pfns[j] = i + pa.pfn_base
            j += 1
    pa.c[NR_FREE] -= n
    return OK, pfns


@njit(cache=True)
def free_pfns(pa, pfns):
    """Give frames back; ERR_DOUBLE_FREE (nothing freed, ``c[BAD_PFN]``) if one is free."""
    base = pa.pfn_base
    for j in range(len(pfns)):
        if pa.free[pfns[j] - base]:
            pa.c[BAD_PFN] = pfns[j]
            return ERR_DOUBLE_FREE
    for j in range(len(pfns)):
        i = pfns[j] - base
        pa.free[i] = True
        pa.tagged[i] = False
    pa.c[NR_FREE] += len(pfns)
    return OK
