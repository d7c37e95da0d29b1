"""The cleancache frontend (mm/cleancache.c) and its state, for the compiled engine.

The page cache (engine/filemap.py, vmscan.py, lru.py) and the tag storage (engine/tags.py)
call exactly these hooks::

    cleancache_store_folio(cc, head, order, dirty, workingset)   reclaim evicts a folio
    cleancache_restore_folio(cc, head, nr) -> bool     a folio is read in: restored whole?
    cleancache_invalidate_range(cc, first, end)        write, truncate, inode eviction
    cleancache_cached(cc) -> int                       pages stored now (for the averages)
    cleancache_reserve_block(cc, block, atomic)        tags need a tag block
    cleancache_release_block(cc, block)                a tag block holds no tags any more
    cleancache_lend(cc, pages, share)                  lent tag pages in use (cma, claim)

Each hook calls the design's backend (backends/, one module each, backends/base.py the
contract) through its one compiled ``hook(cc, op, a, b)``, chosen by ``cc.kind`` (its place
in the registry, backends/__init__.py, whose backend_call() numba compiles into direct
calls). The rules the frontend keeps, whatever the backend:
an up-to-date (clean) folio is stored, anything else is invalidated; a folio is restored whole
or not at all; copies of a folio that cannot be restored whole are invalidated, since it is
read from disk. What the backend declares sets the rest: an exclusive backend hands its copy
back (the 2011 semantics); a non-exclusive one keeps it and the hit rotates it (the 2025 GCMA
series); ``workingset_only`` stores only folios with PG_workingset (a stored copy of a folio
without it is dropped); folios above ``max_store_order`` are not stored. With no backend that
keeps copies (``cc.stores == 0``: idle, cma) the page-cache hooks return at once.

One record (:class:`CleancacheState`, a numba structref; engine/flat.py) holds the frontend's
counters and the backend's arrays; its counters are one int64 array ``c`` indexed by the
constants of engine/tagstore.py. :func:`cleancache_report` reads what replay.collect()
reports.

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

from tagcache.backends import REGISTRY, SPECS, backend_call
from tagcache.backends.base import (
    OP_INVALIDATE,
    OP_LEND,
    OP_LOOKUP,
    OP_PRESENT,
    OP_RELEASE,
    OP_RESERVE,
    OP_RESTORE,
    OP_STORE,
    OP_TICK,
    OP_TOUCH,
    PLACEMENTS,
    REPLACEMENTS,
)
from tagcache.engine import checker
from tagcache.engine.checker import CHECK_STATE, make_checker
from tagcache.engine.checker import ON as CK_ON
from tagcache.engine.flat import state_class
from tagcache.engine.tagstore import (
    BACKEND0,
    BAD_EDGES,
    BAD_STORES,
    CELL_FRAME0,
    CELL_INTS,
    COLLATERAL,
    EVICTED,
    FALLBACKS,
    FREE_TOP,
    FRONTEND_COUNTERS,
    GHOST_CAP,
    INVALIDATED,
    MIGRATED,
    MISSED,
    NR_CACHED,
    NR_COUNTERS,
    NR_FREE,
    NR_MOVABLE,
    NR_WAITS,
    PEAK_CACHED,
    POLICIES,
    RECLAIMED,
    RESTORED,
    S3_GHOST_RATIO,
    SKIPPED,
    STORED,
    WRITEBACKS,
    tagstore_hook,
    tagstore_present,
    tagstore_restore_range,
    tagstore_store_folio,
)

KIND_NONE = 0
KINDS = {spec.name: k for k, spec in enumerate(SPECS)}
assert SPECS[KIND_NONE].name == "idle", "the registry's first backend is idle"
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
S3-FIFO's 2-bit frequency and queue bit fit the spare bits of byte 0.
"""
assert TAG_PAGE_RECORD.itemsize == 12, "the per-tag-page record must stay 12 bytes"
TAG_PAGE_RECORD_BYTES = 12.0
"""What a kernel implementation keeps per tag page (:data:`TAG_PAGE_RECORD`)."""

_i32, _u8, _i64, _f64 = types.int32[::1], types.uint8[::1], types.int64[::1], types.float64[::1]
FIELDS = (
    ("kind", types.int64),              # the backend's place in the registry (0: idle)
    ("stores", types.int64),            # 1 if the backend keeps page-cache copies
    ("direct", types.int64),            # 1 if its hook is tagstore_hook: called directly
    ("exclusive", types.int64),         # 1: a restore hands the copy back
    ("workingset_only", types.int64),   # 1: store only folios with PG_workingset
    ("max_order", types.int64),         # largest folio order stored
    ("policy", types.int64),            # POLICY_WHOLE or POLICY_SPLIT (tagstore.py)
    ("replacement", types.int64),       # REPL_FIFO, REPL_LRU, REPL_S3FIFO (tagstore.py)
    ("placement", types.int64),         # PLACE_FIRST, PLACE_COLD, PLACE_OCCUPANCY (tagstore)
    ("claims", types.int64),            # 1: tag claims go through the backend (its memory
                                        # is the tag storage); 0: tags use a static carve-out
    ("tp_tags", types.int64),           # 1: the backend's unit i is tag page i (the checker
                                        # may read tp_state as the tag pages' use)
    ("may_sleep", types.int64),         # declared: a reservation may sleep (rule 4 waived)
    ("can_fail", types.int64),          # declared: a reservation may fail (rule 4 waived)
    ("checking", types.int64),          # ck.c[CK_ON], as a scalar the hooks read for free
    ("c", _i64),                        # counters, tagstore.py's constants
    ("p", _f64),                        # the backend's numeric parameters (its own order)
    ("tp_state", _u8),                  # per tag page: TP_FREE, TP_CACHE, TP_TAGS, ...
    ("tp_order", _u8),                  # per tag page: order of the stored folio
    ("tp_freq", _u8),                   # per tag page: S3-FIFO frequency | IN_SMALL
    ("tp_slot", _i32),                  # per tag page: page-cache slot stored, -1
    ("tp_prev", _i32),                  # per tag page + 2 sentinels: the queues
    ("tp_next", _i32),
    ("in_stack", types.boolean[::1]),   # per tag page: in free_stack
    ("free_stack", _i32),               # candidate free pages (lazy deletion)
    ("slot_tp", _i32),                  # per page-cache slot: tag page of its copy, -1
    ("ghost_seq", _i64),                # per page-cache slot (S3-FIFO only): ghost entry
    ("ghost_ring", _i32),               # S3-FIFO's ghost FIFO of slots
    ("cold_ring", _i32),                # placement "cold": pages tags gave back, in order
    ("log", _i64),                      # the oracle's log of calls, 3 int64 per entry
    ("waits", _f64),                    # ns each tagged page waited (can_fail backends)
    ("block_first_tag_page", _i32),     # per tag block (the layout's)
    ("block_tag_pages", _i32),
    ("cells", _i32),                    # per tag block, 3 int32 (backends/claim.py; placement
                                        # "occupancy" reads its frame), else none
    ("cell_queue", _i32),               # claim's three candidate lists, nb entries each, or
                                        # placement "occupancy"'s ranked free tag pages
    ("block_active", _i32),             # per tag block: 1 under an active cell (the page
                                        # allocator's steering view, backends/claim.py)
    ("frame_free", types.boolean[::1]), # the page allocator's free frames (claim), or none
    ("ck", CHECK_STATE),                # the invariant checker (engine/checker.py), every
)                                       # part reaches it here; ck.c[ON] 0: no checker
_NAMES = tuple(f for f, _ in FIELDS)


@structref.register
class CleancacheStateType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


CLEANCACHE_STATE = CleancacheStateType(list(FIELDS))


@njit(cache=True)
def _new(kind, stores, direct, exclusive, workingset_only, max_order, policy, replacement,
         placement, claims, tp_tags, may_sleep, can_fail, checking, c, p, tp_state, tp_order,
         tp_freq, tp_slot, tp_prev, tp_next, in_stack, free_stack, slot_tp, ghost_seq,
         ghost_ring, cold_ring, log, waits, block_first_tag_page, block_tag_pages, cells,
         cell_queue, block_active, frame_free, ck):
    cc = structref.new(CLEANCACHE_STATE)
    cc.kind = kind
    cc.stores = stores
    cc.direct = direct
    cc.exclusive = exclusive
    cc.workingset_only = workingset_only
    cc.max_order = max_order
    cc.policy = policy
    cc.replacement = replacement
    cc.placement = placement
    cc.claims = claims
    cc.tp_tags = tp_tags
    cc.may_sleep = may_sleep
    cc.can_fail = can_fail
    cc.checking = checking
    cc.c = c
    cc.p = p
    cc.tp_state = tp_state
    cc.tp_order = tp_order
    cc.tp_freq = tp_freq
    cc.tp_slot = tp_slot
    cc.tp_prev = tp_prev
    cc.tp_next = tp_next
    cc.in_stack = in_stack
    cc.free_stack = free_stack
    cc.slot_tp = slot_tp
    cc.ghost_seq = ghost_seq
    cc.ghost_ring = ghost_ring
    cc.cold_ring = cold_ring
    cc.log = log
    cc.waits = waits
    cc.block_first_tag_page = block_first_tag_page
    cc.block_tag_pages = block_tag_pages
    cc.cells = cells
    cc.cell_queue = cell_queue
    cc.block_active = block_active
    cc.frame_free = frame_free
    cc.ck = ck
    return cc


@njit(cache=True)
def _unpack(cc):
    return (cc.kind, cc.stores, cc.direct, cc.exclusive, cc.workingset_only, cc.max_order,
            cc.policy, cc.replacement, cc.placement, cc.claims, cc.tp_tags, cc.may_sleep,
            cc.can_fail, cc.checking, cc.c, cc.p, cc.tp_state, cc.tp_order, cc.tp_freq,
            cc.tp_slot, cc.tp_prev, cc.tp_next, cc.in_stack, cc.free_stack, cc.slot_tp,
            cc.ghost_seq, cc.ghost_ring, cc.cold_ring, cc.log, cc.waits,
            cc.block_first_tag_page, cc.block_tag_pages, cc.cells, cc.cell_queue,
            cc.block_active, cc.frame_free, cc.ck)


CleancacheState = state_class(
    CleancacheStateType, list(_NAMES), _new, _unpack, "CleancacheState", __name__,
    "The frontend's counters and the design backend's per-tag-page arrays.")


def make_cleancache(kind: str = "idle", layout=None, nr_slots: int = 0,
                    policy: str = "whole", ck=None, params: dict | None = None,
                    costs=None, seed: int = 0) -> CleancacheState:
    """The state for backend ``kind`` (a registered name, backends/__init__.py) over the tag
    storage of ``layout``, keeping copies of ``nr_slots`` page-cache slots; ``policy`` the
    large-folio policy, ``params`` the backend's other parameters (its spec's defaults for
    those left out), ``costs`` the cost table and ``seed`` for backends that draw; ``ck``:
    the invariant checker's state (default none, switched off)."""
    if ck is None:
        ck = make_checker(None, 0, False)
    if kind not in KINDS:
        raise ValueError(f"unknown cleancache backend {kind!r}; choose from {sorted(KINDS)}")
    if policy not in POLICIES:
        raise ValueError(f"unknown large-folio policy {policy!r}; choose from {POLICIES}")
    spec = SPECS[KINDS[kind]]
    values = spec.defaults() | dict(params or {})
    if "large_folio" in values:
        values["large_folio"] = policy
    unknown = set(values) - set(spec.defaults())
    if unknown:
        raise ValueError(f"backend {kind!r} has no parameter {sorted(unknown)[0]!r}")
    for name, v in values.items():
        why = spec.param(name).check(v)
        if why:
            raise ValueError(f"backend {kind!r}: {name} = {v!r}: {why}")
    c = np.zeros(NR_COUNTERS, np.int64)
    i32 = np.int32
    if KINDS[kind] == KIND_NONE or layout is None:
        t, nr_slots, first, count = 0, 0, np.zeros(0, i32), np.zeros(0, i32)
    else:
        t = layout.nr_tag_pages
        first = np.ascontiguousarray(layout.block_first_tag_page, i32)
        count = np.ascontiguousarray(layout.block_tag_pages, i32)
    if not spec.holds_cache:
        nr_slots = 0
    if costs is None:
        from tagcache.costs import CostTable
        costs = CostTable()
    extra = spec.setup(values, layout, costs, seed) if spec.setup is not None and t else {}
    if "units" in extra:                            # a backend whose units are not tag pages
        first, count = (np.ascontiguousarray(a, i32) for a in extra["units"])
        t = int(count.sum())
    prev = np.full(t + 2, -1, i32)                  # entries t, t + 1: the sentinels
    nxt = np.full(t + 2, -1, i32)
    prev[t] = nxt[t] = t
    prev[t + 1] = nxt[t + 1] = t + 1
    c[NR_FREE] = c[FREE_TOP] = t
    replacement = REPLACEMENTS.index(values.get("replacement", "fifo"))
    s3 = REPLACEMENTS[replacement] == "s3fifo"
    ghost = int(S3_GHOST_RATIO * t) if s3 else 0
    c[GHOST_CAP] = ghost
    p = np.asarray(extra.get("p", []), np.float64)
    cc = CleancacheState(
        KINDS[kind], int(spec.holds_cache and t > 0),
        int(REGISTRY[KINDS[kind]].hook is tagstore_hook), int(spec.exclusive),
        int(spec.workingset_only), int(spec.max_store_order), POLICIES.index(policy),
        replacement, PLACEMENTS.index(values.get("placement", "first")),
        int(spec.on_tag_storage and KINDS[kind] != KIND_NONE),
        int(spec.on_tag_storage and "units" not in extra), int(spec.may_sleep),
        int(spec.can_fail), int(ck.c[CK_ON]), c, p,
        np.zeros(t, np.uint8), np.zeros(t, np.uint8), np.zeros(t, np.uint8),
        np.full(t, -1, i32), prev, nxt, np.ones(t, np.bool_),
        np.arange(t - 1, -1, -1, dtype=i32),        # pops tag page 0 first
        np.full(int(nr_slots), -1, i32),
        np.zeros(int(nr_slots) if s3 else 0, np.int64), np.full(max(ghost, 1), -1, i32),
        np.full(max(t, 1) if values.get("placement") == "cold" else 1, -1, i32),
        np.zeros(3 * 1024 if spec.offline else 0, np.int64), np.zeros(64, np.float64),
        first, count, *_cell_arrays(layout, extra.get("cells"),
                                    values.get("placement") == "occupancy" and t > 0),
        np.zeros(0, np.bool_), ck)
    for k, v in extra.get("c", {}).items():
        cc.c[k] = v
    if spec.timed and t:
        cleancache_tick(cc, 0, 1)                   # its size at the start of the run
    return cc


def _cell_arrays(layout, cells, occupancy: bool) -> tuple[np.ndarray, ...]:
    """A backend's record per tag block (``cells``: backends/claim.py's, from its setup) or,
    for placement "occupancy", one holding only each block's first data frame; room for the
    candidate lists; the allocator's steering view. Empty arrays for everything else."""
    none = np.zeros(0, np.int32)
    if cells is None and occupancy:
        cells = np.zeros(CELL_INTS * layout.nr_tag_blocks, np.int32)
        cells[CELL_FRAME0::CELL_INTS] = layout.block_first_frame()
    if cells is None:
        return none, none, none
    nb = layout.nr_tag_blocks
    return (np.ascontiguousarray(cells, np.int32),
            np.zeros(max(3 * nb, layout.nr_tag_pages), np.int32), np.zeros(nb, np.int32))


@njit(cache=True)
def cleancache_attach_frames(cc, free):
    """The page allocator's per-frame free array, for a backend that reads it (claim)."""
    cc.frame_free = free


# -- the call into the design's backend ----------------------------------------------------------

# -- the hooks ---------------------------------------------------------------------------------

@njit(cache=True)
def cleancache_invalidate_range(cc, first, end):
    """Forget stored copies of slots ``[first, end)`` (write, truncate, inode eviction)."""
    if not cc.stores:
        return
    if cc.direct:                       # the tag-page store's own hook: call it directly
        cc.c[INVALIDATED] += tagstore_restore_range(cc, first, end)
    else:
        cc.c[INVALIDATED] += backend_call(cc, OP_INVALIDATE, first, end)
    if cc.checking:
        checker.invalidated(cc.ck, cc.slot_tp, first, end)


@njit(cache=True)
def cleancache_store_folio(cc, head, order, dirty, workingset):
    """Reclaim is evicting the folio at ``head``, with its final dirty state and PG_workingset."""
    if not cc.stores:
        return
    nr = 1 << order
    if dirty:
        # An up-to-date page is stored, anything else is invalidated.
        cleancache_invalidate_range(cc, head, head + nr)
        return
    if order > cc.max_order or (cc.workingset_only and not workingset):
        # Not stored (GCMA: order-0 workingset folios only); a copy left would be stale.
        cleancache_invalidate_range(cc, head, head + nr)
        cc.c[SKIPPED] += nr
        return
    if cc.direct:
        present = tagstore_present(cc, head, head + nr)
    else:
        present = backend_call(cc, OP_PRESENT, head, head + nr)
    if present:
        if cc.exclusive or present < nr:
            cleancache_invalidate_range(cc, head, head + nr)   # never two copies of a page
        else:
            backend_call(cc, OP_TOUCH, head, head + nr)        # the copy is current: rotate
            if cc.checking:
                checker.stored(cc.ck, cc.slot_tp, head, nr, cc.tp_tags)
            return
    if cc.direct:
        kept = tagstore_store_folio(cc, head, order)
    else:
        kept = backend_call(cc, OP_STORE, head, order) != 0
    if kept:
        cc.c[STORED] += nr
        if cc.checking:
            checker.stored(cc.ck, cc.slot_tp, head, nr, cc.tp_tags)
    else:
        cc.c[SKIPPED] += nr


@njit(cache=True)
def cleancache_restore_folio(cc, head, nr):
    """A folio is being read in: restore it whole or not at all (the kernel reads the whole
    folio when any page is missing), invalidating a partial copy; True if restored."""
    if not cc.stores:
        return False
    if cc.direct:
        present = tagstore_present(cc, head, head + nr)
    else:
        present = backend_call(cc, OP_LOOKUP, head, head + nr)
    if present < nr:
        if present:
            cleancache_invalidate_range(cc, head, head + nr)
        cc.c[MISSED] += nr
        return False
    if cc.direct and cc.exclusive:
        tagstore_restore_range(cc, head, head + nr)
    elif cc.exclusive:
        backend_call(cc, OP_RESTORE, head, head + nr)
    else:
        backend_call(cc, OP_TOUCH, head, head + nr)
    if cc.checking:
        checker.restored(cc.ck, head, head + nr, not cc.exclusive)
    cc.c[RESTORED] += nr
    return True


@njit(cache=True)
def cleancache_reserve_block(cc, block, atomic):
    """Tags need ``block``: the backend gives its tag pages up (``atomic``: from a context
    that cannot sleep), the work left in ``c[W_*]``."""
    backend_call(cc, OP_RESERVE, block, atomic)


@njit(cache=True)
def cleancache_release_block(cc, block):
    """``block`` holds no tags any more: its tag pages go back to the backend."""
    backend_call(cc, OP_RELEASE, block, 0)


@njit(cache=True)
def cleancache_lend(cc, pages, share):
    """A design lending free tag pages to the page allocator: ``pages`` of them hold data;
    ``share``: of the free frames, the share the page cache leaves free (per 2**20)."""
    backend_call(cc, OP_LEND, pages, share)


@njit(cache=True)
def cleancache_tick(cc, event, total):
    """Event ``event`` of ``total``: a backend whose size follows a schedule adjusts it."""
    backend_call(cc, OP_TICK, event, total)


@njit(cache=True)
def tag_page_states(cc):
    """The tag pages' use as the checker may read it: the backend's per-unit states where a
    unit is a tag page, else nothing (the checker then holds tags to the refcounts only)."""
    if cc.tp_tags:
        return cc.tp_state
    return cc.tp_state[:0]


@njit(cache=True)
def cleancache_account_reserve(cc, dropped, collateral):
    """A tag claim dropped ``dropped`` stored pages (measured by the caller), of which
    ``collateral`` lay outside the claimed tag pages."""
    cc.c[RECLAIMED] += dropped
    cc.c[COLLATERAL] += collateral


@njit(cache=True)
def cleancache_cached(cc):
    """Pages stored now (0 with no backend that keeps copies)."""
    if not cc.stores:
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


def held_copies(cc: CleancacheState) -> tuple[np.ndarray, np.ndarray]:
    """What the backend holds, for the checker's walk: the page-cache slots with a stored
    copy and the tag page each copy is on (the backend's index, read without trusting it:
    machine.verify_backend() holds it against the tag pages' own records)."""
    where = np.asarray(cc.slot_tp)
    slots = np.flatnonzero(where >= 0)
    return slots, where[slots]


def cleancache_errors(cc: CleancacheState) -> int:
    """Transitions the single door refused and pages offered twice (0 in a correct run)."""
    return int(cc.c[BAD_EDGES] + cc.c[BAD_STORES])


def metadata_bytes_per_tag_page(cc: CleancacheState) -> float:
    """Bytes a kernel implementation of the design keeps per tag page, as its backend declares
    (0.0 with no backend; 12 for the 2024 design, :data:`TAG_PAGE_RECORD`; 64, a struct page,
    for designs that hand tag pages to the page allocator)."""
    return float(SPECS[cc.kind].metadata_bytes)


def backend_report(cc: CleancacheState) -> dict[str, int]:
    """The counters every design reports (0 where they cannot occur) and the backend's own
    (its spec's ``stats``), by name."""
    c = cc.c
    out = {"migrated": int(c[MIGRATED]), "fallbacks": int(c[FALLBACKS]),
           "writebacks": int(c[WRITEBACKS]), "lent_in_use": int(c[NR_MOVABLE])}
    for i, name in enumerate(SPECS[cc.kind].stats):
        out[name] = int(c[BACKEND0 + i])
    return out


def backend_waits(cc: CleancacheState) -> np.ndarray:
    """ns each tagged page waited for its tag storage (a design whose reservation can fail
    or fall back), in order."""
    return np.asarray(cc.waits)[:int(cc.c[NR_WAITS])].copy()


def oracle_restored(cc: CleancacheState) -> int:
    """The oracle's bound: page hits of the best policy over its logged calls."""
    from tagcache.backends.oracle import oracle_log
    from tagcache.engine.oracle import oracle_hits

    op, a, b = oracle_log(cc)
    return int(oracle_hits(op, a, b, len(cc.tp_state)))


def simulator_bytes_per_tag_page(cc: CleancacheState) -> float:
    """What the backend's per-tag-page arrays take per tag page, with engine/tags.py's int32
    refcount per tag block (0.0 with no backend)."""
    t = len(cc.tp_state)
    if cc.kind == KIND_NONE or not t:
        return 0.0
    per_page = sum(a.nbytes for a in (cc.tp_state, cc.tp_order, cc.tp_freq, cc.tp_slot,
                                      cc.tp_prev, cc.tp_next, cc.free_stack, cc.in_stack,
                                      cc.cells, cc.cell_queue, cc.block_active))
    return (per_page + 4 * len(cc.block_tag_pages)) / t
