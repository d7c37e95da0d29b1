"""Free MTE tag storage as a cleancache backend.

Each tag page is in one of three states; the state lives in ``tp_state`` (one byte per tag page)
and every change goes through :meth:`TagStorageBackend._set_state`, which asserts the edge::

                 S: store_folio()                    legend
        +-----------------------------+              FREE  : free, may take a stored page
        |                             v              CACHE : holds one page of a stored folio
      FREE  <--- R: restore -------  CACHE           TAGS  : holds MTE tags (block reserved)
       |  ^      I: invalidate         |
       |  |      E: evict (full)       |
     C |  | F                          | D
       v  |                            |
      TAGS  <--------------------------+

    S  store_folio(): a clean folio is copied into 2^order free tag pages (any, not contiguous).
    R  restore_range(): exclusive restore; the copy is handed back and the page freed.
    I  invalidate_range(): write, truncate, inode eviction, unmount.
    E  store_folio() when no tag page is free: the oldest stored folio is dropped whole.
    C  reserve_block(): tags need the block; a free page simply changes hands.
    D  reserve_block(): tags need the block; the stored page is dropped, nothing is copied or
       written (it is clean). With policy "whole" the rest of its folio, on other tag pages,
       is dropped too (collateral); with "split" the rest stays and can still be restored.
    F  release_block(): the last tagged page of the block is gone.

Free pages are found through a stack of candidates with lazy deletion (a page claimed by tags
stays in the stack until popped and skipped); stored pages are kept in store order on a list
threaded through two int32 arrays, oldest evicted first. Per tag page, in arrays, no memmap:

    tp_state  uint8   state                     tp_order  uint8   order of the stored folio
    tp_slot   int32   page-cache slot stored    tp_prev/tp_next int32  store-order list
    free_stack int32  candidate free pages      (+ the tag block refcount kept by mte.py)

Stored folios are found again from their slots (``slot_tp``), the backend's index (the
kernel's per-inode xarray); it is sized by the page-cache slots, not by tag storage, and is
not counted as tag-page metadata.

What a kernel implementation keeps per tag page is :data:`TAG_PAGE_RECORD`, 12 bytes packed
(XNU's vm_mteinfo cell is 12 bytes too)::

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
field); the simulator's own arrays (``simulator_bytes_per_tag_page()``) are reported apart.
:meth:`TagStorageBackend.pack_records` packs the live state into records and the tests unpack
them back unchanged.
"""

from __future__ import annotations

import numpy as np

from tagcache.cleancache.backend import USE_CACHE, USE_FREE, USE_TAGS, ReserveWork
from tagcache.hw.layout import MachineLayout

TP_FREE, TP_CACHE, TP_TAGS = 0, 1, 2
STATE_NAMES = ("FREE", "CACHE", "TAGS")
_ALLOWED = {            # new state -> states it may be entered from
    TP_FREE: (TP_CACHE, TP_TAGS),
    TP_CACHE: (TP_FREE,),
    TP_TAGS: (TP_FREE, TP_CACHE),
}
POLICIES = ("whole", "split")

assert (TP_FREE, TP_CACHE, TP_TAGS) == (USE_FREE, USE_CACHE, USE_TAGS)   # tag_page_use()

TAG_PAGE_RECORD = np.dtype([("state_order", np.uint8), ("prev", np.uint8, 3),
                            ("next", np.uint8, 3), ("tagged", np.uint8), ("key", "<u4")])
assert TAG_PAGE_RECORD.itemsize == 12, "the per-tag-page record must stay 12 bytes"
LINK_NONE = (1 << 24) - 1      # a 24-bit link with no page behind it


class TagStorageBackend:
    """Tag storage pages not holding tags keep clean page-cache pages."""

    name = "cleancache"

    def __init__(self, layout: MachineLayout, nr_slots: int, policy: str = "whole") -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown large-folio policy {policy!r}; choose from {POLICIES}")
        self.layout = layout
        self.policy = policy
        t = layout.nr_tag_pages
        self.nr_tag_pages = t
        self.tp_state = np.zeros(t, np.uint8)
        self.tp_order = np.zeros(t, np.uint8)
        self.tp_slot = np.full(t, -1, np.int32)
        self.tp_prev = np.full(t + 1, -1, np.int32)     # entry t is the list sentinel
        self.tp_next = np.full(t + 1, -1, np.int32)
        self.tp_prev[t] = self.tp_next[t] = t
        self.in_stack = np.ones(t, bool)
        self.free_stack = np.arange(t - 1, -1, -1, dtype=np.int32)   # pops tag page 0 first
        self.free_top = t
        self.nr_free = t
        self.nr_cached = 0
        self.peak_cached = 0
        self.evicted = 0
        self.slot_tp = np.full(nr_slots, -1, np.int32)

    # -- state changes ---------------------------------------------------------------------

    def _set_state(self, tp: int, new: int) -> None:
        old = int(self.tp_state[tp])
        assert old in _ALLOWED[new], (
            f"tag page {tp}: {STATE_NAMES[old]} -> {STATE_NAMES[new]} is not an edge")
        self.tp_state[tp] = new
        if old == TP_FREE:
            self.nr_free -= 1
        elif old == TP_CACHE:
            self.nr_cached -= 1
        if new == TP_FREE:
            self.nr_free += 1
            if not self.in_stack[tp]:
                self.free_stack[self.free_top] = tp
                self.free_top += 1
                self.in_stack[tp] = True
        elif new == TP_CACHE:
            self.nr_cached += 1
            if self.nr_cached > self.peak_cached:
                self.peak_cached = self.nr_cached

    def _pop_free(self) -> int:
        while self.free_top:
            self.free_top -= 1
            tp = int(self.free_stack[self.free_top])
            self.in_stack[tp] = False
            if self.tp_state[tp] == TP_FREE:
                return tp
        return -1

    def _link(self, tp: int) -> None:
        t = self.nr_tag_pages
        last = int(self.tp_prev[t])
        self.tp_prev[tp], self.tp_next[tp] = last, t
        self.tp_next[last] = tp
        self.tp_prev[t] = tp

    def _unlink(self, tp: int) -> None:
        p, n = int(self.tp_prev[tp]), int(self.tp_next[tp])
        self.tp_next[p], self.tp_prev[n] = n, p
        self.tp_prev[tp] = self.tp_next[tp] = -1

    def _drop_page(self, tp: int, new_state: int = TP_FREE) -> None:
        """Forget the page stored on ``tp`` (edges R, I, E, D)."""
        self.slot_tp[self.tp_slot[tp]] = -1
        self.tp_slot[tp] = -1
        self._unlink(tp)
        self._set_state(tp, new_state)

    def _folio_pages(self, tp: int) -> list[int]:
        """Tag pages holding the stored folio that ``tp`` is part of."""
        order = int(self.tp_order[tp])
        if order == 0:
            return [tp]
        nr = 1 << order
        head = int(self.tp_slot[tp]) & ~(nr - 1)
        tps = self.slot_tp[head:head + nr]
        tps = tps[tps >= 0]
        return [int(x) for x in tps if self.tp_order[x] == order]

    # -- cleancache_ops --------------------------------------------------------------------

    def store_folio(self, head: int, order: int) -> bool:
        nr = 1 << order
        if nr > self.nr_free + self.nr_cached:
            return False
        assert not (self.slot_tp[head:head + nr] >= 0).any(), "the frontend stores a page twice"
        while self.nr_free < nr:                        # edge E: drop the oldest stored folio
            oldest = int(self.tp_next[self.nr_tag_pages])
            for tp in self._folio_pages(oldest):
                self._drop_page(tp)
                self.evicted += 1
        for i in range(nr):
            tp = self._pop_free()
            self._set_state(tp, TP_CACHE)
            self.tp_slot[tp] = head + i
            self.tp_order[tp] = order
            self.slot_tp[head + i] = tp
            self._link(tp)
        return True

    def restore_range(self, first: int, end: int) -> np.ndarray | None:
        if end - first == 1:
            tp = int(self.slot_tp[first])
            if tp < 0:
                return None
            self._drop_page(tp)
            return np.array([first])
        seg = self.slot_tp[first:end]
        hits = np.flatnonzero(seg >= 0)
        if not len(hits):
            return None
        for tp in seg[hits].tolist():
            self._drop_page(tp)
        return hits + first

    def invalidate_range(self, first: int, end: int) -> int:
        found = self.restore_range(first, end)
        return 0 if found is None else len(found)

    # -- tag hooks -------------------------------------------------------------------------

    def reserve_block(self, block: int) -> ReserveWork:
        work = ReserveWork()
        pages = self.layout.block_tag_pages_range(block)
        for tp in pages:
            state = int(self.tp_state[tp])
            if state == TP_CACHE:                       # edge D
                victims = self._folio_pages(tp) if self.policy == "whole" else [tp]
                work.folios += 1
                for v in victims:
                    if v == tp:
                        continue
                    if self.tp_state[v] == TP_CACHE and v not in pages:
                        work.collateral += 1
                    if v in pages:
                        self._drop_page(v, TP_TAGS)
                    else:
                        self._drop_page(v)
                    work.dropped += 1
                if self.tp_state[tp] == TP_CACHE:
                    self._drop_page(tp, TP_TAGS)
                    work.dropped += 1
            elif state == TP_FREE:                      # edge C
                self._set_state(tp, TP_TAGS)
        return work

    def release_block(self, block: int) -> None:
        for tp in self.layout.block_tag_pages_range(block):             # edge F
            self._set_state(tp, TP_FREE)

    # -- what the checker may look at ------------------------------------------------------

    def tag_page_use(self, tps: np.ndarray | range) -> np.ndarray:
        """USE_FREE, USE_CACHE or USE_TAGS for each tag page of ``tps`` (the states)."""
        if isinstance(tps, range):
            return self.tp_state[tps.start:tps.stop]
        return self.tp_state[tps]

    def locate(self, slots: np.ndarray) -> np.ndarray:
        """The tag page holding each slot's stored copy, -1 where none is stored."""
        return self.slot_tp[slots]

    # -- reporting -------------------------------------------------------------------------

    @property
    def cached_pages(self) -> int:
        return self.nr_cached

    def metadata_bytes_per_tag_page(self) -> float:
        """Bytes a kernel implementation keeps per tag page: :data:`TAG_PAGE_RECORD`."""
        return float(TAG_PAGE_RECORD.itemsize)

    def simulator_bytes_per_tag_page(self) -> float:
        """What this simulator's arrays take per tag page (not a kernel figure)."""
        t = self.nr_tag_pages
        per_page = (self.tp_state.nbytes + self.tp_order.nbytes + self.tp_slot.nbytes
                    + self.tp_prev.nbytes + self.tp_next.nbytes + self.free_stack.nbytes
                    + self.in_stack.nbytes)
        refcount = 4 * self.layout.nr_tag_blocks          # mte.py's int32 per tag block
        return (per_page + refcount) / t

    def pack_records(self, tagged_per_tag_page: np.ndarray) -> np.ndarray:
        """The live state as :data:`TAG_PAGE_RECORD` records (``tagged_per_tag_page``: the
        tagged data pages each tag page covers, from the memmap)."""
        t = self.nr_tag_pages
        if t >= LINK_NONE:
            raise ValueError(f"{t} tag pages do not fit 24-bit links")
        rec = np.zeros(t, TAG_PAGE_RECORD)
        rec["state_order"] = self.tp_state | (self.tp_order << 2)
        for name, arr in (("prev", self.tp_prev[:t]), ("next", self.tp_next[:t])):
            v = np.where(arr < 0, LINK_NONE, np.where(arr == t, LINK_NONE - 1, arr))
            v = v.astype(np.uint32)
            rec[name] = np.stack([v & 0xFF, (v >> 8) & 0xFF, v >> 16], axis=1)
        rec["tagged"] = tagged_per_tag_page
        rec["key"] = np.where(self.tp_slot < 0, 0xFFFFFFFF, self.tp_slot).astype(np.uint32)
        return rec

    @staticmethod
    def unpack_records(rec: np.ndarray) -> dict[str, np.ndarray]:
        """Inverse of :meth:`pack_records`: state, order, prev, next (the list's head and
        tail link to -2), tagged and slot, as arrays."""
        def link(name: str) -> np.ndarray:
            b = rec[name].astype(np.int64)
            v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
            return np.where(v == LINK_NONE, -1, np.where(v == LINK_NONE - 1, -2, v))
        key = rec["key"].astype(np.int64)
        return {"state": rec["state_order"] & 3, "order": rec["state_order"] >> 2,
                "prev": link("prev"), "next": link("next"), "tagged": rec["tagged"],
                "slot": np.where(key == 0xFFFFFFFF, -1, key)}

    def verify(self) -> list[str]:
        errs = []
        cached = np.flatnonzero(self.tp_state == TP_CACHE)
        if len(cached) != self.nr_cached:
            errs.append(f"nr_cached {self.nr_cached} but {len(cached)} pages in CACHE")
        if int(np.count_nonzero(self.tp_state == TP_FREE)) != self.nr_free:
            errs.append("nr_free disagrees with tp_state")
        bad = cached[self.slot_tp[self.tp_slot[cached]] != cached]
        if len(bad):
            errs.append(f"tag pages {bad[:5].tolist()} and the slot index disagree")
        if int(np.count_nonzero(self.slot_tp >= 0)) != self.nr_cached:
            errs.append("slot index holds a different number of pages than CACHE")
        if np.any(self.tp_slot[self.tp_state != TP_CACHE] >= 0):
            errs.append("a page not in CACHE still names a slot")
        n, s, t = 0, int(self.tp_next[self.nr_tag_pages]), self.nr_tag_pages
        while s != t and n <= t:
            n += 1
            s = int(self.tp_next[s])
        if n != self.nr_cached:
            errs.append(f"store-order list has {n} pages, {self.nr_cached} cached")
        return errs
