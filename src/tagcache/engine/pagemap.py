"""The page cache's sizes and slot space, without the compiled engine (include/linux/pagemap.h,
include/linux/mm.h): what the command line, the scenario and capture readers need to size a
run before any state is built.

Every file gets a run of *slots*, one per page index up to the most pages it ever holds, in one
global slot space (the stand-in for each mapping's xarray). A file's run starts at a multiple of
512 slots, so a folio's alignment in the file is its alignment in slot space: file ``f``'s page
``i`` is slot ``slot_bases(files)[f] + i``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tagcache.workloads.events import FileTable

MAX_PAGECACHE_ORDER = 9
SLOT_ALIGN = 1 << MAX_PAGECACHE_ORDER
VM_READAHEAD_PAGES = 32     # 128 KiB / 4 KiB


def slot_bases(files: FileTable) -> np.ndarray:
    """Each file's first slot, and the size of the slot space last (``len(files) + 1``
    entries): every file's span gets a run of slots aligned to 512."""
    span = np.asarray(files.span_pages, np.int64)
    base = np.zeros(len(span) + 1, np.int64)
    np.cumsum((span + SLOT_ALIGN - 1) // SLOT_ALIGN * SLOT_ALIGN, out=base[1:])
    return base


def slots_needed(files: FileTable) -> int:
    """Size of the slot space for ``files`` (each run aligned to 512 slots)."""
    return int(slot_bases(files)[-1])


def merge_ranges(spec: Mapping[int, Sequence[tuple[int, int]]] | None
                 ) -> dict[int, list[tuple[int, int]]]:
    """File -> sorted ``[start, end)`` page ranges, overlapping or adjacent ones merged."""
    out: dict[int, list[tuple[int, int]]] = {}
    for f, r in (spec or {}).items():
        merged: list[tuple[int, int]] = []
        for a, b in sorted((int(a), int(b)) for a, b in r if b > a):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        if merged:
            out[f] = merged
    return out
