"""Per-operation costs in nanoseconds, the basis of every modelled time.

Each default names where it comes from; every entry can be overridden in a scenario's
``[costs]`` table, and every entry moves some reported figure (a test overrides each in turn):

    entry              charged for                                   reported in
    page_copy          each page stored in or restored from          io.cleancache_cost_ns,
                       tag storage (a 4 KiB copy either way)         io.net_time_saved_ns
    disk_read_request  each read request sent to the disk            io.read_time_ns, io.*saved*
    disk_read_page     each 4 KiB page those requests transfer       io.read_time_ns, io.*saved*
    disk_write_page    each page written back                        io.write_time_ns
    tag_lookup         each reserve_tag_storage() call: the tag      tag_storage.reservation_
                       block's refcount looked up and raised          latency_ns (every call)
    tag_page_claim     each tag page whose state changes in a claim  ..._latency_ns (claims)
    cmo_page           cache maintenance over one tag page, on a     ..._latency_ns (claims),
                       claim and on a release                         io.cleancache_cost_ns
    cleancache_drop    each stored page dropped by a claim (per      ..._latency_ns (claims),
                       page, not per folio: its index entry erased)   io.cleancache_cost_ns
    page_migrate       each page a cma design migrates off a tag     ..._latency_ns (claims),
                       page tags need (unmap, copy, remap, flush)     tag_storage.waits_ns
    tag_fault          the access fault a cma design takes when it   tag_storage.waits_ns
                       could not reserve in atomic context

Modelled times are sums of these, nothing else: they rank designs and give orders of magnitude,
they do not replace a measurement on the target SoC. Costs of designs not modelled yet
(compression for a zswap-like one) join the table with them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class CostTable:
    """Nanoseconds per operation (see :data:`SOURCES` for each default's origin)."""

    page_copy: float = 300.0
    disk_read_request: float = 55_000.0
    disk_read_page: float = 8_000.0
    disk_write_page: float = 30_000.0
    tag_lookup: float = 20.0
    tag_page_claim: float = 50.0
    cmo_page: float = 500.0
    cleancache_drop: float = 100.0
    page_migrate: float = 20_000.0
    tag_fault: float = 2_000.0

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]


SOURCES: dict[str, str] = {
    "page_copy": "memcpy of 4 KiB at 13.7 GB/s (lzbench memcpy row, x86 i7-9700K): ~300 ns; "
                 "no arm64 figure found",
    "disk_read_request": "4 KiB random read at QD1 on a SATA-class SSD: fio 63.7 us average; "
                         "less one page's transfer (disk_read_page) leaves ~55 us of request "
                         "latency. ~27 us implied by UFS 3.0 AndroBench IOPS if QD1 (unverified)",
    "disk_read_page": "transfer of 4 KiB at ~500 MB/s, a SATA SSD's sequential read: ~8 us",
    "disk_write_page": "assumption: 4 KiB write absorbed by the device write cache, ~half a read",
    "tag_lookup": "assumption: one tag block refcount lookup and atomic increment (a cache "
                  "miss or two)",
    "tag_page_claim": "assumption: metadata update of one tag page (a few cache misses)",
    "cmo_page": "assumption: DC CIVAC/IVAC over 64 lines of 64 B; no published per-page figure",
    "cleancache_drop": "assumption: erase one stored page from the backend index, no copy",
    "page_migrate": "assumption: migrate_pages() of one 4 KiB page, order of 10-40 us with "
                    "unmap, TLB flush, copy and remap (the 2024 RFC's review called migration "
                    "costly but gave no figure)",
    "tag_fault": "assumption: one minor page fault that maps the page again, ~1-3 us",
}
