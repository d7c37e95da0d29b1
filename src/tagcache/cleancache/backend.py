"""The backend interface: struct cleancache_ops, plus the tag-storage hooks.

The frontend (frontend.py) owns the counters, the "no backend" path and the rule of what may
be stored; a backend implements only policy: where a folio goes, what to drop when full, and
what to give up when tags need its memory. Keys are page-cache slots (mm/filemap.py), which
stand for (pool, inode, index) of the kernel's cleancache_filekey.

Sized as it is on purpose: the seven cleancache_ops collapse into store, restore and
invalidate over slot ranges (init_fs/put_fs have nothing to model), and the two tag hooks
are all the arch code needs: reserve_block() when a tag block goes from unused to holding tags,
release_block() when its last tagged page is freed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class ReserveWork:
    """What reserve_block() did to make a tag block available for tags."""

    dropped: int = 0        # stored pages dropped (reclaimed), incl. collateral
    collateral: int = 0     # of those, pages on tag pages outside the reserved block
    folios: int = 0         # stored folios touched
    copied: int = 0         # pages copied elsewhere (migration or write-back): never, here
    slept: bool = False     # had to sleep (I/O, migration): never for a cleancache backend
    failed: bool = False    # could not make the block available


class CleancacheBackend(Protocol):
    """Operations every backend provides."""

    name: str

    def store_folio(self, head: int, order: int) -> bool:
        """Keep a copy of the clean folio at ``head``; False if it was not kept (skipped)."""

    def restore_range(self, first: int, end: int) -> np.ndarray | None:
        """Give back (and forget: exclusive) stored pages in ``[first, end)``; the slots
        restored, or None when there were none."""

    def invalidate_range(self, first: int, end: int) -> int:
        """Forget stored pages in ``[first, end)``; how many there were."""

    def reserve_block(self, block: int) -> ReserveWork:
        """Tags need tag block ``block``: give up whatever the backend keeps there."""

    def release_block(self, block: int) -> None:
        """Tag block ``block`` holds no tags any more: the backend may use it again."""

    def stored_pages_bound(self, block: int) -> int:
        """Pages reserve_block(``block``) may drop at most: the stored folios on it."""

    def cache_pages_on_blocks(self, blocks: np.ndarray) -> int:
        """Stored pages sitting on any of ``blocks`` (for the invariant checks)."""

    @property
    def cached_pages(self) -> int:
        """Pages stored now."""

    def metadata_bytes_per_tag_page(self) -> float:
        """Bytes of backend metadata per tag page (no struct page involved)."""

    def verify(self) -> list[str]:
        """Walk all backend state; describe every inconsistency found."""
