"""Folio flag bits kept per head slot in one uint16 array (include/linux/page-flags.h names).

PG_FOREIGN marks a page resident before the trace and charged elsewhere (mapped by processes
outside the memory cgroup being modelled): it hits, but it is on none of our LRU lists, is
never charged and never reclaimed here.

PTE_YOUNG stands for "some PTE mapping this folio has its accessed bit set", which the kernel
keeps in page tables and reads through rmap (folio_referenced()).

VM_EXEC_MAPPED stands for "some VMA mapping this folio has VM_EXEC", the ``vm_flags`` that
folio_referenced() gathers from the mappings it finds young; set when the folio is faulted or
mapped around through an executable mapping, gone when the folio leaves the cache.

Bits 10-15 belong to engine/pagecache.py (PG_LOCKED, PG_PINNED and the folio's order).
"""

PG_ACTIVE = 1
PG_REFERENCED = 2
PG_DIRTY = 4
PG_READAHEAD = 8
PG_WORKINGSET = 16
PG_MAPPED = 32
PTE_YOUNG = 64
PG_FOREIGN = 128
VM_EXEC_MAPPED = 256
PG_RESTORED = 512
"""The folio's data came from cleancache, not the disk (accounting only: which missed accesses
were served without I/O)."""
