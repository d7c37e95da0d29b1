"""The rules of DESIGN.md section 3, as the checker (engine/checker.py) counts them, each
breach with its event.

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
"""

from __future__ import annotations

from dataclasses import dataclass

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
