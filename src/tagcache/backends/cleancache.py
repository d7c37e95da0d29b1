"""``cleancache``: free tag storage as a cleancache backend, the design of the February 2024
proposal, behind the 2011 frontend semantics (a restore is exclusive: the hit removes the copy).

A clean folio evicted from the page cache is copied into free tag pages; a claim for tags
drops the copies on the block's tag pages (nothing written back, nothing migrated), so a
reservation never sleeps, never fails and does bounded work (DESIGN.md rule 4). Large folios
are stored whole; when tags need one of their tag pages, policy ``whole`` drops the folio,
``split`` only that page. The store is engine/tagstore.py's; this module declares it.
"""

from __future__ import annotations

from tagcache.backends.base import PLACEMENTS, REPLACEMENTS, BackendSpec, Param
from tagcache.engine.choices import POLICIES
from tagcache.engine.tagstore import tagstore_hook as hook  # noqa: F401  (numba-compiled)

SPEC = BackendSpec(
    name="cleancache",
    summary="free tag pages keep clean evicted page-cache folios; tags drop them (exclusive)",
    params=(
        Param("large_folio", "whole", "when tags need one tag page of a stored large folio: "
              "drop the whole folio, or split it and drop that page", choices=POLICIES,
              compare=POLICIES),
        Param("replacement", "fifo", "which stored folio makes room for a new one",
              choices=REPLACEMENTS, compare=("fifo", "s3fifo")),
        Param("placement", "first", "which free tag page takes a copy: the first free, "
              "one tags have not given back lately (cold), or the one covering the fewest "
              "free data frames (occupancy)", choices=PLACEMENTS,
              compare=("first", "occupancy")),
    ),
    label=lambda p: (f"cleancache, {p['large_folio']} folio"
                     + ("" if p["replacement"] == "fifo" else f", {p['replacement']}")
                     + ("" if p["placement"] == "first" else f", {p['placement']} placement")),
)
