"""Tiny machines for the tests: a page cache, the cleancache frontend, the tag-storage backend
and the MTE reservation code wired the way replay.Machine does (one shared invariant checker),
without the allocator, so a test can drive each hook by hand."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tagcache.cleancache.backends.tagstore import TagStorageBackend
from tagcache.cleancache.frontend import Cleancache
from tagcache.costs import CostTable
from tagcache.hw.layout import MachineLayout, simple_layout
from tagcache.invariants import Checker
from tagcache.mm.filemap import PageCache
from tagcache.mm.lru import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE
from tagcache.mm.page_flags import PG_ACTIVE
from tagcache.mte import TagStorage
from tagcache.workloads.events import FileTable

MIB = 1 << 20
KIB = 1 << 10


@dataclass
class System:
    """A page cache in front of a cleancache frontend, a tag-storage backend and the MTE
    reservation code, all sharing one invariant checker."""

    layout: MachineLayout
    files: FileTable
    checker: Checker | None
    backend: TagStorageBackend | None
    cc: Cleancache
    tags: TagStorage
    pc: PageCache
    limit: int

    @property
    def S(self) -> int:
        """First data PFN of the (single) tagged range."""
        return self.layout.regions[0].tagged_pfn

    def slot(self, f: int, index: int) -> int:
        """Page-cache slot (the cleancache key) of page ``index`` of file ``f``."""
        return int(self.pc.base[f]) + index

    def evict(self, f: int, index: int) -> None:
        """Reclaim the folio caching page ``index`` of file ``f``, as shrink_inactive_list()
        does once it decided to reclaim it: off its LRU list, then __remove_mapping()."""
        pc = self.pc
        h = pc.folio_at(f, index)
        assert h >= 0, f"page {index} of file {f} is not cached"
        nr = 1 << int(pc.order[h])
        lru = LRU_ACTIVE_FILE if pc.flags[h] & PG_ACTIVE else LRU_INACTIVE_FILE
        pc.lru.delete(lru, h, nr)
        pc.evict_folio(h)

    def map_tagged(self, pfns, order: int = 0) -> None:
        """set_ptes_at() on ``pfns``, then their tags are written, as the mm side does."""
        pfns = np.asarray(pfns, np.int64)
        self.tags.set_ptes_at(pfns, order)
        if self.checker is not None:
            self.checker.tags_written(pfns)

    def unmap_tagged(self, pfns) -> None:
        """The tagged pages ``pfns`` are freed."""
        pfns = np.asarray(pfns, np.int64)
        self.tags.free_tag_storage(pfns)
        if self.checker is not None:
            self.checker.tags_freed(pfns)

    def violations(self) -> dict[str, int]:
        assert self.checker is not None
        return dict(self.checker.counts)

    def walk(self, tagged_pfns=()) -> dict[str, int]:
        """Full end-of-run walk, told which data PFNs are tagged now (the memmap's truth)."""
        assert self.checker is not None
        memmap = np.zeros(self.layout.nr_pfns, bool)
        memmap[np.asarray(tagged_pfns, np.int64) - self.layout.pfn_base] = True
        self.checker.walk(self.tags, memmap)
        return dict(self.checker.counts)


def build_system(files: FileTable, *, layout: MachineLayout | None = None, limit: int = 4096,
                 backend: bool = True, policy: str = "whole", check: bool = True,
                 ra_pages: int = 32, max_folio_order: int = 4, pc_policy: str = "kernel",
                 costs: CostTable | None = None,
                 exec_vmas: dict[int, list[tuple[int, int]]] | None = None,
                 cow_vmas: dict[int, list[tuple[int, int]]] | None = None) -> System:
    layout = layout if layout is not None else simple_layout(64 * MIB)
    nr_slots = PageCache.slots_needed(files)
    checker = Checker(nr_slots) if check else None
    be = TagStorageBackend(layout, nr_slots, policy) if backend else None
    cc = Cleancache(be)
    tags = TagStorage(layout, cc, costs or CostTable())
    holder: dict[str, System] = {}
    pc = PageCache(files, cc, lambda: holder["s"].limit, ra_pages=ra_pages,
                   max_folio_order=max_folio_order, policy=pc_policy, exec_vmas=exec_vmas,
                   cow_vmas=cow_vmas)
    if checker is not None:
        checker.attach(pagecache=pc, cleancache=cc, tags=tags)
    s = System(layout, files, checker, be, cc, tags, pc, limit)
    holder["s"] = s
    return s
