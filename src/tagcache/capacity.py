"""The room a capture's memory cgroup left to the traced files' page cache, over time.

The kernel charges everything the command uses to one memory cgroup: its page cache, its
anonymous memory (heap, stacks), kernel memory (page tables, slab), and the block devices' own
page cache (filesystem metadata, which has no access event). Reclaim starts when the sum
reaches the limit, and with no swap only page cache can go, so what the traced files may hold
at time ``t`` is::

    room(t) = P - nonfile(t) - metadata(t)

``P`` is the most the cgroup ever held (the highest sampled usage, at least ``cache_peak``:
how close to its limit the kernel let the cgroup get), ``nonfile(t)`` everything charged
that is not page cache (usage - file: anonymous memory, and kernel memory such as the
dentries and inodes of every file opened), ``metadata(t)`` the block-device page cache
gained since the command started (/proc/meminfo Buffers, capped at the cgroup's page cache:
Buffers is system-wide, and metadata read by other processes meanwhile adds to it; on an
idle machine it equals the capture's own block-device pages). ``tagcache record`` samples all three
every 10 ms into the trace as ``tagcache_sample`` markers (Op.CGROUP_SAMPLE: arg0 file
pages, arg1 usage - file pages, arg2 metadata pages), so the series has the trace's clock and
order; until the next sample the room is the larger of the two samples' rooms
(CgroupRoom.sample()). Between two samples, a capture made with ``--with-alloc`` moves
``nonfile`` by the
command's anonymous allocations and frees (kmem mm_page_alloc with GFP_HIGHUSER_MOVABLE |
__GFP_ZERO, and the frees of those pages), so a heap that grows inside 10 ms takes its room
at once. When the room shrinks below what the model holds, the model reclaims as the kernel
does when a charge finds the cgroup full (try_charge_memcg() -> try_to_free_mem_cgroup_pages()).

Captures without samples fall back to one number: ``cache_peak`` less the metadata peak
(the sidecar's ``buffers_growth_peak``). ``naive`` is DESIGN.md 5's literal model: the whole
``cache_peak``, nothing else.

Simplified: pages of files the command wrote or never read (an add event without any access
event) also take room in the kernel's cgroup; the model cannot see them (add events serve
file sizes only) and gives their room to the traced files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from tagcache.workloads.events import GFP_USER_ANON, Op, Trace

if TYPE_CHECKING:
    from tagcache.engine.machine import FlatMachine

CGROUP_SAMPLE = int(Op.CGROUP_SAMPLE)
PAGE_ALLOC, PAGE_FREE = int(Op.PAGE_ALLOC), int(Op.PAGE_FREE)


def samples(trace: Trace) -> np.ndarray:
    """The trace's cgroup samples as an (N, 3) array: file, usage - file, metadata pages."""
    m = trace.op == CGROUP_SAMPLE
    return np.stack([trace.arg0[m], trace.arg1[m], trace.arg2[m]], axis=1).astype(np.int64)


@dataclass
class CgroupRoom:
    """room(t) of the module docstring, updated event by event; ``pages`` is its value now.

    ``use_nonfile`` off holds ``nonfile`` at 0 and ``peak`` at ``cache_peak`` (the page
    cache's own peak); ``use_metadata`` off holds ``metadata`` at 0."""

    peak: int
    """P: the most the cgroup held, in pages."""
    metadata_peak: int = 0
    """Used when there are no samples: the room is ``peak - metadata_peak`` throughout."""
    use_nonfile: bool = False
    use_metadata: bool = False
    nonfile: int = 0
    metadata: int = 0
    anon: int = 0                   # anonymous pages the kmem events allocated, net
    anon_at_sample: int = 0
    anon_pfns: dict[int, int] = field(default_factory=dict)
    pages: int = 0
    lowest: int = 0
    samples: int = 0
    series: np.ndarray | None = None
    """The trace's samples (samples()), to look one sample ahead."""

    def __post_init__(self) -> None:
        self.pages = self.lowest = max(1, self.peak - self.metadata_peak)

    def _update(self) -> None:
        room = self.peak - self.metadata
        if self.use_nonfile:
            room -= self.nonfile + self.anon - self.anon_at_sample
        self.pages = max(1, room)
        self.lowest = min(self.lowest, self.pages)

    def sample(self, file: int, nonfile: int, metadata: int) -> None:
        """A tagcache_sample marker, in pages: the cgroup's page cache, everything else it is
        charged, and the Buffers growth. Buffers is system-wide: metadata that other
        processes read meanwhile adds to it, but the cgroup cannot hold more metadata than
        page cache, so it is capped at ``file``.

        Until the next sample the room is the larger of the two samples' rooms (``series``,
        the trace's samples in order): the sampler does not see when within its interval a
        charge came or went, and the kernel reclaims only when a charge finds the cgroup
        full and stops as soon as memory is freed, so a heap freed by a process that exits
        gives its room back at once, and one that grows takes it at the next sample."""
        i = self.samples
        if self.series is not None and i + 1 < len(self.series):
            nonfile = min(nonfile, int(self.series[i + 1, 1]))
            metadata = min(metadata, int(self.series[i + 1, 2]))
        self.samples += 1
        self.nonfile = nonfile
        self.metadata = min(metadata, file) if self.use_metadata else 0
        self.anon_at_sample = self.anon
        self._update()

    def page_alloc(self, pfn: int, order: int, gfp: int) -> None:
        if gfp & GFP_USER_ANON:
            self.anon_pfns[pfn] = order
            self.anon += 1 << order
            self._update()

    def page_free(self, pfn: int) -> None:
        order = self.anon_pfns.pop(pfn, None)
        if order is not None:
            self.anon -= 1 << order
            self._update()


def follow_room(room: CgroupRoom, pc: FlatMachine, op: int, a0: int, a1: int, a2: int) -> None:
    """A cgroup sample or a kmem event of a capture moves ``room``; where a charge shrank it
    below what ``pc`` holds, the page cache is reclaimed as the charge's try_charge_memcg()
    reclaims it. kmem events count only where the room follows the non-file charges."""
    before = room.pages
    if op == CGROUP_SAMPLE:
        room.sample(a0, a1, a2)
    elif not room.use_nonfile:
        return
    elif op == PAGE_ALLOC:
        room.page_alloc(a0, a1, a2)
    elif op == PAGE_FREE:
        room.page_free(a0)
    if room.pages < before and pc.nr_pages > room.pages:
        pc.charge(0)


def cgroup_room(trace: Trace, cache_peak: int, *, naive: bool = False, metadata: bool = True,
                nonfile: bool = True, metadata_peak: int = 0) -> CgroupRoom:
    """The room for ``trace`` (a capture) with ``cache_peak`` pages at most in the cgroup's
    page cache. ``metadata`` takes the metadata series off (``metadata_peak`` where the
    capture has no samples), ``nonfile`` follows the non-file series and kmem events."""
    if naive:
        return CgroupRoom(cache_peak)
    s = samples(trace)
    if not len(s):
        return CgroupRoom(cache_peak, metadata_peak if metadata else 0)
    peak = max(cache_peak, int((s[:, 0] + s[:, 1]).max())) if nonfile else cache_peak
    room = CgroupRoom(peak, use_nonfile=nonfile, use_metadata=metadata, series=s)
    room.sample(int(s[0, 0]), int(s[0, 1]), int(s[0, 2]))
    room.samples = 0
    return room
