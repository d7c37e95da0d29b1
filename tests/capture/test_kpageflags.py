"""Folio sizes of a cgroup's page cache from /proc/kpagecgroup and /proc/kpageflags, on
files laid out as the kernel lays them out (one 64-bit word per PFN)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tagcache.record.kpageflags import (
    KPF_ANON,
    KPF_COMPOUND_HEAD,
    KPF_COMPOUND_TAIL,
    KPF_LRU,
    KPF_SWAPBACKED,
    page_cache_folio_orders,
)

OURS, OTHER = 4242, 7
LRU = 1 << KPF_LRU
HEAD, TAIL = LRU | 1 << KPF_COMPOUND_HEAD, LRU | 1 << KPF_COMPOUND_TAIL


def fake_proc(tmp_path: Path, pages: list[tuple[int, int]]) -> Path:
    """kpagecgroup and kpageflags of a machine whose PFN i is ``pages[i]`` (cgroup, flags)."""
    cg = np.array([c for c, _ in pages], np.uint64)
    fl = np.array([f for _, f in pages], np.uint64)
    (tmp_path / "kpagecgroup").write_bytes(cg.tobytes())
    (tmp_path / "kpageflags").write_bytes(fl.tobytes())
    return tmp_path


def test_orders_of_the_cgroups_file_folios_only(tmp_path):
    pages = [(0, 0)] * 3                                   # free or unaccounted
    pages += [(OURS, LRU)] * 2                             # two order-0 folios
    pages += [(OURS, HEAD)] + [(OURS, TAIL)] * 3           # an order-2 folio
    pages += [(OTHER, HEAD)] + [(OTHER, TAIL)] * 15        # another cgroup's order-4 folio
    pages += [(OURS, LRU | 1 << KPF_ANON)] * 4             # anonymous memory
    pages += [(OURS, LRU | 1 << KPF_SWAPBACKED)]           # shmem
    pages += [(OURS, HEAD)] + [(OURS, TAIL)] * 15          # an order-4 folio
    pages += [(OURS, HEAD)] + [(OURS, TAIL)] * 3           # and a second order-2 one
    pages += [(OURS, 0)]                                   # isolated from the LRU right now
    proc = fake_proc(tmp_path, pages)
    assert page_cache_folio_orders(OURS, proc) == {0: 2, 2: 8, 4: 16}
    assert page_cache_folio_orders(OTHER, proc) == {4: 16}
    assert page_cache_folio_orders(99, proc) == {}
