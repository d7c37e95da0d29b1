"""The rules of DESIGN.md section 3, checked as a run goes, each breach counted with its event.

1. ``tags_reserved``: a tagged page's tag block is reserved, every one of its tag pages
   holding tags, before the page's tags are written. One breach per data page written.
2. ``tags_xor_cache``: a tag page that holds tags never holds cached data, and vice versa.
   One breach per page stored on a tag page whose block has tagged data pages.
3. ``restore_fresh``: a restore returns exactly the latest clean contents of the page. One
   breach per page restored from a copy older than the page, or from no copy at all, and per
   copy that survives its invalidation.
4. ``reserve_bounded``: a reservation never fails, never sleeps, copies nothing, and drops at
   most the stored pages of the folios that lie on the tag pages it claims. One breach per
   claim that does not.
5. ``no_dirty_store``: data not yet on disk never goes to cleancache. One breach per page.
6. ``conservation``: stored - restored - invalidated - reclaimed - evicted == cached, checked
   every :data:`CONSERVATION_INTERVAL` events and at the end. One breach per failed check.
   (The tag-storage backend has no other way to lose a page; a backend that has one adds its
   counter here.)

The checker trusts nothing it checks. It keeps its own ground truth, fed by observation calls
that the model makes at the boundary of each layer (the engine wires them with
:meth:`Checker.attach`; the model never imports this module):

* contents: a generation per page-cache slot, bumped by every write and truncation
  (``pages_written``, ``pages_truncated``), the generation on disk (``pages_cleaned`` at
  writeback), and the generation of every stored copy (``stored``), so rules 3 and 5 compare
  contents, not flags;
* tagged memory: its own tagged bit per frame and tagged-page count per tag block, from the
  generic mm side (``tags_written``, ``tags_freed``), not from the reservation refcounts;
* reservations: the backend's cached-page count before and after each claim, against a bound
  it derives from the layout (the tag pages of the claimed block) and its own record of which
  folio was stored on each tag page, and the tag pages whose use changed against the block's
  own plus those stored pages; never from what the backend says it did.

It reads the backend's state only through ``tag_page_use()`` (what each tag page holds),
``locate()`` (where a slot's copy is) and ``cached_pages``. :meth:`Checker.walk` adds a full
walk of every list and counter at the end; a structural fault found there is counted under the
rule it endangers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tagcache.cleancache.backend import USE_CACHE, USE_TAGS

if TYPE_CHECKING:
    from tagcache.cleancache.frontend import Cleancache
    from tagcache.mm.filemap import PageCache
    from tagcache.mte import TagStorage

RULES = ("tags_reserved", "tags_xor_cache", "restore_fresh", "reserve_bounded",
         "no_dirty_store", "conservation")
MAX_REPORTS = 20
"""Reports with details kept per rule; every breach is counted and its event recorded."""
MAX_EVENTS = 100_000
"""Event numbers kept per rule."""
CONSERVATION_INTERVAL = 4096


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
    events: dict[str, list[int]] = field(default_factory=lambda: {r: [] for r in RULES})
    event: int = -1
    pagecache: PageCache | None = None

    def __post_init__(self) -> None:
        n = self.nr_slots
        self.version = np.zeros(n, np.uint32)     # contents generation of each page
        self.disk = np.zeros(n, np.uint32)        # generation on disk
        self.copy = np.zeros(n, np.uint32)        # generation of the stored copy
        self.held = np.zeros(n, bool)             # a copy was stored and not yet given back
        self.folio_head = np.full(n, -1, np.int32)   # folio each copy was stored with
        self.folio_nr = np.zeros(n, np.int32)
        self.tags: TagStorage | None = None
        self.cleancache: Cleancache | None = None
        self.backend: Any = None
        self._claim: tuple | None = None   # block, cached before, bound, tag-page use before

    # -- wiring ----------------------------------------------------------------------------

    def attach(self, *, pagecache: PageCache, cleancache: Cleancache, tags: TagStorage,
               anon: Any = None) -> None:
        """Become the observer of every layer of one machine."""
        self.pagecache, self.cleancache, self.tags = pagecache, cleancache, tags
        self.backend = cleancache.backend
        layout = tags.layout
        self.tp_slot = np.full(layout.nr_tag_pages, -1, np.int64)
        self.block_tagged = np.zeros(layout.nr_tag_blocks, np.int32)
        self.pfn_tagged = np.zeros(layout.nr_pfns, bool)
        pagecache.observer = self
        cleancache.observer = self
        tags.observer = self
        if anon is not None:
            anon.observer = self

    def fail(self, rule: str, detail: str, n: int = 1) -> None:
        """Count ``n`` breaches of ``rule`` at the current event."""
        if n <= 0:
            return
        self.counts[rule] += n
        ev = self.events[rule]
        if len(ev) < MAX_EVENTS:
            ev.extend([self.event] * min(n, MAX_EVENTS - len(ev)))
        if sum(1 for r in self.reports if r.rule == rule) < MAX_REPORTS:
            self.reports.append(Violation(rule, self.event, detail))

    def _blocks_hold_tags(self, blocks: np.ndarray) -> np.ndarray:
        """For each block: reserved, and (with a backend) every tag page holding tags."""
        ok = self.tags.refs[blocks] > 0
        if self.backend is not None:
            pages = self.tags.layout.block_tag_pages_range
            for i, b in enumerate(blocks.tolist()):
                if ok[i]:
                    ok[i] = bool((self.backend.tag_page_use(pages(b)) == USE_TAGS).all())
        return ok

    # -- tagged memory (generic mm side) ---------------------------------------------------

    def tags_written(self, pfns: np.ndarray) -> None:
        """Tags of ``pfns`` were just written (mte_sync_tags(), a tag copy, a tag restore)."""
        layout = self.tags.layout
        i = np.asarray(pfns, np.int64) - layout.pfn_base
        fresh = i[~self.pfn_tagged[i]]
        self.pfn_tagged[fresh] = True
        blocks = layout.pfn_to_block[i]
        np.add.at(self.block_tagged, layout.pfn_to_block[fresh], 1)
        uniq, inv = np.unique(blocks, return_inverse=True)
        # Each tagged page holds its own reference: a block reserved for other pages does
        # not make up for a hook that did not reserve.
        bad = ~self._blocks_hold_tags(uniq) | (self.tags.refs[uniq] < self.block_tagged[uniq])
        if bad.any():
            n = int(np.count_nonzero(bad[inv]))
            self.fail("tags_reserved", f"tags of {n} pages written under tag blocks "
                                       f"{uniq[bad][:4].tolist()} not holding tags", n)

    def tags_freed(self, pfns: np.ndarray) -> None:
        layout = self.tags.layout
        i = np.asarray(pfns, np.int64) - layout.pfn_base
        gone = i[self.pfn_tagged[i]]
        self.pfn_tagged[gone] = False
        np.subtract.at(self.block_tagged, layout.pfn_to_block[gone], 1)

    # -- page contents (page cache) --------------------------------------------------------

    def pages_written(self, first: int, end: int) -> None:
        self.version[first:end] += 1

    def pages_cleaned(self, head: int, nr: int) -> None:
        self.disk[head:head + nr] = self.version[head:head + nr]

    def pages_truncated(self, first: int, end: int) -> None:
        """Gone past EOF, from the page cache and the disk alike."""
        self.version[first:end] += 1
        self.disk[first:end] = self.version[first:end]

    # -- cleancache frontend ---------------------------------------------------------------

    def stored(self, head: int, nr: int) -> None:
        """The backend accepted copies of slots ``[head, head + nr)``."""
        sl = slice(head, head + nr)
        dirty = int(np.count_nonzero(self.version[sl] != self.disk[sl]))
        if dirty:
            self.fail("no_dirty_store", f"{dirty} pages of the folio at slot {head} stored "
                                        "with contents not on disk", dirty)
        self.copy[sl] = self.version[sl]
        self.held[sl] = True
        self.folio_head[sl] = head
        self.folio_nr[sl] = nr
        slots = np.arange(head, head + nr)
        tps = np.asarray(self.backend.locate(slots), np.int64)
        held = tps >= 0
        if not held.all():
            lost = int(np.count_nonzero(~held))
            self.fail("tags_xor_cache", f"{lost} pages stored at slot {head} held by no tag page",
                      lost)
        tps = tps[held]
        self.tp_slot[tps] = slots[held]
        if len(tps):
            layout = self.tags.layout
            blocks = layout.tag_page_block[tps]
            on_tags = (self.block_tagged[blocks] > 0) | (self.tags.refs[blocks] > 0)
            n = int(np.count_nonzero(on_tags))
            if n:
                self.fail("tags_xor_cache", f"{n} pages of the folio at slot {head} stored on "
                                            f"tag pages {tps[on_tags][:4].tolist()} of reserved "
                                            "blocks", n)

    def restored(self, slots: np.ndarray) -> None:
        """The backend handed back copies of ``slots``."""
        slots = np.asarray(slots, np.int64)
        bad = ~self.held[slots] | (self.copy[slots] != self.version[slots])
        n = int(np.count_nonzero(bad))
        if n:
            self.fail("restore_fresh", f"{n} pages restored from an old or absent copy "
                                       f"(slots {slots[bad][:4].tolist()})", n)
        self.held[slots] = False

    def invalidated(self, first: int, end: int) -> None:
        """The backend was told to forget ``[first, end)``."""
        left = np.flatnonzero(np.asarray(self.backend.locate(np.arange(first, end))) >= 0)
        if len(left):
            self.fail("restore_fresh", f"{len(left)} copies survived invalidation of slots "
                                       f"[{first}, {end})", len(left))
        self.held[first:end] = False

    # -- reservations ----------------------------------------------------------------------

    def reserve_begin(self, block: int) -> None:
        """A claim of ``block`` starts: note the cached pages and derive the bound."""
        backend = self.backend
        pages = self.tags.layout.block_tag_pages_range(block)
        slots = self.tp_slot[pages.start:pages.stop]
        slots = slots[slots >= 0]
        want: set[int] = set()
        for s in slots.tolist():
            h, nr = int(self.folio_head[s]), int(self.folio_nr[s])
            if h >= 0:
                want.update(range(h, h + nr))
        bound = 0
        if want:
            cand = np.fromiter(want, np.int64, len(want))
            bound = int(np.count_nonzero(np.asarray(backend.locate(cand)) >= 0))
        use = np.array(backend.tag_page_use(range(0, self.tags.layout.nr_tag_pages)))
        self._claim = (block, backend.cached_pages, bound, use)

    def reserve_end(self, block: int, work: Any) -> None:
        b, before, bound, use = self._claim
        assert b == block
        self._claim = None
        pages = self.tags.layout.block_tag_pages_range(block)
        dropped = before - self.backend.cached_pages
        touched = int(np.count_nonzero(np.asarray(self.backend.tag_page_use(
            range(0, len(use)))) != use))
        problems = []
        if dropped > bound:
            problems.append(f"dropped {dropped} pages, only {bound} were stored on it")
        if touched > len(pages) + bound:
            problems.append(f"changed {touched} tag pages, more than its block and the "
                            f"{bound} stored pages")
        if getattr(work, "failed", False) or getattr(work, "slept", False) or getattr(
                work, "copied", 0):
            problems.append(f"failed={work.failed} slept={work.slept} copied={work.copied}")
        if not (self.backend.tag_page_use(pages) == USE_TAGS).all():
            problems.append("left tag pages not holding tags")
        if problems:
            self.fail("reserve_bounded", f"claim of block {block}: " + "; ".join(problems))

    # -- counters --------------------------------------------------------------------------

    def check_conservation(self) -> None:
        """stored - restored - invalidated - reclaimed - evicted == cached, from the frontend's
        counters and the backend's own count of what it holds."""
        cc = self.cleancache
        if cc is None or cc.backend is None:
            return
        s = cc.stats
        expect = s.stored - s.restored - s.invalidated - s.reclaimed - cc.backend.evicted
        cached = cc.backend.cached_pages
        if expect != cached:
            self.fail("conservation", f"stored {s.stored} - restored {s.restored} - "
                                      f"invalidated {s.invalidated} - reclaimed {s.reclaimed} "
                                      f"- evicted {cc.backend.evicted} = {expect}, "
                                      f"but {cached} cached")

    # -- full walk -------------------------------------------------------------------------

    def walk(self, tags: TagStorage, tagged_memmap: np.ndarray) -> None:
        """Check every structure end to end (slow: at the end of a run, or in tests).

        ``tagged_memmap`` is the allocator's per-frame tagged bit, the truth the tag block
        reference counts must agree with.
        """
        pc = self.pagecache
        for e in pc.verify():       # a broken page cache can serve or store the wrong data
            self.fail("restore_fresh", f"page cache: {e}")
        self.check_conservation()
        layout = tags.layout
        tagged = np.flatnonzero(tagged_memmap)
        expect = np.bincount(layout.pfn_to_block[tagged], minlength=layout.nr_tag_blocks)
        if not np.array_equal(expect, tags.refs):
            n = int(np.count_nonzero(expect != tags.refs))
            self.fail("tags_reserved", f"{n} tag block reference counts disagree with the "
                                       "memmap", n)
        backend = tags.backend
        if backend is None:
            return
        for e in backend.verify():
            self.fail("tags_xor_cache", f"backend: {e}")
        use = np.asarray(backend.tag_page_use(range(0, layout.nr_tag_pages)))
        reserved = tags.refs[layout.tag_page_block] > 0
        n = int(np.count_nonzero(reserved & (use == USE_CACHE)))
        if n:
            self.fail("tags_xor_cache", f"{n} cached pages on reserved tag blocks", n)
        where = np.asarray(backend.locate(np.arange(self.nr_slots)))
        stored = np.flatnonzero(where >= 0)
        both = stored[pc.head[stored] >= 0]
        if len(both):
            self.fail("restore_fresh", f"{len(both)} pages both in the page cache and stored",
                      len(both))
        stale = stored[~self.held[stored] | (self.copy[stored] != self.version[stored])]
        if len(stale):
            self.fail("restore_fresh", f"{len(stale)} stored copies are older than the page",
                      len(stale))

    def to_json(self) -> dict[str, int]:
        return dict(self.counts)
