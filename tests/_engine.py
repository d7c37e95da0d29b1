"""Tiny machines for the tests: the engine's page cache, cleancache frontend, tag-storage
backend and tag storage, built by the engine's own builders over one invariant checker, without
the allocator, so that a test can drive each hook by hand (the way engine/machine.py wires them
for a run). Every call goes to the engine's step functions, looked up in their modules at
the call (so that a test run under NUMBA_DISABLE_JIT can replace one); :class:`PageCache`,
:class:`Cleancache` and :class:`TagStorage` only name them and read the state back."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from tagcache.costs import CostTable
from tagcache.engine import checker, lru
from tagcache.engine import cleancache as _cc
from tagcache.engine import tags as _tags
from tagcache.engine.checker import EVENT as CK_EVENT
from tagcache.engine.checker import make_checker
from tagcache.engine.cleancache import (
    cleancache_report,
    make_cleancache,
)
from tagcache.engine.filemap import check_page_cache_error
from tagcache.engine.filemap_add import filemap_add_folio
from tagcache.engine.machine import PAGE_CACHES, verify_backend, walk
from tagcache.engine.mmzone import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE
from tagcache.engine.pagecache import (
    LIMIT,
    NR_DIRTY,
    NR_LRU,
    NR_PAGES,
    PG_LOCKED,
    PG_PINNED,
    STREAM_OFFSET,
    folio_arrays,
    folio_at,
    folio_del_from_lru,
    folio_mark_accessed,
    lru_walk,
    make_page_cache,
    ra_arrays,
    range_free,
    workingset_counts,
)
from tagcache.engine.pagemap import slots_needed
from tagcache.engine.tags import (
    make_tag_storage,
    reservation_calls,
    tag_storage_report,
)
from tagcache.engine.tagstore import (
    NR_CACHED,
    NR_FREE,
    tagstore_release_block,
    tagstore_restore_range,
)
from tagcache.engine.vmscan import remove_mapping
from tagcache.hw.layout import MachineLayout, simple_layout
from tagcache.workloads.events import FileTable, Op

MIB = 1 << 20
KIB = 1 << 10


class Live:
    """Named values read from the state at every access (a test can hold it across calls,
    as it would hold the counters of an object)."""

    def __init__(self, read) -> None:
        self._read = read

    def __getattr__(self, name: str):
        values = self._read()
        if name in values:
            return values[name]
        raise AttributeError(name)

    def asdict(self) -> dict:
        return dict(self._read())


class PageCache:
    """The page cache's system calls on the state ``pc``, each one event through the engine's
    trace loop (``kind.replay``, as engine/machine.py runs a trace), the limit set first."""

    def __init__(self, system: System, pc, kind) -> None:
        self._s, self.state, self.kind = system, pc, kind

    def _event(self, op: Op, a0: int, a1: int = 0, a2: int = 0) -> None:
        pc = self.state
        pc.c[LIMIT] = self._s.limit
        pc.c[STREAM_OFFSET] = self._s.event       # the checker's clock: this event's number
        cols = (np.array([op], np.uint8), np.array([a0], np.int64), np.array([a1], np.int64),
                np.array([a2], np.int64))
        self.kind.replay(pc, *cols, 0, 1)
        check_page_cache_error(pc)

    def read(self, f: int, index: int, nr: int) -> None:
        self._event(Op.READ, f, index, nr)

    def get_pages(self, f: int, index: int, nr: int) -> None:
        self._event(Op.GET_PAGES, f, index, nr)

    def fault(self, f: int, index: int) -> None:
        self._event(Op.FAULT, f, index)

    def map_pages(self, f: int, index: int, nr: int) -> None:
        self._event(Op.MAP_PAGES, f, index, nr)

    def write(self, f: int, index: int, nr: int) -> None:
        self._event(Op.WRITE, f, index, nr)

    def fsync(self, f: int) -> None:
        self._event(Op.FSYNC, f)

    def truncate(self, f: int, new_size: int) -> None:
        self._event(Op.TRUNCATE, f, new_size)

    def unlink(self, f: int) -> None:
        self._event(Op.UNLINK, f)

    def unmount(self, dev: int) -> None:
        self._event(Op.UNMOUNT, dev)

    def add_folio(self, f: int, index: int, order: int, *, readahead: bool = False,
                  fill: bool = True, noretry: bool = False) -> int:
        """filemap_add_folio() then the read (kernel page cache): the head slot, or -1."""
        self.state.c[LIMIT] = self._s.limit
        return int(filemap_add_folio(self.state, f, index, order, readahead, fill, noretry))

    def try_to_free_pages(self, nr: int) -> int:
        return int(self.kind.try_to_free_pages(self.state, nr))

    # -- reading the state back ----------------------------------------------------------------

    def folio_at(self, f: int, index: int) -> int:
        return int(folio_at(self.state, f, index))

    def range_free(self, f: int, index: int, nr: int) -> bool:
        return bool(range_free(self.state, f, index, nr))

    def verify(self) -> list[str]:
        return self.kind.verify(self.state)

    @property
    def stats(self) -> Live:
        return Live(lambda: self.kind.stats(self.state))

    @property
    def nr_pages(self) -> int:
        return int(self.state.c[NR_PAGES])

    @property
    def nr_dirty(self) -> int:
        return int(self.state.c[NR_DIRTY])

    @property
    def lru(self) -> SimpleNamespace:
        """The two file lists: ``nr_pages`` [inactive, active] and ``walk(lru)``, newest
        first."""
        c = self.state.c
        return SimpleNamespace(nr_pages=[int(c[NR_LRU + LRU_INACTIVE_FILE]),
                                         int(c[NR_LRU + LRU_ACTIVE_FILE])],
                               walk=lambda lru: lru_walk(self.state, lru))

    def mark_accessed(self, head: int) -> None:
        folio_mark_accessed(self.state, head)

    @property
    def raw_flags(self) -> np.ndarray:
        """The state's own flags array (shared: a test may set a bit; the order and the
        engine's PG_LOCKED, PG_PINNED live in the high bits)."""
        return np.asarray(self.state.flags)

    @property
    def pinned(self) -> bool:
        """Some folio holds PG_PINNED (a running read or fault's reference)."""
        return bool((self.raw_flags & PG_PINNED).any())

    @property
    def locked(self) -> bool:
        """Some folio holds PG_LOCKED (a running readahead window's)."""
        return bool((self.raw_flags & PG_LOCKED).any())

    def _arrays(self) -> dict[str, np.ndarray]:
        if self._s.policy == "lru":
            return lru.folio_arrays(self.state)
        return folio_arrays(self.state)

    @property
    def head(self) -> np.ndarray:
        return self._arrays()["head"]

    @property
    def order(self) -> np.ndarray:
        return self._arrays()["order"]

    @property
    def flags(self) -> np.ndarray:
        """PG_* bits per slot (engine/page_flags.py; the engine's own bits masked off)."""
        return self._arrays()["flags"]

    @property
    def shadow(self) -> np.ndarray:
        return self._arrays()["shadow"]

    @property
    def ra(self) -> Live:
        """Each file's file_ra_state (start, size, async_size, prev_pos, mmap_miss, order)."""
        return Live(lambda: ra_arrays(self.state))

    @property
    def ws(self) -> Live:
        """The WORKINGSET_* counts, nonresident_age and the shadow per slot (-1 none)."""
        return Live(lambda: workingset_counts(self.state) | {"shadow": self.shadow})

    @property
    def base(self) -> np.ndarray:
        return np.asarray(self.state.base)

    def isize_pages(self, f: int) -> int:
        return int(self.state.isize[f])

    @property
    def isize(self) -> np.ndarray:
        return np.asarray(self.state.isize)

    @property
    def nr_slots(self) -> int:
        return int(self.state.nr_slots)


class Cleancache:
    """The frontend's hooks on the cleancache state ``cc`` and its counters."""

    def __init__(self, cc) -> None:
        self.state = cc

    def store_folio(self, head: int, order: int, *, dirty: bool,
                    workingset: bool = True) -> None:
        _cc.cleancache_store_folio(self.state, head, order, dirty, workingset)

    def restore_folio(self, head: int, nr: int) -> bool:
        return bool(_cc.cleancache_restore_folio(self.state, head, nr))

    def invalidate_range(self, first: int, end: int) -> None:
        _cc.cleancache_invalidate_range(self.state, first, end)

    @property
    def stats(self) -> Live:
        return Live(lambda: cleancache_report(self.state))

    @property
    def cached(self) -> int:
        return int(self.state.c[NR_CACHED])

    @property
    def enabled(self) -> bool:
        return bool(self.state.kind)


class Backend:
    """The tag-storage backend's state (engine/tagstore.py), read back, and its two calls a
    test makes directly."""

    def __init__(self, cc, policy: str) -> None:
        self.state, self.policy = cc, policy

    @property
    def tp_state(self) -> np.ndarray:
        return np.asarray(self.state.tp_state)

    @property
    def slot_tp(self) -> np.ndarray:
        return np.asarray(self.state.slot_tp)

    @property
    def evicted(self) -> int:
        return cleancache_report(self.state)["evicted"]

    @property
    def nr_free(self) -> int:
        return int(self.state.c[NR_FREE])

    @property
    def nr_cached(self) -> int:
        return int(self.state.c[NR_CACHED])

    @property
    def cached_pages(self) -> int:
        return self.nr_cached

    def restore_range(self, first: int, end: int) -> np.ndarray | None:
        """Exclusive restore of whatever is stored in ``[first, end)``: the slots handed
        back, None when there were none."""
        slots = first + np.flatnonzero(self.slot_tp[first:end] >= 0)
        n = int(tagstore_restore_range(self.state, first, end))
        assert n == len(slots)
        return slots if n else None

    def release_block(self, block: int) -> None:
        tagstore_release_block(self.state, block)

    def verify(self) -> list[str]:
        return verify_backend(self.state)


class TagStorage:
    """The MTE hooks on the tag-storage state ``ts``; each returns the engine's rc code."""

    def __init__(self, ts, costs: CostTable) -> None:
        self.state, self.costs = ts, costs

    def reserve_tag_storage(self, pfns, order: int = 0) -> int:
        return int(_tags.reserve_tag_storage(self.state, np.asarray(pfns, np.int64), order))

    def set_ptes_at(self, pfns, order: int = 0) -> int:
        return int(_tags.set_ptes_at(self.state, np.asarray(pfns, np.int64), order))

    def copy_highpage(self, to_pfns, from_pfns) -> int:
        return int(_tags.copy_highpage(self.state, np.asarray(to_pfns, np.int64),
                                 np.asarray(from_pfns, np.int64)))

    def arch_swap_restore(self, pfns) -> int:
        return int(_tags.arch_swap_restore(self.state, np.asarray(pfns, np.int64)))

    def free_tag_storage(self, pfns) -> int:
        return int(_tags.free_tag_storage(self.state, np.asarray(pfns, np.int64)))

    @property
    def refs(self) -> np.ndarray:
        return np.asarray(self.state.refs)

    @property
    def stats(self) -> Live:
        """The counters, and per reserve_tag_storage() call ``latency``, ``claimed`` and
        ``dropped``."""
        def read() -> dict:
            latency, claimed, dropped = reservation_calls(self.state)
            return tag_storage_report(self.state) | {
                "latency": np.asarray(latency), "claimed": np.asarray(claimed),
                "dropped": np.asarray(dropped)}
        return Live(read)


@dataclass
class System:
    """A page cache in front of a cleancache frontend, a tag-storage backend and tag storage,
    all sharing one invariant checker (switched off with ``check=False``)."""

    layout: MachineLayout
    files: FileTable
    ck: object
    pc: PageCache
    cc: Cleancache
    backend: Backend | None
    tags: TagStorage
    limit: int
    policy: str = "kernel"
    _event: int = 0

    @property
    def S(self) -> int:
        """First data PFN of the (single) tagged range."""
        return self.layout.regions[0].tagged_pfn

    @property
    def event(self) -> int:
        """The event number the checker files breaches under."""
        return self._event

    @event.setter
    def event(self, i: int) -> None:
        self._event = i
        self.ck.c[CK_EVENT] = i

    def slot(self, f: int, index: int) -> int:
        """Page-cache slot (the cleancache key) of page ``index`` of file ``f``."""
        return int(self.pc.base[f]) + index

    def evict(self, f: int, index: int) -> None:
        """Reclaim the folio caching page ``index`` of file ``f``, as shrink_inactive_list()
        does once it decided to reclaim it: off its LRU list, then __remove_mapping()."""
        pc = self.pc.state
        h = int(folio_at(pc, f, index))
        assert h >= 0, f"page {index} of file {f} is not cached"
        folio_del_from_lru(pc, h)
        remove_mapping(pc, h)

    def map_tagged(self, pfns, order: int = 0) -> int:
        """set_ptes_at() on ``pfns``, then their tags are written, as anonymous memory does."""
        pfns = np.asarray(pfns, np.int64)
        rc = self.tags.set_ptes_at(pfns, order)
        if self.ck.c[checker.ON]:
            checker.tags_written(self.ck, _cc.tag_page_states(self.cc.state), self.layout.pfn_base,
                                 pfns)
        return rc

    def unmap_tagged(self, pfns) -> int:
        """The tagged pages ``pfns`` are freed."""
        pfns = np.asarray(pfns, np.int64)
        rc = self.tags.free_tag_storage(pfns)
        if self.ck.c[checker.ON]:
            checker.tags_freed(self.ck, self.layout.pfn_base, pfns)
        return rc

    def violations(self) -> dict[str, int]:
        return checker.counts(self.ck)

    def reports(self) -> list:
        return checker.reports(self.ck, self._details)

    def breach_events(self) -> dict[str, list[int]]:
        return checker.events(self.ck)

    def walk(self, tagged_pfns=()) -> dict[str, int]:
        """The end-of-run walk (engine/machine.py walk()), told which data PFNs are tagged now
        (the memmap's truth)."""
        memmap = np.zeros(self.layout.nr_pfns, bool)
        memmap[np.asarray(tagged_pfns, np.int64) - self.layout.pfn_base] = True
        fm = SimpleNamespace(cc=self.cc.state, pc=self.pc.state, ts=self.tags.state,
                             pa=SimpleNamespace(tagged=memmap), policy=self.policy,
                             walk_details=self._details)
        walk(fm)
        return self.violations()

    def __post_init__(self) -> None:
        self._details: dict[int, list[str]] = {}


def build_system(files: FileTable, *, layout: MachineLayout | None = None, limit: int = 4096,
                 backend: bool | str = True, policy: str = "whole", check: bool = True,
                 params: dict | None = None,
                 ra_pages: int = 32, max_folio_order: int = 4, pc_policy: str = "kernel",
                 costs: CostTable | None = None,
                 exec_vmas: dict[int, list[tuple[int, int]]] | None = None,
                 cow_vmas: dict[int, list[tuple[int, int]]] | None = None) -> System:
    layout = layout if layout is not None else simple_layout(64 * MIB)
    costs = costs or CostTable()
    nr_slots = slots_needed(files)
    ck = make_checker(layout, nr_slots, check)
    name = backend if isinstance(backend, str) else "cleancache" if backend else "idle"
    cc = make_cleancache(name, layout, nr_slots, policy, ck, params, costs)
    backend = name != "idle"
    kind = PAGE_CACHES[pc_policy]
    if pc_policy == "kernel":
        pc = make_page_cache(files, cc, ra_pages=ra_pages, max_folio_order=max_folio_order,
                             exec_vmas=exec_vmas, cow_vmas=cow_vmas)
    else:
        pc = kind.make(files, cc)
    ts = TagStorage(make_tag_storage(layout, cc, costs), costs)
    s = System(layout, files, ck, None, Cleancache(cc), Backend(cc, policy) if backend else None,
               ts, limit, pc_policy)
    s.pc = PageCache(s, pc, kind)
    return s
