"""``gcma``: the same free tag pages behind the cleancache frontend of the 2025 GCMA series
("mm: introduce cleancache" / "GCMA", Suren Baghdasaryan, v2, October 2025, not merged;
carried in Android's 6.18 kernels), whose author named MTE tag storage as its next backend.

Its semantics, from that series' mm/cleancache.c: a restore copies the data and leaves the copy
in place, rotating it to the young end of one global LRU over every pool (non-exclusive); only
folios with PG_workingset are stored (storing a non-workingset folio drops a stale copy); large
folios are not stored; a full cache reclaims its LRU tail. Its sysfs counters map onto ours:
stored, skipped, restored, missed, invalidated, cached as named; its "reclaimed" (LRU tail
dropped for a newer store) is our ``evicted``; its "recalled" (the donor took the folio back,
here: tags needed the tag page) is our ``reclaimed``. Simplified: the series counts "skipped" on
every store call (its ``out:`` label), we count it only when nothing was kept; it keeps
per-inode xarrays, we one index per page-cache slot.

Each stored page is a folio of the donated pool, so a kernel keeps a struct page per tag page
(the memmap, 64 bytes), where the 2024 design needs 12 (engine/cleancache.py TAG_PAGE_RECORD).
"""

from __future__ import annotations

from tagcache.backends.base import REPLACEMENTS, BackendSpec, Param
from tagcache.engine.tagstore import tagstore_hook as hook  # noqa: F401  (numba-compiled)

SPEC = BackendSpec(
    name="gcma",
    summary="free tag pages behind the 2025 GCMA cleancache: non-exclusive, workingset "
            "order-0 folios, one LRU",
    params=(
        Param("replacement", "lru", "which stored page makes room for a new one (the "
              "series: lru)", choices=REPLACEMENTS, compare=("lru", "s3fifo")),
    ),
    label=lambda p: "gcma (2025 frontend" + (
        ")" if p["replacement"] == "lru" else f", {p['replacement']})"),
    exclusive=False,
    workingset_only=True,
    max_store_order=0,
    metadata_bytes=64.0,
)
