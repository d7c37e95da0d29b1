"""Workingset detection: shadow entries and refault distance (mm/workingset.c).

The kernel's essay, in short. The inactive list is where new pages prove themselves; a page
that is evicted from it and faults back in soon was evicted too early. To tell, each eviction
leaves a *shadow entry* in the page-cache slot that records the value of a per-lruvec counter,
``nonresident_age``, that ticks once per page evicted or activated::

    eviction:  shadow = nonresident_age;  nonresident_age += nr_pages
    refault:   refault_distance = nonresident_age - shadow

The refault distance is how many pages were evicted or activated while the page was out, i.e.
the minimum extra inactive space it would have needed to stay resident. If that distance fits
in the active list (``workingset_size = NR_ACTIVE_FILE``, plus the anon lists when swap is
usable), the page is activated on refault: it is part of the workingset.

Modelled as in workingset_eviction() / workingset_test_recent() / workingset_refault() of
Linux 6.x, with one lruvec (one memory cgroup, one node) and no bucket_order rounding of the
eviction counter. The shadow also keeps the folio's PG_workingset bit, so a refault of a page
that was active before eviction counts as a *restore* (WORKINGSET_RESTORE_FILE). MGLRU
(CONFIG_LRU_GEN) is not modelled.

Shadows live in one int64 array per slot: ``-1`` means none, else ``age << 1 | workingset``.
"""

from __future__ import annotations

import numpy as np

NO_SHADOW = -1


class Workingset:
    """nonresident_age, the shadow array and the WORKINGSET_* counters of one lruvec."""

    def __init__(self, nr_slots: int) -> None:
        self.shadow = np.full(nr_slots, NO_SHADOW, dtype=np.int64)
        self.nonresident_age = 0
        self.refault = 0      # WORKINGSET_REFAULT_FILE (pages)
        self.activate = 0     # WORKINGSET_ACTIVATE_FILE
        self.restore = 0      # WORKINGSET_RESTORE_FILE

    def age_nonresident(self, nr: int) -> None:
        """workingset_age_nonresident(): called on eviction and on activation."""
        self.nonresident_age += nr

    def eviction(self, head: int, nr: int, workingset: bool) -> None:
        """workingset_eviction(): store the shadow over the folio's slots."""
        self.shadow[head:head + nr] = (self.nonresident_age << 1) | int(workingset)
        self.age_nonresident(nr)

    def forget(self, first: int, end: int) -> None:
        """Drop shadows (truncate, inode eviction: the xarray entries are cleared)."""
        self.shadow[first:end] = NO_SHADOW

    def refault_check(self, head: int, nr: int, nr_active_file: int) -> tuple[bool, bool]:
        """workingset_refault() on insertion of a folio at ``head``.

        Returns ``(activate, workingset)``: whether the folio goes to the active list, and
        whether it gets PG_workingset back. Counts refaults, activations and restores.
        Consumes the shadow entries of the folio's slots.
        """
        shadow = int(self.shadow[head])
        if shadow == NO_SHADOW:
            # A large folio may cover slots that had shadows of smaller evicted folios; the
            # kernel looks up the entry at the folio's index only.
            self.shadow[head:head + nr] = NO_SHADOW
            return False, False
        self.shadow[head:head + nr] = NO_SHADOW
        self.refault += nr
        eviction, was_workingset = shadow >> 1, bool(shadow & 1)
        refault_distance = self.nonresident_age - eviction
        if refault_distance > nr_active_file:
            return False, False
        self.age_nonresident(nr)
        self.activate += nr
        if was_workingset:
            self.restore += nr
        return True, was_workingset
