"""The cleancache frontend (mm/cleancache.c): hooks called by the page cache, and counters.

Semantics are the kernel's historical ones, which the 2025 revival keeps for stores:

* **store** when reclaim evicts a folio: an up-to-date, clean folio is stored; anything else
  is invalidated, so no stale copy can outlive the page.
* **restore** before I/O when a folio is read in: all or nothing per folio, and exclusive, a
  hit removes the copy (the historical non-shared pool; the 2025 series keeps the copy).
* **invalidate** on write; on truncate, inode eviction and unmount the whole inode
  (truncate_inode_pages_range() ends in cleancache_invalidate_inode(); docs/semantics.md).

Counters, as in /sys/kernel/mm/cleancache, all in pages: ``stored``, ``skipped`` (offered but
not kept), ``restored``, ``missed`` (looked up, absent), ``invalidated``, ``reclaimed``
(dropped because tags needed the memory; the 2025 series calls this "recalled"), ``cached``
(now). Ours adds ``collateral`` (the part of ``reclaimed`` that sat on tag pages tags did not
need, dropped only because it shared a folio) and ``evicted`` (dropped by the backend to make
room for a newer store; the 2025 series counts this as "reclaimed").

With no backend the hooks return at once and count nothing, as the kernel's did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tagcache.cleancache.backend import CleancacheBackend


@dataclass
class CleancacheStats:
    stored: int = 0
    skipped: int = 0
    restored: int = 0
    missed: int = 0
    invalidated: int = 0
    reclaimed: int = 0
    collateral: int = 0


class Cleancache:
    """Frontend over at most one backend (``None``: cleancache disabled).

    ``observer`` (the invariant checker, wired by the engine) hears of every store, restore
    and invalidation after the backend has done it.
    """

    def __init__(self, backend: CleancacheBackend | None) -> None:
        self.backend = backend
        self.observer = None
        self.stats = CleancacheStats()

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    def store_folio(self, head: int, order: int, *, dirty: bool) -> None:
        """Reclaim is evicting the folio at ``head``; called with its final dirty state."""
        if self.backend is None:
            return
        nr = 1 << order
        if dirty:
            # An up-to-date page is stored, anything else is invalidated.
            self.invalidate_range(head, head + nr)
            return
        if (self.backend.locate(slice(head, head + nr)) >= 0).any():
            self.invalidate_range(head, head + nr)     # never keep two copies of a page
        if self.backend.store_folio(head, order):
            self.stats.stored += nr
            if self.observer is not None:
                self.observer.stored(head, nr)
        else:
            self.stats.skipped += nr

    def restore_folio(self, head: int, nr: int) -> bool:
        """A folio is being read in: restore it whole, or not at all (the kernel reads the
        whole folio when any page is missing). Copies of a folio that cannot be restored
        whole are invalidated, since the folio is read from disk. True if restored."""
        if self.backend is None:
            return False
        where = self.backend.locate(slice(head, head + nr))
        present = int(np.count_nonzero(where >= 0))
        if present < nr:
            if present:
                self.invalidate_range(head, head + nr)
            self.stats.missed += nr
            return False
        slots = self.backend.restore_range(head, head + nr)
        if self.observer is not None:
            self.observer.restored(slots)
        self.stats.restored += nr
        return True

    def invalidate_range(self, first: int, end: int) -> None:
        if self.backend is None:
            return
        self.stats.invalidated += self.backend.invalidate_range(first, end)
        if self.observer is not None:
            self.observer.invalidated(first, end)

    def account_reserve(self, dropped: int, collateral: int) -> None:
        """A tag claim dropped ``dropped`` stored pages (measured by the caller), of which
        ``collateral`` lay outside the claimed tag pages."""
        self.stats.reclaimed += dropped
        self.stats.collateral += collateral

    @property
    def cached(self) -> int:
        return 0 if self.backend is None else self.backend.cached_pages

    @property
    def evicted(self) -> int:
        return 0 if self.backend is None else self.backend.evicted
