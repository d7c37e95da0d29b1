"""Page frames and the page allocator for anonymous memory (the memmap as arrays).

``free[pfn - pfn_base]`` says whether a data page frame is free, ``tagged[...]`` whether the
frame holds a PROT_MTE page. Tag-storage frames are never free here: in the cleancache design
they belong to the tag-storage backend, so a tagged (or any) allocation can never be given one.
A tagged allocation must also come from a range that a tag region covers; an untagged one
takes frames no tag region covers first and taggable frames only when nothing else is free
(the kernel keeps taggable memory for tagged use).

An allocation of order N hands out naturally aligned, contiguous, wholly free blocks of
``1 << N`` frames, as the buddy allocator does: a folio of order N is one such block, so it lies
under as few tag blocks as the layout allows.

Where a block lands decides which tag block it needs, so placement is a policy:

* ``sequential``: lowest free blocks first, as a freshly booted buddy allocator hands them out.
* ``random``: free blocks from random naturally aligned chunks of ``chunk_pages`` (or of the
  block, if larger), as from a long-running, fragmented buddy allocator (each chunk is one free
  buddy block).
* ``pack``: tagged allocations go first to blocks whose tag block is already reserved, and
  untagged ones avoid those blocks (XNU's vm_mteinfo steers tagged allocations to active tag
  pages the same way).

Simplification: page-cache folios are charged (mm/filemap.py) but not placed; only anonymous
pages occupy frames, and their count lowers the page cache's share of memory.
"""

from __future__ import annotations

import numpy as np

from tagcache.hw.layout import MachineLayout

ALLOC_POLICIES = ("sequential", "random", "pack")


class OutOfMemory(Exception):
    """No frames left for an anonymous allocation, even after reclaiming the page cache."""


class PageAllocator:
    def __init__(self, layout: MachineLayout, policy: str = "random", chunk_pages: int = 16,
                 seed: int = 0) -> None:
        if policy not in ALLOC_POLICIES:
            raise ValueError(f"unknown allocation policy {policy!r}; choose from {ALLOC_POLICIES}")
        self.layout = layout
        self.policy = policy
        self.chunk_pages = max(1, chunk_pages)
        self.rng = np.random.default_rng(seed)
        self.free = layout.data_pfn_mask.copy()
        self.nr_free = int(self.free.sum())
        self.tagged = np.zeros(layout.nr_pfns, bool)
        self.block_refs: np.ndarray | None = None     # set by the machine: mte.TagStorage.refs

    def alloc(self, n: int, *, tagged: bool, order: int = 0) -> np.ndarray:
        """Take ``n`` free frames as ``n >> order`` naturally aligned, contiguous blocks of
        ``1 << order`` frames; return their PFNs, block after block, in allocation order.

        Tagged frames come from taggable memory only; untagged ones from untaggable memory
        first. Raises :class:`OutOfMemory` (taking nothing) when not enough blocks are free.
        """
        size = 1 << order
        if n % size:
            raise ValueError(f"{n} pages is not a whole number of order-{order} blocks")
        if n <= 0:
            return np.zeros(0, np.int64)
        want = n >> order
        layout = self.layout
        if tagged:
            starts = self._free_blocks(self.free & layout.taggable_mask, size)
            self._check(len(starts), want, order, tagged)
            start = self._place(starts, want, True, size)
        else:
            # Blocks no tag region covers first; then the rest (taggable memory, and blocks
            # straddling the edge of a tagged range).
            first = self._free_blocks(self.free & ~layout.taggable_mask, size)
            if len(first) >= want:
                start = self._place(first, want, False, size)
            else:
                starts = self._free_blocks(self.free, size)
                self._check(len(starts), want, order, tagged)
                rest = np.setdiff1d(starts, first, assume_unique=True) if len(first) else starts
                start = np.concatenate([self._place(first, len(first), False, size),
                                        self._place(rest, want - len(first), False, size)])
        pick = (start[:, None] + np.arange(size)).ravel()
        self.free[pick] = False
        self.tagged[pick] = tagged
        self.nr_free -= n
        return pick.astype(np.int64) + layout.pfn_base

    @staticmethod
    def _check(free_blocks: int, want: int, order: int, tagged: bool) -> None:
        if free_blocks < want:
            raise OutOfMemory(f"{want} order-{order} blocks wanted, {free_blocks} free"
                              + (" in tagged memory" if tagged else ""))

    def _free_blocks(self, mask: np.ndarray, size: int) -> np.ndarray:
        """Indexes of the first frame of every naturally aligned block of ``size`` frames
        wholly inside ``mask`` (alignment is of the PFN, not of the index)."""
        if size == 1:
            return np.flatnonzero(mask)
        off = (-self.layout.pfn_base) % size
        k = (len(mask) - off) // size
        if k <= 0:
            return np.zeros(0, np.int64)
        whole = mask[off:off + k * size].reshape(k, size).all(axis=1)
        return off + np.flatnonzero(whole) * size

    def _place(self, starts: np.ndarray, k: int, tagged: bool, size: int) -> np.ndarray:
        """Choose ``k`` of the free blocks starting at ``starts`` by the placement policy."""
        if self.policy == "sequential":
            return starts[:k]
        if self.policy == "random":
            return self._random_chunks(starts, k)
        blocks = self.layout.pfn_to_block[starts[:, None] + np.arange(size)]
        reserved = ((self.block_refs[blocks] > 0) & (blocks >= 0)).any(axis=1)
        if tagged:
            return np.concatenate([starts[reserved], starts[~reserved]])[:k]
        return np.concatenate([self._random_chunks(starts[~reserved], min(
            k, int((~reserved).sum()))), starts[reserved]])[:k]

    def _random_chunks(self, idx: np.ndarray, n: int) -> np.ndarray:
        """The first ``n`` of ``idx`` (ascending) taken chunk by chunk, chunks of
        ``chunk_pages`` in random order, each chunk's in ascending order."""
        if n <= 0:
            return idx[:0]
        chunk = idx // self.chunk_pages
        first = np.flatnonzero(np.diff(chunk)) + 1
        begin = np.concatenate([[0], first])
        count = np.diff(np.concatenate([begin, [len(idx)]]))
        rank = self.rng.permutation(len(begin))          # chunk j has rank rank[j]
        by_rank = np.empty_like(rank)
        by_rank[rank] = np.arange(len(rank))
        cum = np.cumsum(count[by_rank])
        k = int(np.searchsorted(cum, n)) + 1             # chunks needed
        sel = by_rank[:k]
        cnt = count[sel]
        offs = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        return idx[np.repeat(begin[sel], cnt) + offs][:n]

    def free_pfns(self, pfns: np.ndarray) -> None:
        i = np.asarray(pfns, np.int64) - self.layout.pfn_base
        if self.free[i].any():
            raise AssertionError("double free of a page frame")
        self.free[i] = True
        self.tagged[i] = False
        self.nr_free += len(i)
