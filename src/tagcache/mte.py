"""Tag storage reservation and the arm64 MTE hooks (arch/arm64/kernel/mte.c).

A data page's tags live in one tag block (hw/layout.py); 32 x (pages per block) data pages
share it, so the block is reference counted by the number of tagged data pages it serves::

    refs[block]:  0 --reserve_tag_storage()--> n > 0 --free_tag_storage()--> 0
                     backend.reserve_block()                backend.release_block()
                     + cache maintenance                    + cache maintenance

Hooks, as proposed for the cleancache design: set_ptes_at() (a PROT_MTE page is mapped),
copy_highpage() (tags copied on CoW or migration), arch_swap_restore() (tags restored on
swap-in) all reserve; freeing a tagged page releases. They run in atomic context: the
cleancache backend's reserve_block() only drops clean copies, so a reservation never fails and
never sleeps; the checker (invariants.py) counts any that does, from what it measures.

Cache maintenance, after the dynamic tag storage RFC v3 (patch 24/35): when a block goes from
data to tags, its data lines are invalidated (dcache_inval_poc over the block); when it goes
back, its tag lines are (dcache_inval_tags_poc). Counted in tag pages maintained. The RFC does
the second per freed page; we do it once per block when the last tagged page goes, which
covers the same lines.

With no backend ("tag storage left idle") tag storage is a static carve-out: tags are always
there, reservations only count, and nothing is dropped or maintained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tagcache.cleancache.backend import USE_CACHE, CleancacheBackend
from tagcache.cleancache.frontend import Cleancache
from tagcache.costs import CostTable
from tagcache.hw.layout import MachineLayout

DROP_BUCKETS = (0, 1, 2, 3, 5, 9, 17, 33, 65)
"""Lower bounds of the buckets of pages dropped per claiming call: 0, 1, 2, 3-4, 5-8, ..."""


@dataclass
class TagStorageStats:
    reservations: int = 0          # reserve_tag_storage() calls (one per folio)
    reservation_failures: int = 0
    blocks_claimed: int = 0        # 0 -> 1 transitions
    cmo_pages: int = 0             # tag pages whose cache lines were maintained
    unbalanced_releases: int = 0   # frees of tagged pages whose block held no reservation
    reserved_pages: int = 0        # tag pages in reserved blocks, now
    reserved_peak: int = 0
    latency: list[np.ndarray] = field(default_factory=list)   # modelled ns, per call
    claimed: list[np.ndarray] = field(default_factory=list)   # per call: claimed a block
    dropped: list[np.ndarray] = field(default_factory=list)   # per call: pages dropped


class TagStorage:
    """Reference-counted tag blocks, and the hooks that reserve and release them.

    Each reserve_tag_storage() call (one folio) is charged for what it does, from the cost
    table: a refcount lookup per tag block it touches; for each block it claims, every tag
    page whose state changes, cache maintenance over every tag page of the block, every stored
    page dropped (counted as the backend's cached pages before less after, not as the backend
    reports it) and every page it declares copied. ``observer`` (the checker) hears of every
    claim before and after the backend's part.
    """

    def __init__(self, layout: MachineLayout, cleancache: Cleancache, costs: CostTable
                 ) -> None:
        self.layout = layout
        self.cleancache = cleancache
        self.backend: CleancacheBackend | None = cleancache.backend
        self.costs = costs
        self.observer = None
        self.refs = np.zeros(layout.nr_tag_blocks, np.int32)
        self.stats = TagStorageStats()

    # -- reserve / free --------------------------------------------------------------------

    def reserve_tag_storage(self, pfns: np.ndarray, order: int = 0) -> None:
        """Reserve the tag blocks of ``pfns``: one call per folio of ``1 << order`` pages."""
        if not len(pfns):
            return
        layout, st, c = self.layout, self.stats, self.costs
        blocks = layout.pfn_to_block[pfns - layout.pfn_base]
        if (blocks < 0).any():
            raise ValueError("tagged allocation on a PFN that no tag region covers")
        per_call = 1 << order
        ncalls = -(-len(pfns) // per_call)
        if per_call == 1:
            lookups = np.ones(ncalls, np.int64)
        else:
            call = np.arange(len(pfns)) // per_call
            pairs = np.unique(call * layout.nr_tag_blocks + blocks)
            lookups = np.bincount(pairs // layout.nr_tag_blocks, minlength=ncalls)
        latency = lookups * c.tag_lookup
        claimed = np.zeros(ncalls, bool)
        dropped = np.zeros(ncalls, np.int32)
        uniq, first = np.unique(blocks, return_index=True)
        new = self.refs[uniq] == 0
        for b, pos in zip(uniq[new].tolist(), first[new].tolist(), strict=True):
            call = pos // per_call
            claimed[call] = True
            nr_tp = int(layout.block_tag_pages[b])
            if self.backend is not None:
                d, changed, copied = self._claim(b)
                dropped[call] += d
                latency[call] += (changed * c.tag_page_claim + nr_tp * c.cmo_page
                                  + d * c.cleancache_drop + copied * c.page_copy)
                st.cmo_pages += nr_tp
            st.blocks_claimed += 1
            st.reserved_pages += nr_tp
        np.add.at(self.refs, blocks, 1)
        st.reserved_peak = max(st.reserved_peak, st.reserved_pages)
        st.reservations += ncalls
        st.latency.append(latency)
        st.claimed.append(claimed)
        st.dropped.append(dropped)

    def _claim(self, block: int) -> tuple[int, int, int]:
        """The backend gives ``block`` up for tags: (pages dropped, tag pages whose state
        changed, pages copied), measured around its reserve_block()."""
        backend, obs = self.backend, self.observer
        pages = self.layout.block_tag_pages_range(block)
        use = np.array(backend.tag_page_use(pages))
        before = backend.cached_pages
        if obs is not None:
            obs.reserve_begin(block)
        w = backend.reserve_block(block)
        if obs is not None:
            obs.reserve_end(block, w)
        dropped = before - backend.cached_pages
        changed = int(np.count_nonzero(np.asarray(backend.tag_page_use(pages)) != use))
        on_block = int(np.count_nonzero(use == USE_CACHE))
        self.cleancache.account_reserve(dropped, max(0, dropped - on_block))
        self.stats.reservation_failures += int(w.failed)
        return dropped, changed, w.copied

    def free_tag_storage(self, pfns: np.ndarray) -> None:
        """Tagged pages freed: drop their references; release blocks that reach zero.

        A free under a block with no reference left (a hook that did not reserve) is counted
        in ``unbalanced_releases`` and leaves the count at zero; the checker counts the breach
        where the tags were written.
        """
        if not len(pfns):
            return
        layout = self.layout
        blocks = layout.pfn_to_block[pfns - layout.pfn_base]
        np.subtract.at(self.refs, blocks, 1)
        uniq = np.unique(blocks)
        under = uniq[self.refs[uniq] < 0]
        if len(under):
            self.stats.unbalanced_releases += int(-self.refs[under].sum())
            self.refs[under] = 0
            uniq = uniq[~np.isin(uniq, under)]
        for b in uniq[self.refs[uniq] == 0].tolist():
            nr_tp = int(layout.block_tag_pages[b])
            if self.backend is not None:
                self.backend.release_block(b)
                self.stats.cmo_pages += nr_tp
            self.stats.reserved_pages -= nr_tp

    # -- the arch hooks --------------------------------------------------------------------

    def set_ptes_at(self, pfns: np.ndarray, order: int = 0) -> None:
        """PROT_MTE pages get mapped: reserve, then mte_sync_tags() clears their tags."""
        self.reserve_tag_storage(pfns, order)

    def copy_highpage(self, to_pfns: np.ndarray, from_pfns: np.ndarray) -> None:
        """copy_page() then mte_copy_page_tags(): the destination needs tag storage first."""
        assert len(to_pfns) == len(from_pfns)
        self.reserve_tag_storage(to_pfns, 0)

    def arch_swap_restore(self, pfns: np.ndarray) -> None:
        """Swap-in of tagged pages: reserve, then mte_restore_tags() from the saved copy."""
        self.reserve_tag_storage(pfns, 0)
