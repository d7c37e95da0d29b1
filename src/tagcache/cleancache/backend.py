"""The backend interface: struct cleancache_ops, plus the tag-storage hooks.

The frontend (frontend.py) owns the counters, the "no backend" path and the rule of what may
be stored; a backend implements only policy: where a folio goes, what to drop when full, and
what to give up when tags need its memory. Keys are page-cache slots (mm/filemap.py), which
stand for (pool, inode, index) of the kernel's cleancache_filekey.

Sized as it is on purpose: the seven cleancache_ops collapse into store, restore and
invalidate over slot ranges (init_fs/put_fs have nothing to model), and the two tag hooks
are all the arch code needs: reserve_block() when a tag block goes from unused to holding tags,
release_block() when its last tagged page is freed. The checker reads a backend only
through tag_page_use(), locate() and cached_pages, and measures the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

USE_FREE, USE_CACHE, USE_TAGS = 0, 1, 2
"""What a tag page holds, as every backend's tag_page_use() reports it."""


@dataclass
class ReserveWork:
    """What reserve_block() declares it did. The caller measures what it dropped (the cached
    count before and after) rather than believing ``dropped``; the flags are the backend's
    declared properties for the claim, which the checker holds against rule 4."""

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
        """Keep a copy of the clean folio at ``head`` (none of its pages is stored: the
        frontend invalidates first); False if it was not kept (skipped)."""

    def restore_range(self, first: int, end: int) -> np.ndarray | None:
        """Give back (and forget: exclusive) stored pages in ``[first, end)``; the slots
        restored, or None when there were none."""

    def invalidate_range(self, first: int, end: int) -> int:
        """Forget stored pages in ``[first, end)``; how many there were."""

    def reserve_block(self, block: int) -> ReserveWork:
        """Tags need tag block ``block``: give up whatever the backend keeps there."""

    def release_block(self, block: int) -> None:
        """Tag block ``block`` holds no tags any more: the backend may use it again."""

    def tag_page_use(self, tps: np.ndarray | range) -> np.ndarray:
        """USE_FREE, USE_CACHE or USE_TAGS for each tag page of ``tps``."""

    def locate(self, slots: np.ndarray | slice) -> np.ndarray:
        """The tag page holding each slot's stored copy, -1 where none is stored."""

    @property
    def cached_pages(self) -> int:
        """Pages stored now."""

    @property
    def evicted(self) -> int:
        """Pages dropped so far to make room for newer stores."""

    def metadata_bytes_per_tag_page(self) -> float:
        """Bytes a kernel implementation keeps per tag page (no struct page involved)."""

    def simulator_bytes_per_tag_page(self) -> float:
        """Bytes this simulator's arrays take per tag page."""

    def verify(self) -> list[str]:
        """Walk all backend state; describe every inconsistency found."""
