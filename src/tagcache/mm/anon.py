"""Anonymous memory of processes, tagged (PROT_MTE) or not: map, fork, CoW, swap, migrate, exit.

Per process, the PFNs it maps (a numpy array, its first pages first) and the pages it has out
on swap (how many, and how many of them PROT_MTE); ``mapcount[pfn]`` counts the processes
sharing a frame after fork. Whether a frame holds a PROT_MTE page is the allocator's
``tagged`` bit. Only PROT_MTE pages go through the MTE hooks (mte.py): set_ptes_at() when
mapped, copy_highpage() when copied on CoW or migration, arch_swap_restore() on swap-in, and
free_tag_storage() when the frame is freed. Untagged pages move between frames without them. A
CoW copy, swap-in or migration target is PROT_MTE exactly when the page it replaces was.

Every allocation is of folios of ``folio_order`` (naturally aligned, contiguous: see
page_alloc.py); a request that is not a whole number of folios takes its tail as order-0 pages,
as the kernel falls back to small folios where a large one does not fit.

Which pages an operation touches: CoW, swap-out and migration take the process's pages from
the end of its array (most recently mapped first for CoW; the kernel's choice depends on
access patterns the generator does not model); swap-in brings PROT_MTE pages back first.

Observation: when ``observer`` is set (the invariant checker; the engine wires it, this module
never imports it), ``observer.tags_written(pfns)`` is called right after each hook that writes
tags returns, with the PROT_MTE frames whose tags it wrote, and ``observer.tags_freed(pfns)``
right after free_tag_storage(). The calls live here, on the generic mm side, so that a hook
that does the wrong thing cannot hide them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tagcache.mm.page_alloc import PageAllocator
from tagcache.mte import TagStorage


class AnonMemory:
    def __init__(self, alloc: PageAllocator, tags: TagStorage,
                 make_room: Callable[[int], None], folio_order: int = 0,
                 observer: Any = None) -> None:
        self.alloc = alloc
        self.tags = tags
        self.make_room = make_room            # reclaim page cache so n frames can be taken
        self.folio_order = folio_order
        self.observer = observer              # tags_written(pfns), tags_freed(pfns)
        self.procs: dict[int, np.ndarray] = {}
        self.swapped: dict[int, int] = {}          # pages out on swap, per process
        self.swapped_tagged: dict[int, int] = {}   # of which PROT_MTE
        self.mapcount = np.zeros(alloc.layout.nr_pfns, np.uint16)
        self.nr_pages = 0                      # frames held (shared frames once)
        self.peak_pages = 0
        self.nr_tagged = 0                     # PROT_MTE frames held
        self.peak_tagged = 0
        self.copies = 0                        # copy_highpage() calls (PROT_MTE pages copied)

    # -- frames ----------------------------------------------------------------------------

    def _alloc(self, n: int, tagged: bool) -> np.ndarray:
        """``n`` frames as folios of ``folio_order``, the tail as order-0 pages."""
        size = 1 << self.folio_order
        whole = n - n % size
        pfns = self.alloc.alloc(whole, tagged=tagged, order=self.folio_order)
        if whole < n:
            try:
                tail = self.alloc.alloc(n - whole, tagged=tagged)
            except BaseException:
                self.alloc.free_pfns(pfns)
                raise
            pfns = np.concatenate([pfns, tail])
        return pfns

    def _get(self, n_tagged: int, n_untagged: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames for ``n_tagged`` PROT_MTE pages and ``n_untagged`` others, reclaiming the
        page cache first; all or nothing (OutOfMemory)."""
        self.make_room(n_tagged + n_untagged)
        tagged = self._alloc(n_tagged, True)
        try:
            untagged = self._alloc(n_untagged, False)
        except BaseException:
            self.alloc.free_pfns(tagged)
            raise
        base = self.alloc.layout.pfn_base
        self.mapcount[tagged - base] = 1
        self.mapcount[untagged - base] = 1
        self.nr_pages += n_tagged + n_untagged
        self.peak_pages = max(self.peak_pages, self.nr_pages)
        self.nr_tagged += n_tagged
        self.peak_tagged = max(self.peak_tagged, self.nr_tagged)
        return tagged, untagged

    def _is_tagged(self, pfns: np.ndarray) -> np.ndarray:
        return self.alloc.tagged[pfns - self.alloc.layout.pfn_base]

    def _release(self, pfns: np.ndarray) -> None:
        """Free frames nobody maps any more; PROT_MTE ones release their tag storage."""
        tagged = pfns[self._is_tagged(pfns)]
        if len(tagged):
            self.tags.free_tag_storage(tagged)
            if self.observer is not None:
                self.observer.tags_freed(tagged)
        self.alloc.free_pfns(pfns)
        self.nr_pages -= len(pfns)
        self.nr_tagged -= len(tagged)

    def _put(self, pfns: np.ndarray) -> None:
        """Unmap ``pfns`` from one process; free the frames nobody maps any more."""
        i = pfns - self.alloc.layout.pfn_base
        np.subtract.at(self.mapcount, i, 1)
        gone = pfns[self.mapcount[i] == 0]
        gone = np.unique(gone)
        if len(gone):
            self._release(gone)

    def _set_ptes(self, pfns: np.ndarray) -> None:
        """set_ptes_at() for freshly allocated PROT_MTE frames (:meth:`_alloc` order: whole
        folios, then order-0 pages), one call per folio size."""
        if not len(pfns):
            return
        size = 1 << self.folio_order
        whole = len(pfns) - len(pfns) % size
        if whole:
            self.tags.set_ptes_at(pfns[:whole], self.folio_order)
        if whole < len(pfns):
            self.tags.set_ptes_at(pfns[whole:], 0)
        self._written(pfns)

    def _written(self, pfns: np.ndarray) -> None:
        if self.observer is not None and len(pfns):
            self.observer.tags_written(pfns)

    # -- operations ------------------------------------------------------------------------

    def mte_map(self, pid: int, n: int, nr_tagged: int | None = None) -> None:
        """mmap() and first touch of ``n`` pages, the first ``nr_tagged`` (default: all) with
        PROT_MTE: frames allocated, set_ptes_at() reserves for the PROT_MTE ones."""
        k = n if nr_tagged is None else max(0, min(n, nr_tagged))
        tagged, untagged = self._get(k, n - k)
        self._set_ptes(tagged)
        pfns = np.concatenate([tagged, untagged])
        self.procs[pid] = np.concatenate([self.procs.get(pid, pfns[:0]), pfns])

    def fork(self, parent: int, child: int) -> None:
        """dup_mmap(): the child shares every frame copy-on-write; no tag work yet."""
        pfns = self.procs.get(parent)
        if pfns is None or not len(pfns):
            return
        np.add.at(self.mapcount, pfns - self.alloc.layout.pfn_base, 1)
        self.procs[child] = np.concatenate([self.procs.get(child, pfns[:0]), pfns])

    def _copy_to_new(self, pfns: np.ndarray, idx: np.ndarray) -> None:
        """Move ``pfns[idx]`` to fresh frames, in place, each as tagged as the page it replaces
        (copy_highpage(), data and tags, for the PROT_MTE ones; a plain copy for the others),
        and drop this process's reference to the old frames."""
        old = pfns[idx]
        was = self._is_tagged(old)
        t_idx, u_idx = idx[was], idx[~was]
        new_t, new_u = self._get(len(t_idx), len(u_idx))
        if len(new_t):
            self.tags.copy_highpage(new_t, pfns[t_idx])
            self.copies += len(new_t)
            self._written(new_t)
        pfns[t_idx] = new_t
        pfns[u_idx] = new_u
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
        """Reclaim swaps out private pages: mte_save_tags() for PROT_MTE ones, then the frame
        is freed."""
        pfns = self.procs.get(pid)
        if pfns is None:
            return
        base = self.alloc.layout.pfn_base
        private = np.flatnonzero(self.mapcount[pfns - base] == 1)[::-1][:n]
        if not len(private):
            return
        keep = np.ones(len(pfns), bool)
        keep[private] = False
        out = pfns[private]
        nt = int(np.count_nonzero(self._is_tagged(out)))
        self._put(out)
        self.procs[pid] = pfns[keep]
        self.swapped[pid] = self.swapped.get(pid, 0) + len(private)
        self.swapped_tagged[pid] = self.swapped_tagged.get(pid, 0) + nt

    def swap_in(self, pid: int, n: int) -> None:
        """Faults on swapped pages: new frames; arch_swap_restore() reserves and restores the
        tags of the PROT_MTE ones (those come back first)."""
        n = min(n, self.swapped.get(pid, 0))
        if n <= 0:
            return
        k = min(n, self.swapped_tagged.get(pid, 0))
        tagged, untagged = self._get(k, n - k)
        if len(tagged):
            self.tags.arch_swap_restore(tagged)
            self._written(tagged)
        self.swapped[pid] -= n
        self.swapped_tagged[pid] -= k
        self.procs[pid] = np.concatenate([self.procs[pid], tagged, untagged])

    def migrate(self, pid: int, n: int) -> None:
        """Compaction moves private pages: new frame, copy_highpage() for PROT_MTE ones, old
        frame freed."""
        pfns = self.procs.get(pid)
        if pfns is None:
            return
        base = self.alloc.layout.pfn_base
        private = np.flatnonzero(self.mapcount[pfns - base] == 1)[:n]
        if not len(private):
            return
        self._copy_to_new(pfns, private)

    def exit(self, pid: int) -> None:
        """exit_mmap(): every mapping goes; swap slots are freed (mte_invalidate_tags)."""
        pfns = self.procs.pop(pid, None)
        self.swapped.pop(pid, None)
        self.swapped_tagged.pop(pid, None)
        if pfns is not None and len(pfns):
            self._put(pfns)

    # -- captured kmem events --------------------------------------------------------------

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
        self.nr_tagged += len(fresh)
        self.peak_tagged = max(self.peak_tagged, self.nr_tagged)
        self.tags.set_ptes_at(fresh, 0)
        self._written(fresh)

    def untag_pfns(self, pfn: int, order: int) -> None:
        """A captured page free: a frame tagged by :meth:`tag_pfns` is released."""
        base = self.alloc.layout.pfn_base
        i = np.arange(pfn, pfn + (1 << order), dtype=np.int64) - base
        i = i[(i >= 0) & (i < self.alloc.layout.nr_pfns)]
        i = i[self.alloc.tagged[i] & (self.mapcount[i] == 1)]
        if len(i):
            self.mapcount[i] = 0
            self._release(i + base)
