"""mm/anon.py and mm/page_alloc.py: folios as the buddy allocator hands them out (aligned,
contiguous), untagged memory kept off taggable frames, only PROT_MTE pages through the MTE
hooks, and the observation calls the checker relies on."""

from __future__ import annotations

import numpy as np
import pytest
from _machines import MIB

from tagcache.cleancache.frontend import Cleancache
from tagcache.costs import CostTable
from tagcache.hw.layout import MachineLayout, TagRegion
from tagcache.mm.anon import AnonMemory
from tagcache.mm.page_alloc import ALLOC_POLICIES, OutOfMemory, PageAllocator
from tagcache.mte import TagStorage

POLICIES = pytest.mark.parametrize("policy", ALLOC_POLICIES)


class Observer:
    """What the checker would believe: the set of frames whose tags were written and not
    freed since. Every call is checked against the hooks' own state at the time it comes."""

    def __init__(self, anon: AnonMemory) -> None:
        self.anon = anon
        self.tagged: set[int] = set()
        self.calls: list[tuple[str, int]] = []

    def _blocks(self, pfns):
        layout = self.anon.alloc.layout
        return layout.pfn_to_block[np.asarray(pfns) - layout.pfn_base]

    def tags_written(self, pfns) -> None:
        pfns = np.asarray(pfns).tolist()
        assert not self.tagged & set(pfns), "tags written twice without a free"
        # Called after the hook returned: every block is reserved by now.
        assert (self.anon.tags.refs[self._blocks(pfns)] > 0).all()
        assert self.anon._is_tagged(np.asarray(pfns, np.int64)).all()
        self.tagged |= set(pfns)
        self.calls.append(("written", len(pfns)))

    def tags_freed(self, pfns) -> None:
        pfns = np.asarray(pfns).tolist()
        assert set(pfns) <= self.tagged, "untagged frames reported freed"
        self.tagged -= set(pfns)
        self.calls.append(("freed", len(pfns)))


def make_anon(layout: MachineLayout, policy: str = "sequential", order: int = 0,
              chunk_pages: int = 16) -> AnonMemory:
    tags = TagStorage(layout, Cleancache(None), CostTable())
    alloc = PageAllocator(layout, policy, chunk_pages, seed=1)
    alloc.block_refs = tags.refs
    anon = AnonMemory(alloc, tags, lambda n: None, order)
    anon.observer = Observer(anon)
    return anon


def memmap_tagged(anon: AnonMemory) -> set[int]:
    return set((np.flatnonzero(anon.alloc.tagged) + anon.alloc.layout.pfn_base).tolist())


def assert_consistent(anon: AnonMemory) -> None:
    """The observer, the allocator's tagged bits, the reservation refcounts and the stats all
    tell the same story."""
    layout = anon.alloc.layout
    assert anon.observer.tagged == memmap_tagged(anon)
    tagged = np.flatnonzero(anon.alloc.tagged)
    assert np.array_equal(np.bincount(layout.pfn_to_block[tagged],
                                      minlength=layout.nr_tag_blocks), anon.tags.refs)
    assert anon.nr_tagged == len(tagged)
    assert anon.nr_pages == int(np.count_nonzero(anon.mapcount))
    assert anon.alloc.nr_free == int(np.count_nonzero(anon.alloc.free))


def fragment(alloc: PageAllocator, n: int) -> None:
    """Take ``n`` single frames, then give every other one back: free memory in holes."""
    pfns = alloc.alloc(n, tagged=False)
    alloc.free_pfns(pfns[::2])


# -- folios are contiguous and naturally aligned --------------------------------------------------

@POLICIES
@pytest.mark.parametrize("tagged", [True, False], ids=["tagged", "untagged"])
def test_order_4_folios_are_aligned_contiguous_runs(layout64, policy, tagged):
    anon = make_anon(layout64, policy, order=4)
    fragment(anon.alloc, 3000)
    anon.mte_map(1, 256 * 16, 256 * 16 if tagged else 0)
    folios = anon.procs[1].reshape(256, 16)
    assert (np.diff(folios, axis=1) == 1).all()                 # contiguous
    assert (folios[:, 0] % 16 == 0).all()                       # naturally aligned
    blocks = layout64.pfn_to_block[folios - layout64.pfn_base]
    # 4 KiB blocks: one tag page serves 32 data pages, so an order-4 folio needs one block.
    assert (blocks == blocks[:, :1]).all()
    assert anon.tags.stats.reservations == (256 if tagged else 0)   # one call per folio
    assert_consistent(anon)


@POLICIES
def test_order_6_folio_lies_under_exactly_two_tag_blocks(layout64, policy):
    anon = make_anon(layout64, policy, order=6)
    fragment(anon.alloc, 3000)
    anon.mte_map(1, 64 * 20)
    folios = anon.procs[1].reshape(20, 64)
    assert (np.diff(folios, axis=1) == 1).all() and (folios[:, 0] % 64 == 0).all()
    blocks = layout64.pfn_to_block[folios - layout64.pfn_base]
    assert all(len(set(row)) == 2 for row in blocks.tolist())


def test_cow_swap_and_migration_targets_are_folios_too(layout64):
    anon = make_anon(layout64, "random", order=4)
    fragment(anon.alloc, 3000)
    anon.mte_map(1, 512, 256)
    anon.fork(1, 2)
    anon.cow(2, 64)
    anon.migrate(1, 32)
    anon.swap_out(1, 48)
    anon.swap_in(1, 48)
    for pid in (1, 2):
        pfns = anon.procs[pid]
        starts = np.sort(pfns[pfns % 16 == 0])
        assert len(starts) * 16 == len(pfns)          # every frame in a whole aligned run
        assert set(pfns.tolist()) == set((starts[:, None] + np.arange(16)).ravel().tolist())
    assert_consistent(anon)


def test_a_tail_smaller_than_a_folio_is_order_0(layout64):
    anon = make_anon(layout64, "sequential", order=4)
    anon.mte_map(1, 100)                                 # 6 folios and 4 pages
    assert anon.tags.stats.reservations == 6 + 4
    assert anon.nr_tagged == 100


def test_no_aligned_run_left_is_out_of_memory_and_takes_nothing(layout64):
    alloc = PageAllocator(layout64, "sequential")
    pfns = alloc.alloc(layout64.data_pages, tagged=False)
    alloc.free_pfns(pfns[::2])                          # half free, but no two frames adjacent
    free = alloc.nr_free
    with pytest.raises(OutOfMemory):
        alloc.alloc(16, tagged=False, order=4)
    with pytest.raises(OutOfMemory):
        alloc.alloc(free + 1, tagged=False)
    assert alloc.nr_free == free == int(alloc.free.sum())
    assert len(alloc.alloc(free, tagged=True)) == free


# -- untagged memory stays off taggable frames ----------------------------------------------------

@pytest.fixture
def split_layout() -> MachineLayout:
    """64 MiB of tagged memory and its 2 MiB of tag storage, then 16 MiB of DRAM that no tag
    region covers (4096 untaggable data pages)."""
    return MachineLayout(dram=[(0x8000_0000, 64 * MIB), (0x9000_0000, 2 * MIB + 16 * MIB)],
                         regions=[TagRegion("tags0", 0x9000_0000, 2 * MIB, 4096, 0x8000_0000,
                                            64 * MIB)])


@POLICIES
@pytest.mark.parametrize("order", [0, 4])
def test_untagged_allocations_take_untaggable_frames_first(split_layout, policy, order):
    layout = split_layout
    taggable, untaggable = layout.taggable_mask, layout.data_pfn_mask & ~layout.taggable_mask
    assert int(untaggable.sum()) == 4096 and int(taggable.sum()) == 16384
    anon = make_anon(layout, policy, order=order)
    alloc = anon.alloc
    anon.mte_map(1, 512, 256)                           # 256 tagged, 256 untagged
    anon.mte_map(2, 2048, 0)
    held = np.flatnonzero(~alloc.free & layout.data_pfn_mask)
    assert int(taggable[held].sum()) == 256             # only the PROT_MTE pages
    assert alloc.tagged[held].sum() == 256 and alloc.tagged[held[taggable[held]]].all()
    assert (alloc.free | ~taggable | alloc.tagged).all()   # every other taggable frame free
    # Untagged memory spills into taggable frames only when nothing else is free.
    anon.mte_map(3, 4096 - 256 - 2048 + 128, 0)
    held = np.flatnonzero(~alloc.free & layout.data_pfn_mask)
    assert not (alloc.free & untaggable).any()
    assert int((taggable[held] & ~alloc.tagged[held]).sum()) == 128
    assert_consistent(anon)


def test_tagged_allocations_never_land_on_untaggable_frames(split_layout):
    alloc = PageAllocator(split_layout, "sequential")
    pfns = alloc.alloc(16384, tagged=True)
    assert split_layout.taggable_mask[pfns - split_layout.pfn_base].all()
    with pytest.raises(OutOfMemory):
        alloc.alloc(1, tagged=True)
    assert alloc.nr_free == 4096


# -- only PROT_MTE pages reach the hooks, and the observer sees every one -------------------------

@POLICIES
@pytest.mark.parametrize("order", [0, 2])
def test_observer_sees_exactly_the_prot_mte_frames(layout64, policy, order):
    anon = make_anon(layout64, policy, order=order)
    obs, st = anon.observer, anon.tags.stats
    anon.mte_map(1, 96, 40)                 # first 40 PROT_MTE, last 56 not
    assert st.reservations == (40 >> order)
    assert len(memmap_tagged(anon)) == 40 and obs.calls == [("written", 40)]
    assert_consistent(anon)
    anon.fork(1, 2)                         # shares all 96: no tag work
    assert obs.calls == [("written", 40)]
    anon.cow(2, 80)                         # last 80 of the child: 24 PROT_MTE, 56 not
    assert anon.copies == 24 and obs.calls[-1] == ("written", 24)
    assert anon.nr_pages == 96 + 80 and anon.nr_tagged == 40 + 24
    assert_consistent(anon)
    anon.swap_out(1, 70)                    # the parent's private pages: its last 80
    assert anon.swapped[1] == 70 and anon.swapped_tagged[1] == 14
    assert obs.calls[-1] == ("freed", 14)
    assert_consistent(anon)
    anon.swap_in(1, 20)                     # PROT_MTE pages come back first
    assert anon.swapped[1] == 50 and anon.swapped_tagged[1] == 0
    assert obs.calls[-1] == ("written", 14)
    assert_consistent(anon)
    anon.migrate(2, 30)                     # child's private pages, from the front
    assert_consistent(anon)
    anon.swap_in(1, 50)
    assert int(anon._is_tagged(anon.procs[1]).sum()) == 40     # the parent is whole again
    anon.exit(2)
    assert_consistent(anon)
    anon.exit(1)
    assert obs.tagged == set() and not anon.tags.refs.any()
    # Peak: during the migration, the 24 new PROT_MTE frames are taken before the old go.
    assert anon.nr_pages == anon.nr_tagged == 0 and anon.peak_tagged == 40 + 24 + 24
    assert_consistent(anon)


def test_untagged_process_never_calls_a_hook(layout64, monkeypatch):
    anon = make_anon(layout64, "random")
    for hook in ("set_ptes_at", "copy_highpage", "arch_swap_restore", "free_tag_storage"):
        monkeypatch.setattr(TagStorage, hook, lambda *a, hook=hook, **k: pytest.fail(hook))
    anon.mte_map(1, 256, 0)
    anon.fork(1, 2)
    anon.cow(2, 64)
    anon.swap_out(1, 32)
    anon.swap_in(1, 32)
    anon.migrate(1, 16)
    anon.exit(2)
    anon.exit(1)
    assert anon.observer.calls == [] and anon.copies == 0
    assert anon.peak_pages == 256 + 64 + 16 and anon.nr_pages == 0


def test_observer_calls_do_not_depend_on_the_hooks(layout64, monkeypatch):
    """A hook that reserves nothing still leaves the observer told which tags were written:
    the calls are on the mm side, so the checker can catch the broken hook."""
    anon = make_anon(layout64, "sequential")
    seen = []
    anon.observer = type("O", (), {"tags_written": lambda self, p: seen.append(len(p)),
                                   "tags_freed": lambda self, p: seen.append(-len(p))})()
    monkeypatch.setattr(TagStorage, "set_ptes_at", lambda self, pfns, order=0: None)
    monkeypatch.setattr(TagStorage, "free_tag_storage", lambda self, pfns: None)
    anon.mte_map(1, 40, 33)
    anon.exit(1)
    assert seen == [33, -33] and not anon.tags.refs.any()


def test_captured_pages_are_observed(layout64):
    anon = make_anon(layout64)
    S = layout64.regions[0].tagged_pfn
    anon.tag_pfns(S + 64, 2)
    assert anon.observer.tagged == {S + 64, S + 65, S + 66, S + 67} == memmap_tagged(anon)
    anon.untag_pfns(S + 64, 1)
    assert anon.observer.tagged == {S + 66, S + 67} == memmap_tagged(anon)
    assert_consistent(anon)
