"""The room the capture's cgroup left to the traced files follows its samples and the
command's anonymous allocations (capacity.py): a heap that grows takes page cache away."""

from __future__ import annotations

from tagcache.capacity import CgroupRoom, cgroup_room
from tagcache.validate import validate_trace
from tagcache.workloads.events import GFP_USER_ANON, FileTable, Op, TraceBuilder

META = {"name": "t", "limit_mib": 1}


def _heap_trace(grow_by_kmem: bool) -> TraceBuilder:
    """Read 100 pages, let a heap of 60 pages grow (a sample, or kmem events between two
    samples), read the same 100 pages again."""
    b = TraceBuilder()
    b.add(Op.CGROUP_SAMPLE, 0, 0, 0)                 # at the start: nothing charged
    for i in range(100):
        b.add(Op.GET_PAGES, 0, i, 1)
    b.add(Op.CGROUP_SAMPLE, 100, 0, 0)               # the cache full, no heap yet
    if grow_by_kmem:
        for pfn in range(60):
            b.add(Op.PAGE_ALLOC, 5000 + pfn, 0, GFP_USER_ANON)
    else:
        b.add(Op.CGROUP_SAMPLE, 40, 60, 0)           # the heap took 60 pages
    for i in range(100):
        b.add(Op.GET_PAGES, 0, i, 1)
    for i in range(100):
        b.add(Op.KERNEL_ADD, 0, i, 0)                # the file's size
    return b


FILES = FileTable.build([1], [7], [100])


def test_a_growing_heap_takes_room_from_the_page_cache():
    for kmem in (False, True):
        trace = _heap_trace(kmem).build(FILES)
        followed = validate_trace(trace, 100, ra_pages=0, meta=META)
        fixed = validate_trace(trace, 100, ra_pages=0, meta=META, nonfile=False)
        assert fixed.model["reinsertions"] == 0                      # 100 pages fit in 100
        assert followed.model["reinsertions"] >= 60, (kmem, followed.model)
        assert followed.capacity_lowest == 40 and followed.samples >= 2
        assert "nonfile" in followed.facts and "nonfile" not in fixed.facts


def test_freed_heap_gives_the_room_back():
    room = CgroupRoom(100, use_nonfile=True)
    room.sample(0, 0, 0)
    room.page_alloc(10, 3, GFP_USER_ANON)           # 8 anonymous pages
    room.page_alloc(20, 0, 0)                        # page cache: not anonymous
    assert room.pages == 92
    room.page_free(10)
    room.page_free(20)
    assert room.pages == 100 and room.lowest == 92


def test_metadata_series_is_taken_off_and_naive_ignores_all():
    b = TraceBuilder()
    b.add(Op.CGROUP_SAMPLE, 50, 10, 30)
    trace = b.build(FILES)
    assert cgroup_room(trace, 80).pages == 80 - 10 - 30 + 0      # P = max(80, 50 + 10) = 80
    assert cgroup_room(trace, 80, metadata=False).pages == 70
    assert cgroup_room(trace, 80, nonfile=False).pages == 50     # cache_peak less metadata
    assert cgroup_room(trace, 80, naive=True).pages == 80


def test_metadata_beyond_the_cgroups_page_cache_is_someone_elses():
    """Buffers grew by 300 pages while the cgroup held 100 pages of page cache: at most 100
    of them can be the cgroup's."""
    b = TraceBuilder()
    b.add(Op.CGROUP_SAMPLE, 100, 10, 300)
    assert cgroup_room(b.build(FILES), 200).pages == 200 - 10 - 100


def test_a_heap_freed_between_samples_gives_its_room_back_at_once():
    """Samples of 60 then 0 non-file pages (a process exited in between): from the first of
    them the room is the larger, since the sampler cannot tell when the heap went; a heap that
    grows (0 then 60) takes its room at the sample that shows it."""
    b = TraceBuilder()
    for nonfile in (60, 0, 0, 60):
        b.add(Op.CGROUP_SAMPLE, 10, nonfile, 0)
    trace = b.build(FILES)
    room = cgroup_room(trace, 100)
    seen = []
    for nonfile in (60, 0, 0, 60):
        room.sample(10, nonfile, 0)
        seen.append(room.pages)
    assert seen == [100, 100, 100, 40]
