"""The cleancache frontend (mm/cleancache.c) and its state, for the compiled engine.

Over the tag-storage backend of engine/tagstore.py (the only backend; ``cc.kind`` says
whether there is one). The page cache (engine/filemap.py, vmscan.py, lru.py) calls exactly
these hooks::

    cleancache_store_folio(cc, head, order, dirty)     reclaim evicts a folio
    cleancache_restore_folio(cc, head, nr) -> bool     a folio is read in: restored whole?
    cleancache_invalidate_range(cc, first, end)        write, truncate, inode eviction
    cleancache_cached(cc) -> int                       pages stored now (for the averages)

and the tag storage (engine/tags.py) calls :func:`cleancache_account_reserve` after each claim.
The rules, at their call sites: an up-to-date (clean) folio is stored, anything else is
invalidated; a folio is restored whole or not at all, and exclusively (a hit removes the copy);
copies of a folio that cannot be restored whole are invalidated, since it is read from disk.
With no backend (``cc.kind == KIND_NONE``) each hook returns at once and counts nothing.

One record (:class:`CleancacheState`, a numba structref; engine/flat.py) holds the frontend's
counters and the backend's arrays; its counters are one int64 array ``c`` indexed by the
constants of engine/tagstore.py (STORED ... COLLATERAL the frontend's, then EVICTED,
NR_CACHED, PEAK_CACHED, NR_FREE, FREE_TOP, the latest claim's ReserveWork W_*, and the refused
transitions BAD_*). :func:`cleancache_report` reads what replay.collect() reports.

Counters, as in /sys/kernel/mm/cleancache, all in pages: ``stored``, ``skipped`` (offered but
not kept), ``restored``, ``missed`` (looked up, absent), ``invalidated``, ``reclaimed``
(dropped because tags needed the memory; the 2025 series calls this "recalled"), ``cached``
(now). Ours adds ``collateral`` (the part of ``reclaimed`` that sat on tag pages tags did not
need, dropped only because it shared a folio) and ``evicted`` (dropped by the backend to make
room for a newer store; the 2025 series counts this as "reclaimed").

Observation: the checker (engine/checker.py) hears of every store, restore and invalidation
at the sites marked ``# observer:``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.experimental import structref

from tagcache.engine import checker
from tagcache.engine.checker import CHECK_STATE, make_checker
from tagcache.engine.checker import ON as CK_ON
from tagcache.engine.flat import state_class
from tagcache.engine.tagstore import (
    BAD_EDGES,
    BAD_STORES,
    COLLATERAL,
    EVICTED,
    FREE_TOP,
    FRONTEND_COUNTERS,
    INVALIDATED,
    MISSED,
    NR_CACHED,
    NR_COUNTERS,
    NR_FREE,
    PEAK_CACHED,
    POLICIES,
    RECLAIMED,
    RESTORED,
    SKIPPED,
    STORED,
    tagstore_present,
    tagstore_restore_range,
    tagstore_store_folio,
)

KIND_NONE, KIND_TAGSTORE = 0, 1
KINDS = {"idle": KIND_NONE, "cleancache": KIND_TAGSTORE}
TAG_PAGE_RECORD = np.dtype([("state_order", np.uint8), ("prev", np.uint8, 3),
                            ("next", np.uint8, 3), ("tagged", np.uint8), ("key", "<u4")])
"""What a kernel implementation keeps per tag page, 12 bytes packed (XNU's vm_mteinfo cell is
12 bytes too)::

    byte  0      state (2 bits: FREE, CACHE, TAGS) | folio order (4 bits) | 2 spare
    bytes 1-3    prev   24-bit tag-page index in the store-order list
    bytes 4-6    next   24-bit tag-page index (16M tag pages: 64 GiB of tag storage, 2 TiB data)
    byte  7      tagged how many of the 32 data pages this tag page covers are tagged (0..32);
                        a block's reservation refcount is the sum over its tag pages
    bytes 8-11   key    the stored page's key in the backend's index ((inode, index) <-> key)

It is enough because every transition reads only these: a claim needs the state (free page or
stored page), the key (to erase the page from the index) and the order (to find the rest of a
whole folio through the index); eviction walks the list from its oldest end; a release needs
the tagged count. The free-page stack is a search structure, rebuilt from the states (no
field); the simulator's own arrays (:func:`simulator_bytes_per_tag_page`) are reported apart.
"""
assert TAG_PAGE_RECORD.itemsize == 12, "the per-tag-page record must stay 12 bytes"
TAG_PAGE_RECORD_BYTES = 12.0
"""What a kernel implementation keeps per tag page (:data:`TAG_PAGE_RECORD`)."""

_i32, _u8 = types.int32[::1], types.uint8[::1]
FIELDS = (
    ("kind", types.int64),              # KIND_NONE or KIND_TAGSTORE
    ("policy", types.int64),            # POLICY_WHOLE or POLICY_SPLIT (tagstore.py)
    ("checking", types.int64),          # ck.c[CK_ON], as a scalar the hooks read for free
    ("c", types.int64[::1]),            # counters, tagstore.py's constants
    ("tp_state", _u8),                  # per tag page: TP_FREE, TP_CACHE, TP_TAGS
    ("tp_order", _u8),                  # per tag page: order of the stored folio
    ("tp_slot", _i32),                  # per tag page: page-cache slot stored, -1
    ("tp_prev", _i32),                  # per tag page + sentinel: store-order list
    ("tp_next", _i32),
    ("in_stack", types.boolean[::1]),   # per tag page: in free_stack
    ("free_stack", _i32),               # candidate free pages (lazy deletion)
    ("slot_tp", _i32),                  # per page-cache slot: tag page of its copy, -1
    ("block_first_tag_page", _i32),     # per tag block (the layout's)
    ("block_tag_pages", _i32),
    ("ck", CHECK_STATE),                # the invariant checker (engine/checker.py), every
)                                       # part reaches it here; ck.c[ON] 0: no checker


@structref.register
class CleancacheStateType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


CLEANCACHE_STATE = CleancacheStateType(list(FIELDS))


@njit(cache=True)
def _new(kind, policy, checking, c, tp_state, tp_order, tp_slot, tp_prev, tp_next, in_stack,
         free_stack, slot_tp, block_first_tag_page, block_tag_pages, ck):
    cc = structref.new(CLEANCACHE_STATE)
    cc.kind = kind
    cc.policy = policy
    cc.checking = checking
    cc.c = c
    cc.tp_state = tp_state
    cc.tp_order = tp_order
    cc.tp_slot = tp_slot
    cc.tp_prev = tp_prev
    cc.tp_next = tp_next
    cc.in_stack = in_stack
    cc.free_stack = free_stack
    cc.slot_tp = slot_tp
    cc.block_first_tag_page = block_first_tag_page
    cc.block_tag_pages = block_tag_pages
    cc.ck = ck
    return cc


@njit(cache=True)
def _unpack(cc):
    return (cc.kind, cc.policy, cc.checking, cc.c, cc.tp_state, cc.tp_order, cc.tp_slot,
            cc.tp_prev, cc.tp_next, cc.in_stack, cc.free_stack, cc.slot_tp,
            cc.block_first_tag_page, cc.block_tag_pages, cc.ck)


CleancacheState = state_class(
    CleancacheStateType, [f for f, _ in FIELDS], _new, _unpack, "CleancacheState", __name__,
    "The frontend's counters and the tag-storage backend's per-tag-page arrays.")


def make_cleancache(kind: str = "idle", layout=None, nr_slots: int = 0,
                    policy: str = "whole", ck=None) -> CleancacheState:
    """The state for backend ``kind`` ("idle": none; "cleancache": free tag storage of
    ``layout`` keeping copies of ``nr_slots`` page-cache slots, large folios by ``policy``);
    ``ck``: the invariant checker's state (engine/checker.py; default none, switched off)."""
    if ck is None:
        ck = make_checker(None, 0, False)
    if kind not in KINDS:
        raise ValueError(f"unknown cleancache backend {kind!r}; choose from {sorted(KINDS)}")
    if policy not in POLICIES:
        raise ValueError(f"unknown large-folio policy {policy!r}; choose from {POLICIES}")
    c = np.zeros(NR_COUNTERS, np.int64)
    i32 = np.int32
    if KINDS[kind] == KIND_NONE:
        t, nr_slots, first, count = 0, 0, np.zeros(0, i32), np.zeros(0, i32)
    else:
        t = layout.nr_tag_pages
        first = np.ascontiguousarray(layout.block_first_tag_page, i32)
        count = np.ascontiguousarray(layout.block_tag_pages, i32)
    prev = np.full(t + 1, -1, i32)                  # entry t is the list's sentinel
    nxt = np.full(t + 1, -1, i32)
    prev[t] = nxt[t] = t
    c[NR_FREE] = c[FREE_TOP] = t
    return CleancacheState(
        KINDS[kind], POLICIES.index(policy), int(ck.c[CK_ON]), c, np.zeros(t, np.uint8),
        np.zeros(t, np.uint8),
        np.full(t, -1, i32), prev, nxt, np.ones(t, np.bool_),
        np.arange(t - 1, -1, -1, dtype=i32),        # pops tag page 0 first
        np.full(int(nr_slots), -1, i32), first, count, ck)


# -- the hooks ---------------------------------------------------------------------------------

@njit(cache=True)
def cleancache_invalidate_range(cc, first, end):
    """Forget stored copies of slots ``[first, end)`` (write, truncate, inode eviction)."""
    if cc.kind == KIND_NONE:
        return
    cc.c[INVALIDATED] += tagstore_restore_range(cc, first, end)
    if cc.checking:
        checker.invalidated(cc.ck, cc.slot_tp, first, end)


@njit(cache=True)
def cleancache_store_folio(cc, head, order, dirty):
    """Reclaim is evicting the folio at ``head``, with its final dirty state."""
    if cc.kind == KIND_NONE:
        return
    nr = 1 << order
    if dirty:
        # An up-to-date page is stored, anything else is invalidated.
        cleancache_invalidate_range(cc, head, head + nr)
        return
    if tagstore_present(cc, head, head + nr):
        cleancache_invalidate_range(cc, head, head + nr)   # never keep two copies of a page
    if tagstore_store_folio(cc, head, order):
        cc.c[STORED] += nr
        if cc.checking:
            checker.stored(cc.ck, cc.slot_tp, head, nr)
    else:
        cc.c[SKIPPED] += nr


@njit(cache=True)
def cleancache_restore_folio(cc, head, nr):
    """A folio is being read in: restore it whole or not at all (the kernel reads the whole
    folio when any page is missing), invalidating a partial copy; True if restored."""
    if cc.kind == KIND_NONE:
        return False
    present = tagstore_present(cc, head, head + nr)
    if present < nr:
        if present:
            cleancache_invalidate_range(cc, head, head + nr)
        cc.c[MISSED] += nr
        return False
    tagstore_restore_range(cc, head, head + nr)
    if cc.checking:
        checker.restored(cc.ck, head, head + nr)
    cc.c[RESTORED] += nr
    return True


@njit(cache=True)
def cleancache_account_reserve(cc, dropped, collateral):
    """A tag claim dropped ``dropped`` stored pages (measured by the caller), of which
    ``collateral`` lay outside the claimed tag pages."""
    cc.c[RECLAIMED] += dropped
    cc.c[COLLATERAL] += collateral


@njit(cache=True)
def cleancache_cached(cc):
    """Pages stored now (0 with no backend)."""
    if cc.kind == KIND_NONE:
        return 0
    return cc.c[NR_CACHED]


# -- readers for the report --------------------------------------------------------------------

def cleancache_report(cc: CleancacheState) -> dict[str, int]:
    """What replay.collect() reads of cleancache: the frontend's counters, ``evicted``,
    ``cached`` and the backend's ``peak_cached`` (all 0 with no backend)."""
    c = cc.c
    out = {name: int(c[k]) for k, name in enumerate(FRONTEND_COUNTERS)}
    out.update(evicted=int(c[EVICTED]), cached=int(c[NR_CACHED]),
               peak_cached=int(c[PEAK_CACHED]))
    return out


def cleancache_errors(cc: CleancacheState) -> int:
    """Transitions the single door refused and pages offered twice (0 in a correct run)."""
    return int(cc.c[BAD_EDGES] + cc.c[BAD_STORES])


def metadata_bytes_per_tag_page(cc: CleancacheState) -> float:
    """Bytes a kernel implementation keeps per tag page (0.0 with no backend)."""
    return TAG_PAGE_RECORD_BYTES if cc.kind != KIND_NONE else 0.0


def simulator_bytes_per_tag_page(cc: CleancacheState) -> float:
    """What the backend's per-tag-page arrays take per tag page, with engine/tags.py's int32
    refcount per tag block (0.0 with no backend)."""
    t = len(cc.tp_state)
    if cc.kind == KIND_NONE or not t:
        return 0.0
    per_page = sum(a.nbytes for a in (cc.tp_state, cc.tp_order, cc.tp_slot, cc.tp_prev,
                                      cc.tp_next, cc.free_stack, cc.in_stack))
    return (per_page + 4 * len(cc.block_tag_pages)) / t
