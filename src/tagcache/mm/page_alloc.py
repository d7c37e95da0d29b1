"""Page frames and the page allocator for anonymous memory (the memmap as arrays).

``free[pfn - pfn_base]`` says whether a data page frame is free. Tag-storage frames are never
free here: in the cleancache design they belong to the tag-storage backend, so a tagged (or
any) allocation can never be given one. A tagged allocation must also come from a range that
a tag region covers.

Where a page lands decides which tag block it needs, so placement is a policy:

* ``sequential``: lowest free PFNs first, as a freshly booted buddy allocator hands them out.
* ``random``: free pages from random naturally aligned chunks of ``chunk_pages``, as from a
  long-running, fragmented buddy allocator (each chunk is one free buddy block).
* ``pack``: tagged allocations go first to pages whose tag block is already reserved, and
  untagged ones avoid those pages (XNU's vm_mteinfo steers tagged allocations to active tag
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

    def alloc(self, n: int, *, tagged: bool) -> np.ndarray:
        """Take ``n`` free frames; return their PFNs in allocation order."""
        if n <= 0:
            return np.zeros(0, np.int64)
        mask = self.free & self.layout.taggable_mask if tagged else self.free
        idx = np.flatnonzero(mask)
        if len(idx) < n:
            raise OutOfMemory(f"{n} pages wanted, {len(idx)} free"
                              + (" in tagged memory" if tagged else ""))
        if self.policy == "sequential":
            pick = idx[:n]
        elif self.policy == "random":
            pick = self._random_chunks(idx, n)
        else:
            reserved = self.block_refs[self.layout.pfn_to_block[idx]] > 0
            reserved &= self.layout.pfn_to_block[idx] >= 0
            if tagged:
                pick = np.concatenate([idx[reserved], idx[~reserved]])[:n]
            else:
                pick = np.concatenate([self._random_chunks(idx[~reserved], min(
                    n, int((~reserved).sum()))), idx[reserved]])[:n]
        self.free[pick] = False
        self.tagged[pick] = tagged
        self.nr_free -= n
        return pick.astype(np.int64) + self.layout.pfn_base

    def _random_chunks(self, idx: np.ndarray, n: int) -> np.ndarray:
        if n <= 0:
            return idx[:0]
        chunk = idx // self.chunk_pages
        uniq, inv = np.unique(chunk, return_inverse=True)
        rank = self.rng.permutation(len(uniq))[inv]
        order = np.lexsort((idx, rank))
        return idx[order[:n]]

    def free_pfns(self, pfns: np.ndarray) -> None:
        i = np.asarray(pfns, np.int64) - self.layout.pfn_base
        if self.free[i].any():
            raise AssertionError("double free of a page frame")
        self.free[i] = True
        self.tagged[i] = False
        self.nr_free += len(i)
