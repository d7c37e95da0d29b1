"""Tagged anonymous memory of processes: PROT_MTE mappings, fork, CoW, swap, migration, exit.

Per process, the PFNs it maps (a numpy array) and the number of its pages out on swap;
``mapcount[pfn]`` counts the processes sharing a frame after fork. Every page here is tagged:
it reserves tag storage through the MTE hooks (mte.py) when it gets a frame, and releases it
when the frame is freed. Untagged anonymous memory is a fixed baseline placed at start-up.

Which pages an operation touches: CoW, swap-out and migration take the process's pages from
the end of its array (most recently mapped first for CoW; the kernel's choice depends on
access patterns the generator does not model).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tagcache.mm.page_alloc import PageAllocator
from tagcache.mte import TagStorage


class TaggedAnon:
    def __init__(self, alloc: PageAllocator, tags: TagStorage,
                 make_room: Callable[[int], None], folio_order: int = 0) -> None:
        self.alloc = alloc
        self.tags = tags
        self.make_room = make_room            # reclaim page cache so n frames can be taken
        self.folio_order = folio_order
        self.procs: dict[int, np.ndarray] = {}
        self.swapped: dict[int, int] = {}
        self.mapcount = np.zeros(alloc.layout.nr_pfns, np.uint16)
        self.nr_pages = 0                      # frames held (shared frames once)
        self.peak_pages = 0
        self.copies = 0                        # copy_highpage() calls

    def _get(self, n: int) -> np.ndarray:
        self.make_room(n)
        pfns = self.alloc.alloc(n, tagged=True)
        self.mapcount[pfns - self.alloc.layout.pfn_base] = 1
        self.nr_pages += n
        self.peak_pages = max(self.peak_pages, self.nr_pages)
        return pfns

    def _put(self, pfns: np.ndarray) -> None:
        """Unmap ``pfns`` from one process; free the frames nobody maps any more."""
        i = pfns - self.alloc.layout.pfn_base
        np.subtract.at(self.mapcount, i, 1)
        gone = pfns[self.mapcount[i] == 0]
        gone = np.unique(gone)
        if len(gone):
            self._release(gone)

    def mte_map(self, pid: int, n: int) -> None:
        """mmap(PROT_MTE) and first touch: frames allocated, set_ptes_at() reserves."""
        pfns = self._get(n)
        self.tags.set_ptes_at(pfns, self.folio_order)
        self.procs[pid] = np.concatenate([self.procs.get(pid, pfns[:0]), pfns])

    def fork(self, parent: int, child: int) -> None:
        """dup_mmap(): the child shares every frame copy-on-write; no tag work yet."""
        pfns = self.procs.get(parent)
        if pfns is None or not len(pfns):
            return
        np.add.at(self.mapcount, pfns - self.alloc.layout.pfn_base, 1)
        self.procs[child] = np.concatenate([self.procs.get(child, pfns[:0]), pfns])

    def _copy_to_new(self, pfns: np.ndarray, idx: np.ndarray) -> None:
        """Move ``pfns[idx]`` to fresh frames with copy_highpage() (data and tags), in place,
        and drop this process's reference to the old frames."""
        old = pfns[idx]
        new = self._get(len(old))
        self.tags.copy_highpage(new, old)
        self.copies += len(old)
        pfns[idx] = new
        self._put(old)

    def cow(self, pid: int, n: int) -> None:
        """Write faults on shared pages: new frame, copy_highpage() (data and tags)."""
        pfns = self.procs.get(pid)
        if pfns is None:
            return
        base = self.alloc.layout.pfn_base
        shared = np.flatnonzero(self.mapcount[pfns - base] > 1)[::-1][:n]
        if not len(shared):
            return
        self._copy_to_new(pfns, shared)

    def swap_out(self, pid: int, n: int) -> None:
        """Reclaim swaps out private pages: mte_save_tags(), then the frame is freed."""
        pfns = self.procs.get(pid)
        if pfns is None:
            return
        base = self.alloc.layout.pfn_base
        private = np.flatnonzero(self.mapcount[pfns - base] == 1)[::-1][:n]
        if not len(private):
            return
        keep = np.ones(len(pfns), bool)
        keep[private] = False
        self._put(pfns[private])
        self.procs[pid] = pfns[keep]
        self.swapped[pid] = self.swapped.get(pid, 0) + len(private)

    def swap_in(self, pid: int, n: int) -> None:
        """Faults on swapped pages: new frames, arch_swap_restore() reserves and restores."""
        n = min(n, self.swapped.get(pid, 0))
        if n <= 0:
            return
        pfns = self._get(n)
        self.tags.arch_swap_restore(pfns)
        self.swapped[pid] -= n
        self.procs[pid] = np.concatenate([self.procs[pid], pfns])

    def migrate(self, pid: int, n: int) -> None:
        """Compaction moves private pages: new frame, copy_highpage(), old frame freed."""
        pfns = self.procs.get(pid)
        if pfns is None:
            return
        base = self.alloc.layout.pfn_base
        private = np.flatnonzero(self.mapcount[pfns - base] == 1)[:n]
        if not len(private):
            return
        self._copy_to_new(pfns, private)

    def tag_pfns(self, pfn: int, order: int) -> None:
        """A captured user page allocation at a real PFN, treated as PROT_MTE: the frame is
        taken as it is (the capture chose it) and set_ptes_at() reserves its tag block."""
        base = self.alloc.layout.pfn_base
        pfns = np.arange(pfn, pfn + (1 << order), dtype=np.int64)
        i = pfns - base
        if i[0] < 0 or i[-1] >= self.alloc.layout.nr_pfns or not self.alloc.layout.taggable_mask[
                i].all():
            raise ValueError(f"captured PFN {pfn:#x} is outside the modelled tagged memory")
        fresh = pfns[self.mapcount[i] == 0]
        if not len(fresh):
            return
        fi = fresh - base
        self.make_room(len(fresh))
        self.alloc.nr_free -= int(np.count_nonzero(self.alloc.free[fi]))
        self.alloc.free[fi] = False
        self.alloc.tagged[fi] = True
        self.mapcount[fi] = 1
        self.nr_pages += len(fresh)
        self.peak_pages = max(self.peak_pages, self.nr_pages)
        self.tags.set_ptes_at(fresh, 0)

    def untag_pfns(self, pfn: int, order: int) -> None:
        """A captured page free: a frame tagged by :meth:`tag_pfns` is released."""
        base = self.alloc.layout.pfn_base
        i = np.arange(pfn, pfn + (1 << order), dtype=np.int64) - base
        i = i[(i >= 0) & (i < self.alloc.layout.nr_pfns)]
        i = i[self.alloc.tagged[i] & (self.mapcount[i] == 1)]
        if len(i):
            self.mapcount[i] = 0
            self._release(i + base)

    def _release(self, pfns: np.ndarray) -> None:
        self.tags.free_tag_storage(pfns)
        self.alloc.free_pfns(pfns)
        self.nr_pages -= len(pfns)

    def exit(self, pid: int) -> None:
        """exit_mmap(): every mapping goes; swap slots are freed (mte_invalidate_tags)."""
        pfns = self.procs.pop(pid, None)
        self.swapped.pop(pid, None)
        if pfns is not None and len(pfns):
            self._put(pfns)
