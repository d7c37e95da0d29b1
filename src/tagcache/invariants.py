"""The rules of DESIGN.md section 3, checked as a run goes, with the event number of each breach.

1. ``tags_reserved``: a tagged page's tag block is reserved (and holds no cached data) before
   its tags are written.
2. ``tags_xor_cache``: a tag page that holds tags never holds cached data, and vice versa.
3. ``restore_fresh``: a restore returns exactly the latest clean contents of the page.
4. ``reserve_bounded``: a reservation never fails, never sleeps, copies nothing, and drops at
   most the stored folios on the tag pages it needs.
5. ``no_dirty_store``: dirty pages never go to cleancache.

The checker keeps its own ground truth (the contents generation of every page, from
``PageCache.version``, and the generation each stored copy was taken at), so it does not trust
the structures it checks. :meth:`Checker.walk` adds a full walk of every list and counter; a
structural fault found there is counted under the rule it endangers (page-cache lists under
``restore_fresh``, tag-storage backend state under ``tags_xor_cache``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from tagcache.mm.page_flags import PG_DIRTY

if TYPE_CHECKING:
    from tagcache.cleancache.backend import ReserveWork
    from tagcache.mm.filemap import PageCache
    from tagcache.mte import TagStorage

RULES = ("tags_reserved", "tags_xor_cache", "restore_fresh", "reserve_bounded",
         "no_dirty_store")
MAX_REPORTS = 20


@dataclass
class Violation:
    rule: str
    event: int
    detail: str


@dataclass
class Checker:
    nr_slots: int
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))
    reports: list[Violation] = field(default_factory=list)
    event: int = -1
    pagecache: PageCache | None = None

    def __post_init__(self) -> None:
        self.copy_version = np.zeros(self.nr_slots, np.uint32)

    def fail(self, rule: str, detail: str) -> None:
        self.counts[rule] += 1
        if len(self.reports) < MAX_REPORTS:
            self.reports.append(Violation(rule, self.event, detail))

    # -- hooks -----------------------------------------------------------------------------

    def on_store(self, head: int, nr: int) -> None:
        pc = self.pagecache
        if pc.flags[head] & PG_DIRTY:
            self.fail("no_dirty_store", f"dirty folio at slot {head} offered to cleancache")
        self.copy_version[head:head + nr] = pc.version[head:head + nr]

    def on_restore(self, slots: np.ndarray) -> None:
        stale = slots[self.copy_version[slots] != self.pagecache.version[slots]]
        for s in stale[:3].tolist():
            self.fail("restore_fresh", f"slot {s} restored an old copy")
        if len(stale) > 3:
            self.counts["restore_fresh"] += len(stale) - 3

    def on_reserve(self, block: int, work: ReserveWork, bound: int) -> None:
        if work.failed or work.slept or work.copied:
            self.fail("reserve_bounded", f"block {block}: failed={work.failed} "
                                         f"slept={work.slept} copied={work.copied}")
        if work.dropped > bound:
            self.fail("reserve_bounded", f"block {block}: dropped {work.dropped} pages, "
                                         f"only {bound} were stored on it")

    def on_tags_written(self, blocks: np.ndarray, tags: TagStorage) -> None:
        unreserved = np.unique(blocks[tags.refs[blocks] <= 0])
        for b in unreserved[:3].tolist():
            self.fail("tags_reserved", f"tags written under unreserved block {b}")
        backend = tags.backend
        if backend is not None:
            n = backend.cache_pages_on_blocks(np.unique(blocks))
            if n:
                self.fail("tags_xor_cache", f"{n} cached pages on tag blocks now holding tags")

    # -- full walk -------------------------------------------------------------------------

    def walk(self, tags: TagStorage, tagged_memmap: np.ndarray) -> None:
        """Check every structure end to end (slow: at the end of a run, or in tests).

        ``tagged_memmap`` is the allocator's per-frame tagged bit, the truth the tag block
        reference counts must agree with.
        """
        pc = self.pagecache
        for e in pc.verify():       # a broken page cache can serve or store the wrong data
            self.fail("restore_fresh", f"page cache: {e}")
        backend = tags.backend
        if backend is None:
            return
        for e in backend.verify():
            self.fail("tags_xor_cache", f"backend: {e}")
        reserved = np.flatnonzero(tags.refs > 0)
        if len(reserved):
            n = backend.cache_pages_on_blocks(reserved)
            if n:
                self.fail("tags_xor_cache", f"{n} cached pages on reserved tag blocks")
        both = np.flatnonzero((pc.head >= 0) & (backend.slot_tp >= 0))
        if len(both):
            self.fail("restore_fresh", f"{len(both)} pages both in the page cache and stored")
        dirty_stored = np.flatnonzero(backend.slot_tp >= 0)
        stale = dirty_stored[self.copy_version[dirty_stored] != pc.version[dirty_stored]]
        if len(stale):
            self.fail("restore_fresh", f"{len(stale)} stored copies are older than the page")
        layout = tags.layout
        tagged = np.flatnonzero(tagged_memmap)
        if len(tagged) or tags.refs.any():
            expect = np.bincount(layout.pfn_to_block[tagged], minlength=layout.nr_tag_blocks)
            if not np.array_equal(expect, tags.refs):
                self.fail("tags_reserved", "tag block reference counts disagree with the memmap")

    def to_json(self) -> dict[str, int]:
        return dict(self.counts)

