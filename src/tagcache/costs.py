"""Per-operation costs in nanoseconds, the basis of every modelled time.

Each default names where it comes from; every entry can be overridden in a scenario's
``[costs]`` table. Modelled times are sums of these, nothing else: they rank designs and give
orders of magnitude, they do not replace a measurement on the target SoC.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class CostTable:
    """Nanoseconds per operation (see :data:`SOURCES` for each default's origin)."""

    page_copy: float = 300.0
    disk_read_4k: float = 60_000.0
    disk_write_4k: float = 30_000.0
    cmo_page: float = 500.0
    tag_page_claim: float = 50.0
    cleancache_drop: float = 100.0
    migrate_page: float = 10_000.0
    compress_page: float = 5_000.0
    decompress_page: float = 1_000.0
    tag_copy_page: float = 200.0

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]


SOURCES: dict[str, str] = {
    "page_copy": "memcpy of 4 KiB at 13.7 GB/s (lzbench memcpy row, x86 i7-9700K): ~300 ns; "
                 "no arm64 figure found",
    "disk_read_4k": "4 KiB random read at QD1: fio 63.7 us avg / 49 us p50 on a SATA-class SSD; "
                    "~27 us implied by UFS 3.0 AndroBench IOPS if QD1 (unverified). 60 us chosen",
    "disk_write_4k": "assumption: 4 KiB write absorbed by the device write cache, ~half a read",
    "cmo_page": "assumption: DC CIVAC/IVAC over 64 lines of 64 B; no published per-page figure",
    "tag_page_claim": "assumption: metadata update of one tag page (a few cache misses)",
    "cleancache_drop": "assumption: unlink one stored folio from the backend index, no copy",
    "migrate_page": "assumption: migrate_pages() of one 4 KiB page incl. unmap/copy/remap/TLB; "
                    "only relative figures published (commit 7e12beb8ca2a)",
    "compress_page": "LZ4 1.9.0 compression 780 MB/s (README, x86): ~5.2 us per 4 KiB",
    "decompress_page": "LZ4 1.9.0 decompression 4970 MB/s (README, x86): ~0.8 us per 4 KiB",
    "tag_copy_page": "assumption: mte_copy_page_tags() LDGM/STGM over 256 granules",
}
