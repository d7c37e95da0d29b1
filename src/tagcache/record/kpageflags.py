"""Folio sizes of a memory cgroup's page cache, from /proc/kpagecgroup and /proc/kpageflags.

Both files hold one 64-bit word per PFN (Documentation/admin-guide/mm/pagemap.rst): the inode
number of the memory cgroup a page is charged to (page_cgroup_ino()), and the page's flags
(stable_page_flags()). A page of a large folio shows KPF_COMPOUND_HEAD or KPF_COMPOUND_TAIL;
page-cache pages are on an LRU and neither anonymous nor swap-backed (shmem). Reading them
needs root and CONFIG_PROC_PAGE_MONITOR.

``tagcache record`` uses this once, after CMD exits, to learn whether the traced files'
mappings use large folios (mapping_large_folio_support(): ext4 since Linux 6.16, xfs since
5.18), a property of the filesystem that the model needs and the access events do not carry.
kpagecgroup is read whole (8 bytes per PFN of the machine: 50 MiB and about 0.7 s for 24 GiB);
kpageflags only at the cgroup's PFNs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

PROC = Path("/proc")
KPF_LRU = 5
KPF_ANON = 12
KPF_SWAPBACKED = 14
KPF_COMPOUND_HEAD = 15
KPF_COMPOUND_TAIL = 16
CHUNK_BYTES = 8 << 20


def _words(path: Path, start: int = 0, count: int | None = None) -> np.ndarray:
    """``count`` 64-bit words from word ``start`` of ``path`` (all of it if None); reads are
    whole words, as these files require."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if count is not None:
            return np.frombuffer(os.pread(fd, count * 8, start * 8), dtype=np.uint64)
        chunks = []
        while chunk := os.read(fd, CHUNK_BYTES):
            chunks.append(chunk)
        return np.frombuffer(b"".join(chunks), dtype=np.uint64)
    finally:
        os.close(fd)


def _bit(flags: np.ndarray, bit: int) -> np.ndarray:
    return (flags >> np.uint64(bit)) & np.uint64(1) == 1


def page_cache_folio_orders(cgroup_ino: int, proc: Path = PROC) -> dict[int, int]:
    """Pages of the cgroup's page cache, by the order of the folio holding them.

    OSError when the files cannot be read (not root, or no CONFIG_PROC_PAGE_MONITOR).
    """
    pfns = np.flatnonzero(_words(proc / "kpagecgroup") == np.uint64(cgroup_ino))
    if not len(pfns):
        return {}
    breaks = np.flatnonzero(np.diff(pfns) != 1) + 1
    firsts = pfns[np.r_[0, breaks]]
    lasts = pfns[np.r_[breaks - 1, len(pfns) - 1]]
    flags = np.concatenate([_words(proc / "kpageflags", int(a), int(b - a + 1))
                            for a, b in zip(firsts, lasts, strict=True)])
    if len(flags) != len(pfns):       # kpageflags shorter than kpagecgroup: memory hot-removed
        return {}
    cache = _bit(flags, KPF_LRU) & ~_bit(flags, KPF_ANON) & ~_bit(flags, KPF_SWAPBACKED)
    head, tail = _bit(flags, KPF_COMPOUND_HEAD), _bit(flags, KPF_COMPOUND_TAIL)
    orders: dict[int, int] = {}
    small = int(np.count_nonzero(cache & ~head & ~tail))
    if small:
        orders[0] = small
    # A folio is its head and the tails that follow it at consecutive PFNs.
    follows = np.r_[False, np.diff(pfns) == 1] & tail
    for i in np.flatnonzero(cache & head).tolist():
        j = i + 1
        while j < len(pfns) and follows[j]:
            j += 1
        order = (j - i).bit_length() - 1
        orders[order] = orders.get(order, 0) + (j - i)
    return dict(sorted(orders.items()))
