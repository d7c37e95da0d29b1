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
never sleeps; the checker (invariants.py) counts any that does.

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

from tagcache.cleancache.backend import CleancacheBackend
from tagcache.cleancache.frontend import Cleancache
from tagcache.costs import CostTable
from tagcache.hw.layout import MachineLayout


@dataclass
class TagStorageStats:
    reservations: int = 0          # reserve_tag_storage() calls
    reservation_failures: int = 0
    blocks_claimed: int = 0        # 0 -> 1 transitions
    cmo_pages: int = 0             # tag pages whose cache lines were maintained
    reserved_pages: int = 0        # tag pages in reserved blocks, now
    reserved_peak: int = 0
    work: list[np.ndarray] = field(default_factory=list)      # pages dropped, per call
    latency: list[np.ndarray] = field(default_factory=list)   # modelled ns, per call


class TagStorage:
    """Reference-counted tag blocks, and the hooks that reserve and release them."""

    def __init__(self, layout: MachineLayout, cleancache: Cleancache, costs: CostTable,
                 checker=None) -> None:
        self.layout = layout
        self.cleancache = cleancache
        self.backend: CleancacheBackend | None = cleancache.backend
        self.costs = costs
        self.checker = checker
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
        work = np.zeros(ncalls, np.int64)
        latency = np.zeros(ncalls, np.float64)
        uniq, first = np.unique(blocks, return_index=True)
        new = self.refs[uniq] == 0
        for b, pos in zip(uniq[new].tolist(), first[new].tolist(), strict=True):
            call = pos // per_call
            nr_tp = int(layout.block_tag_pages[b])
            if self.backend is not None:
                bound = self.backend.stored_pages_bound(b) if self.checker else 0
                w = self.backend.reserve_block(b)
                self.cleancache.account_reserve(w)
                if self.checker is not None:
                    self.checker.on_reserve(b, w, bound)
                st.reservation_failures += int(w.failed)
                work[call] += w.dropped
                latency[call] += (nr_tp * (c.tag_page_claim + c.cmo_page)
                                  + w.folios * c.cleancache_drop
                                  + w.copied * c.migrate_page)
                st.cmo_pages += nr_tp
            st.blocks_claimed += 1
            st.reserved_pages += nr_tp
        np.add.at(self.refs, blocks, 1)
        st.reserved_peak = max(st.reserved_peak, st.reserved_pages)
        st.reservations += ncalls
        st.work.append(work)
        st.latency.append(latency)
        if self.checker is not None:
            self.checker.on_tags_written(blocks, self)

    def free_tag_storage(self, pfns: np.ndarray) -> None:
        """Tagged pages freed: drop their references; release blocks that reach zero."""
        if not len(pfns):
            return
        layout = self.layout
        blocks = layout.pfn_to_block[pfns - layout.pfn_base]
        np.subtract.at(self.refs, blocks, 1)
        uniq = np.unique(blocks)
        if (self.refs[uniq] < 0).any():
            raise AssertionError("tag block reference count went negative")
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
