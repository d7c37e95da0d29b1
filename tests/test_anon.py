"""engine/anon.py and engine/page_alloc.py: folios as the buddy allocator hands them out
(aligned, contiguous), untagged memory kept off taggable frames, only PROT_MTE pages through the
MTE hooks, and the observation calls the checker relies on.

The invariant checker (engine/checker.py) is switched on in every machine here and is the
observer: its own tagged bit per frame (``pfn_tagged``, set by tags_written(), cleared by
tags_freed()) must tell the story the allocator's memmap and the reservations tell, and a call
that finds its block unreserved counts a breach. The tests that list the observation calls
themselves replace them (under NUMBA_DISABLE_JIT, conftest.run_uncompiled)."""

from __future__ import annotations

import numpy as np
import pytest
from _engine import MIB
from _uncompiled import UNCOMPILED, UNCOMPILED_MARKS, run_uncompiled, uncompiled

from tagcache.engine import anon as anon_mod
from tagcache.engine import checker
from tagcache.engine.anon import (
    anon_call,
    anon_procs,
    anon_report,
    anon_step,
    anon_swapped,
    anon_tag_pfns,
    anon_untag_pfns,
    make_anon,
)
from tagcache.engine.checker import make_checker
from tagcache.engine.choices import ALLOC_POLICIES
from tagcache.engine.cleancache import make_cleancache
from tagcache.engine.page_alloc import NR_FREE, free_pfns, make_page_alloc, page_alloc
from tagcache.engine.rc import OK, OUT_OF_MEMORY
from tagcache.engine.rules import RULES
from tagcache.engine.tags import make_tag_storage, tag_storage_report
from tagcache.hw.layout import MachineLayout, TagRegion
from tagcache.workloads.events import Op

POLICIES = pytest.mark.parametrize("policy", ALLOC_POLICIES)


def test_broken_engine_uncompiled():
    run_uncompiled(__file__, 3 + 3 + 2)


class Anon:
    """Anonymous memory over a page allocator and tag storage with no backend, the checker
    on; each operation one anon_step() (engine/anon.py), as a trace's event."""

    def __init__(self, layout: MachineLayout, policy: str = "sequential", order: int = 0,
                 chunk_pages: int = 16) -> None:
        self.layout = layout
        self.ck = make_checker(layout, 0, True)
        self.ts = make_tag_storage(layout, make_cleancache("idle", ck=self.ck))
        self.pa = make_page_alloc(layout, self.ts.refs, policy, chunk_pages, seed=1)
        self.an = make_anon(self.pa, self.ts, order)

    def _step(self, op: Op, a0: int, a1: int = 0, a2: int = 0) -> None:
        assert anon_call(self.an, anon_step, int(op), a0, a1, a2) == OK

    def mte_map(self, pid: int, n: int, nr_tagged: int | None = None) -> None:
        self._step(Op.MTE_MAP, pid, n, n if nr_tagged is None else nr_tagged)

    def fork(self, parent: int, child: int) -> None:
        self._step(Op.MTE_FORK, parent, child)

    def cow(self, pid: int, n: int) -> None:
        self._step(Op.MTE_COW, pid, n)

    def swap_out(self, pid: int, n: int) -> None:
        self._step(Op.MTE_SWAP_OUT, pid, n)

    def swap_in(self, pid: int, n: int) -> None:
        self._step(Op.MTE_SWAP_IN, pid, n)

    def migrate(self, pid: int, n: int) -> None:
        self._step(Op.MTE_MIGRATE, pid, n)

    def exit(self, pid: int) -> None:
        self._step(Op.MTE_EXIT, pid)

    def tag_pfns(self, pfn: int, order: int) -> None:
        assert anon_call(self.an, anon_tag_pfns, pfn, order) == OK

    def untag_pfns(self, pfn: int, order: int) -> None:
        assert anon_untag_pfns(self.an, pfn, order) == OK

    @property
    def procs(self) -> dict[int, np.ndarray]:
        return anon_procs(self.an)

    def __getattr__(self, name: str):
        report = anon_report(self.an)
        if name in report:
            return report[name]
        raise AttributeError(name)

    @property
    def swapped(self) -> dict[int, int]:
        return anon_swapped(self.an)[0]

    @property
    def swapped_tagged(self) -> dict[int, int]:
        return anon_swapped(self.an)[1]

    @property
    def reservations(self) -> int:
        return tag_storage_report(self.ts)["reservations"]

    def is_tagged(self, pfns: np.ndarray) -> np.ndarray:
        return np.asarray(self.pa.tagged)[np.asarray(pfns) - self.layout.pfn_base]

    def observed(self) -> set[int]:
        """The frames the checker was told hold tags now."""
        return set((np.flatnonzero(self.ck.pfn_tagged) + self.layout.pfn_base).tolist())


def memmap_tagged(anon: Anon) -> set[int]:
    return set((np.flatnonzero(anon.pa.tagged) + anon.layout.pfn_base).tolist())


def assert_consistent(anon: Anon) -> None:
    """The observer, the allocator's tagged bits, the reservation refcounts and the counts all
    tell the same story, and no tags were written under an unreserved block."""
    layout = anon.layout
    assert anon.observed() == memmap_tagged(anon)
    tagged = np.flatnonzero(anon.pa.tagged)
    assert np.array_equal(np.bincount(layout.pfn_to_block[tagged],
                                      minlength=layout.nr_tag_blocks), anon.ts.refs)
    assert anon.nr_tagged == len(tagged)
    assert anon.nr_pages == int(np.count_nonzero(anon.an.mapcount))
    assert int(anon.pa.c[NR_FREE]) == int(np.count_nonzero(anon.pa.free))
    assert checker.counts(anon.ck) == dict.fromkeys(RULES, 0)


def alloc(pa, n: int, tagged: bool, order: int = 0) -> np.ndarray | None:
    """page_alloc(): the PFNs, or None when out of memory (nothing taken)."""
    rc, pfns = page_alloc(pa, n, tagged, order)
    assert rc in (OK, OUT_OF_MEMORY)
    return np.asarray(pfns) if rc == OK else None


def fragment(pa, n: int) -> None:
    """Take ``n`` single frames, then give every other one back: free memory in holes."""
    pfns = alloc(pa, n, tagged=False)
    assert free_pfns(pa, pfns[::2]) == OK


# -- folios are contiguous and naturally aligned --------------------------------------------------

@POLICIES
@pytest.mark.parametrize("tagged", [True, False], ids=["tagged", "untagged"])
def test_order_4_folios_are_aligned_contiguous_runs(layout64, policy, tagged):
    anon = Anon(layout64, policy, order=4)
    fragment(anon.pa, 3000)
    anon.mte_map(1, 256 * 16, 256 * 16 if tagged else 0)
    folios = anon.procs[1].reshape(256, 16)
    assert (np.diff(folios, axis=1) == 1).all()                 # contiguous
    assert (folios[:, 0] % 16 == 0).all()                       # naturally aligned
    blocks = layout64.pfn_to_block[folios - layout64.pfn_base]
    # 4 KiB blocks: one tag page serves 32 data pages, so an order-4 folio needs one block.
    assert (blocks == blocks[:, :1]).all()
    assert anon.reservations == (256 if tagged else 0)   # one call per folio
    assert_consistent(anon)


@POLICIES
def test_order_6_folio_lies_under_exactly_two_tag_blocks(layout64, policy):
    anon = Anon(layout64, policy, order=6)
    fragment(anon.pa, 3000)
    anon.mte_map(1, 64 * 20)
    folios = anon.procs[1].reshape(20, 64)
    assert (np.diff(folios, axis=1) == 1).all() and (folios[:, 0] % 64 == 0).all()
    blocks = layout64.pfn_to_block[folios - layout64.pfn_base]
    assert all(len(set(row)) == 2 for row in blocks.tolist())


def test_cow_swap_and_migration_targets_are_folios_too(layout64):
    anon = Anon(layout64, "random", order=4)
    fragment(anon.pa, 3000)
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
    anon = Anon(layout64, "sequential", order=4)
    anon.mte_map(1, 100)                                 # 6 folios and 4 pages
    assert anon.reservations == 6 + 4
    assert anon.nr_tagged == 100


def test_no_aligned_run_left_is_out_of_memory_and_takes_nothing(layout64):
    pa = make_page_alloc(layout64, np.zeros(layout64.nr_tag_blocks, np.int32), "sequential")
    pfns = alloc(pa, layout64.data_pages, tagged=False)
    assert free_pfns(pa, pfns[::2]) == OK               # half free, no two frames adjacent
    free = int(pa.c[NR_FREE])
    assert alloc(pa, 16, tagged=False, order=4) is None
    assert alloc(pa, free + 1, tagged=False) is None
    assert int(pa.c[NR_FREE]) == free == int(np.asarray(pa.free).sum())
    assert len(alloc(pa, free, tagged=True)) == free


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
    anon = Anon(layout, policy, order=order)
    pa = anon.pa
    anon.mte_map(1, 512, 256)                           # 256 tagged, 256 untagged
    anon.mte_map(2, 2048, 0)
    free, tagged = np.asarray(pa.free), np.asarray(pa.tagged)
    held = np.flatnonzero(~free & layout.data_pfn_mask)
    assert int(taggable[held].sum()) == 256             # only the PROT_MTE pages
    assert tagged[held].sum() == 256 and tagged[held[taggable[held]]].all()
    assert (free | ~taggable | tagged).all()            # every other taggable frame free
    # Untagged memory spills into taggable frames only when nothing else is free.
    anon.mte_map(3, 4096 - 256 - 2048 + 128, 0)
    free, tagged = np.asarray(pa.free), np.asarray(pa.tagged)
    held = np.flatnonzero(~free & layout.data_pfn_mask)
    assert not (free & untaggable).any()
    assert int((taggable[held] & ~tagged[held]).sum()) == 128
    assert_consistent(anon)


def test_tagged_allocations_never_land_on_untaggable_frames(split_layout):
    pa = make_page_alloc(split_layout, np.zeros(split_layout.nr_tag_blocks, np.int32),
                         "sequential")
    pfns = alloc(pa, 16384, tagged=True)
    assert split_layout.taggable_mask[pfns - split_layout.pfn_base].all()
    assert alloc(pa, 1, tagged=True) is None
    assert int(pa.c[NR_FREE]) == 4096


# -- only PROT_MTE pages reach the hooks, and the observer sees every one -------------------------

class Calls:
    """Stands for the list of calls where they cannot be listed (compiled): equal to any."""

    def __eq__(self, other) -> bool:
        return True

    def __getitem__(self, i):
        return self

    __hash__ = None

@pytest.fixture
def calls(monkeypatch) -> list[tuple[str, int]] | None:
    """The checker's observation calls, in order, as anonymous memory makes them (each also
    made, as it would be); None on the compiled engine, where they cannot be replaced."""
    if not UNCOMPILED:
        return None
    seen: list[tuple[str, int]] = []
    written, freed = checker.tags_written, checker.tags_freed

    def tags_written(ck, tp_state, pfn_base, pfns):
        seen.append(("written", len(pfns)))
        written(ck, tp_state, pfn_base, pfns)

    def tags_freed(ck, pfn_base, pfns):
        seen.append(("freed", len(pfns)))
        freed(ck, pfn_base, pfns)

    monkeypatch.setattr(checker, "tags_written", tags_written)
    monkeypatch.setattr(checker, "tags_freed", tags_freed)
    return seen


@POLICIES
@pytest.mark.parametrize("order", [pytest.param(0, marks=UNCOMPILED_MARKS),
                                   pytest.param(2, marks=UNCOMPILED_MARKS, id="2-uncompiled"),
                                   2])
def test_observer_sees_exactly_the_prot_mte_frames(layout64, policy, order, calls):
    """Uncompiled, the observation calls are listed; compiled (order 2 again), they cannot
    be, and the rest is checked."""
    if calls is None:
        calls = Calls()
    anon = Anon(layout64, policy, order=order)
    anon.mte_map(1, 96, 40)                 # first 40 PROT_MTE, last 56 not
    assert anon.reservations == (40 >> order)
    assert len(memmap_tagged(anon)) == 40 and calls == [("written", 40)]
    assert_consistent(anon)
    anon.fork(1, 2)                         # shares all 96: no tag work
    assert calls == [("written", 40)]
    anon.cow(2, 80)                         # last 80 of the child: 24 PROT_MTE, 56 not
    assert anon.copies == 24 and calls[-1] == ("written", 24)
    assert anon.nr_pages == 96 + 80 and anon.nr_tagged == 40 + 24
    assert_consistent(anon)
    anon.swap_out(1, 70)                    # the parent's private pages: its last 80
    assert anon.swapped[1] == 70 and anon.swapped_tagged[1] == 14
    assert calls[-1] == ("freed", 14)
    assert_consistent(anon)
    anon.swap_in(1, 20)                     # PROT_MTE pages come back first
    assert anon.swapped[1] == 50 and anon.swapped_tagged.get(1, 0) == 0
    assert calls[-1] == ("written", 14)
    assert_consistent(anon)
    anon.migrate(2, 30)                     # child's private pages, from the front
    assert_consistent(anon)
    anon.swap_in(1, 50)
    assert int(anon.is_tagged(anon.procs[1]).sum()) == 40     # the parent is whole again
    anon.exit(2)
    assert_consistent(anon)
    anon.exit(1)
    assert anon.observed() == set() and not anon.ts.refs.any()
    # Peak: during the migration, the 24 new PROT_MTE frames are taken before the old go.
    assert anon.nr_pages == anon.nr_tagged == 0 and anon.peak_tagged == 40 + 24 + 24
    assert_consistent(anon)


@uncompiled
def test_untagged_process_never_calls_a_hook(layout64, monkeypatch, calls):
    anon = Anon(layout64, "random")
    for hook in ("set_ptes_at", "copy_highpage", "arch_swap_restore", "free_tag_storage"):
        monkeypatch.setattr(anon_mod, hook, lambda *a, hook=hook: pytest.fail(hook))
    anon.mte_map(1, 256, 0)
    anon.fork(1, 2)
    anon.cow(2, 64)
    anon.swap_out(1, 32)
    anon.swap_in(1, 32)
    anon.migrate(1, 16)
    anon.exit(2)
    anon.exit(1)
    assert calls == [] and anon.copies == 0
    assert anon.peak_pages == 256 + 64 + 16 and anon.nr_pages == 0


@uncompiled
def test_observer_calls_do_not_depend_on_the_hooks(layout64, monkeypatch, calls):
    """A hook that reserves nothing still leaves the observer told which tags were written:
    the calls are on the mm side, so the checker can catch the broken hook."""
    anon = Anon(layout64, "sequential")
    monkeypatch.setattr(anon_mod, "set_ptes_at", lambda ts, pfns, order: OK)
    monkeypatch.setattr(anon_mod, "free_tag_storage", lambda ts, pfns: OK)
    anon.mte_map(1, 40, 33)
    assert checker.counts(anon.ck)["tags_reserved"] == 33      # ... and it does
    anon.exit(1)
    assert calls == [("written", 33), ("freed", 33)] and not anon.ts.refs.any()


def test_captured_pages_are_observed(layout64):
    anon = Anon(layout64)
    S = layout64.regions[0].tagged_pfn
    anon.tag_pfns(S + 64, 2)
    assert anon.observed() == {S + 64, S + 65, S + 66, S + 67} == memmap_tagged(anon)
    anon.untag_pfns(S + 64, 1)
    assert anon.observed() == {S + 66, S + 67} == memmap_tagged(anon)
    assert_consistent(anon)
