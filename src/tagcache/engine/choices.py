"""The names a design and a machine are chosen by, without the compiled engine (the scenario
reader checks them before any state is built)."""

POLICIES = ("whole", "split")
"""Large-folio policies of the tag-storage backend, when a claim drops one page of a stored
folio (engine/tagstore.py, edge D): drop the whole folio, or only the page tags need."""
ALLOC_POLICIES = ("sequential", "random", "pack")
"""Where the page allocator places anonymous folios (engine/page_alloc.py)."""
ALLOC_WORDS = {"sequential": "lowest first", "random": "at random", "pack": "packed"}
"""How a design's label says where its tagged pages go (replay.Design.alloc)."""
REPLACEMENTS = ("fifo", "lru", "s3fifo")
"""Replacement inside a tag-page store (engine/tagstore.py): first in first out, least
recently used (a restore or a re-store rotates the copy), and S3-FIFO (a small FIFO, a main
FIFO with 2-bit frequencies and a ghost FIFO of slots: Yang et al., SOSP 2023, as in
libCacheSim's S3FIFO.c with its defaults: small 10%, ghost 90%, move to main after one hit)."""

(OP_STORE, OP_PRESENT, OP_LOOKUP, OP_RESTORE, OP_TOUCH, OP_INVALIDATE, OP_RESERVE, OP_RELEASE,
 OP_LEND, OP_TICK) = range(10)
"""The operations of a backend's hook (backends/base.py documents the contract)."""
PLACEMENTS = ("first", "cold", "occupancy")
"""Which free tag page takes a stored page (engine/tagstore.py): the free stack's top, a page
tags have not given back lately, or the page covering the fewest free data frames."""
