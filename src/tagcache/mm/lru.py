"""The two file LRU lists, as doubly linked lists threaded through arrays.

Like the kernel's lruvec (include/linux/mmzone.h), there is an inactive and an active list
of folios; only the head page of a folio is linked. Links are two int32 arrays indexed by
page-cache slot; the two list heads are sentinel entries past the last slot::

    LRU_INACTIVE_FILE sentinel <-> newest folio <-> ... <-> oldest folio (tail, reclaimed first)

``nr_pages[lru]`` counts pages, not folios, as lruvec->lru_zone_size does.
"""

from __future__ import annotations

import numpy as np

LRU_INACTIVE_FILE = 0
LRU_ACTIVE_FILE = 1


class LruLists:
    """Inactive and active file lists over ``nr_slots`` slots."""

    def __init__(self, nr_slots: int) -> None:
        n = nr_slots + 2
        self.prev = np.full(n, -1, dtype=np.int32)
        self.next = np.full(n, -1, dtype=np.int32)
        self.heads = (nr_slots + LRU_INACTIVE_FILE, nr_slots + LRU_ACTIVE_FILE)
        for h in self.heads:
            self.prev[h] = self.next[h] = h
        self.nr_pages = [0, 0]

    def add(self, lru: int, head_slot: int, nr: int) -> None:
        """lruvec_add_folio(): link at the head (most recent end) of ``lru``."""
        h = self.heads[lru]
        first = int(self.next[h])
        self.next[head_slot] = first
        self.prev[head_slot] = h
        self.prev[first] = head_slot
        self.next[h] = head_slot
        self.nr_pages[lru] += nr

    def add_tail(self, lru: int, head_slot: int, nr: int) -> None:
        """lruvec_add_folio_tail(): link at the tail, to be scanned next."""
        h = self.heads[lru]
        last = int(self.prev[h])
        self.prev[head_slot] = last
        self.next[head_slot] = h
        self.next[last] = head_slot
        self.prev[h] = head_slot
        self.nr_pages[lru] += nr

    def delete(self, lru: int, head_slot: int, nr: int) -> None:
        """lruvec_del_folio()."""
        p, n = int(self.prev[head_slot]), int(self.next[head_slot])
        self.next[p] = n
        self.prev[n] = p
        self.prev[head_slot] = self.next[head_slot] = -1
        self.nr_pages[lru] -= nr

    def tail(self, lru: int) -> int:
        """Oldest folio on ``lru``, or -1 when empty."""
        h = self.heads[lru]
        t = int(self.prev[h])
        return -1 if t == h else t

    def walk(self, lru: int):
        """Yield head slots from the newest to the oldest (for the verifier and tests)."""
        h = self.heads[lru]
        s = int(self.next[h])
        while s != h:
            yield s
            s = int(self.next[s])
