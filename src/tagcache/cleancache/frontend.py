"""The cleancache frontend (mm/cleancache.c): hooks called by the page cache, and counters.

Semantics are the kernel's historical ones, which the 2025 revival keeps for stores:

* **store** when reclaim evicts a folio: an up-to-date, clean folio is stored; anything else
  is invalidated, so no stale copy can outlive the page.
* **restore** before I/O when a folio is read in: exclusive, a hit removes the copy (the
  historical non-shared pool; the 2025 series keeps the copy instead).
* **invalidate** on write, truncate, inode eviction and unmount.

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
from typing import TYPE_CHECKING

from tagcache.cleancache.backend import CleancacheBackend, ReserveWork

if TYPE_CHECKING:
    from tagcache.invariants import Checker


@dataclass
class CleancacheStats:
    stored: int = 0
    skipped: int = 0
    restored: int = 0
    missed: int = 0
    invalidated: int = 0
    reclaimed: int = 0
    collateral: int = 0
    evicted: int = 0


class Cleancache:
    """Frontend over at most one backend (``None``: cleancache disabled)."""

    def __init__(self, backend: CleancacheBackend | None, checker: Checker | None = None
                 ) -> None:
        self.backend = backend
        self.checker = checker
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
        self._store(head, order, nr)

    def _store(self, head: int, order: int, nr: int) -> None:
        if self.checker is not None:
            self.checker.on_store(head, nr)
        if self.backend.store_folio(head, order):
            self.stats.stored += nr
        else:
            self.stats.skipped += nr

    def restore_folio(self, head: int, nr: int) -> int:
        """A folio is being read in: take whatever pages the backend has; return the count."""
        if self.backend is None:
            return 0
        slots = self.backend.restore_range(head, head + nr)
        n = 0 if slots is None else len(slots)
        if n and self.checker is not None:
            self.checker.on_restore(slots)
        self.stats.restored += n
        self.stats.missed += nr - n
        return n

    def invalidate_range(self, first: int, end: int) -> None:
        if self.backend is None:
            return
        self.stats.invalidated += self.backend.invalidate_range(first, end)

    def account_reserve(self, work: ReserveWork) -> None:
        self.stats.reclaimed += work.dropped
        self.stats.collateral += work.collateral

    @property
    def cached(self) -> int:
        return 0 if self.backend is None else self.backend.cached_pages
