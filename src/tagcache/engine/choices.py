"""The names a design and a machine are chosen by, without the compiled engine (the scenario
reader checks them before any state is built)."""

POLICIES = ("whole", "split")
"""Large-folio policies of the tag-storage backend, when a claim drops one page of a stored
folio (engine/tagstore.py, edge D): drop the whole folio, or only the page tags need."""
ALLOC_POLICIES = ("sequential", "random", "pack")
"""Where the page allocator places anonymous folios (engine/page_alloc.py)."""
