"""The file LRU lists of one lruvec and reclaim's scan constants (include/linux/mmzone.h,
include/linux/swap.h).

Like the kernel's lruvec, there is an inactive and an active list of folios; only the head
page of a folio is linked. engine/pagecache.py threads them through two int32 arrays indexed
by page-cache slot, the two list heads being sentinel entries past the last slot::

    LRU_INACTIVE_FILE sentinel <-> newest folio <-> ... <-> oldest folio (tail, reclaimed first)

and counts pages, not folios, per list, as lruvec->lru_zone_size does.
"""

LRU_INACTIVE_FILE = 0
LRU_ACTIVE_FILE = 1

DEF_PRIORITY = 12
"""The scan priority reclaim starts at (mmzone.h): each list is scanned ``size >> priority``
pages at a time, the priority lowered towards 0 until enough is reclaimed."""
SWAP_CLUSTER_MAX = 32
"""Reclaim's batch (swap.h): pages isolated per shrink call, and the least a memory cgroup's
reclaim asks for (try_to_free_mem_cgroup_pages())."""
