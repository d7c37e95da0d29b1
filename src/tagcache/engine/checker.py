"""The invariant checker: the rules of DESIGN.md section 3 (engine/rules.py) as flat state and
compiled observation functions.

The checker trusts nothing it checks. The page cache, cleancache frontend, tag storage and
anonymous memory call these functions at the boundary of each layer (the sites marked
``# observer:``), each guarded by ``ck.c[ON]`` so that a run without the checker pays one branch
per site and nothing else. Ground truth is the checker's own: a contents generation per page-cache
slot (``version``), the generation on disk (``disk``) and of each stored copy (``copy``,
``held``, the folio it was stored with), its own tagged bit per frame and tagged-page count per
tag block, and the backend's cached count and tag-page states measured before and after every
claim. It reads the backend only through where a slot's copy is (``slot_tp``: locate()), what
each tag page holds (``tp_state``: tag_page_use()) and how many pages it caches.

Every breach is counted at its event; the event numbers (at most MAX_EVENTS per rule) and the
first MAX_REPORTS breaches per rule, as (kind, event, n, x, y) rows, are kept in arrays and
turned into sentences by :func:`reports` after the run. machine.walk() adds a full walk of
every list and counter at the end; a structural fault found there is counted under the rule
it endangers.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.experimental import structref

from tagcache.engine.flat import state_class
from tagcache.engine.rules import MAX_EVENTS, MAX_REPORTS, RULES, Violation

TAGS_RESERVED, TAGS_XOR_CACHE, RESTORE_FRESH, RESERVE_BOUNDED, NO_DIRTY_STORE, CONSERVATION = (
    range(6))
assert RULES[CONSERVATION] == "conservation"

# Counters (ck.c).
ON, EVENT, CLAIM_BLOCK, CLAIM_BEFORE, CLAIM_BOUND, NR_MARKED = range(6)
COUNT0 = 8                   # COUNT0 + rule: breaches of the rule
NR_COUNTERS = COUNT0 + len(RULES)

USE_FREE, USE_CACHE, USE_TAGS = 0, 1, 2

# Report kinds: which sentence, and what x and y hold.
(K_TAGS_WRITTEN, K_DIRTY_STORE, K_STORED_NOWHERE, K_STORED_ON_TAGS, K_STALE_RESTORE,
 K_SURVIVED, K_CLAIM, K_CONSERVATION) = range(8)
CLAIM_DROPPED, CLAIM_TOUCHED, CLAIM_DECLARED, CLAIM_NOT_TAGS = 1, 2, 4, 8
MESSAGES = {
    K_TAGS_WRITTEN: "tags of {n} pages written under tag block {x} not holding tags",
    K_DIRTY_STORE: "{n} pages of the folio at slot {x} stored with contents not on disk",
    K_STORED_NOWHERE: "{n} pages stored at slot {x} held by no tag page",
    K_STORED_ON_TAGS: "{n} pages of the folio at slot {x} stored on tag page {y} of a "
                      "reserved block",
    K_STALE_RESTORE: "{n} pages restored from an old or absent copy (slot {x})",
    K_SURVIVED: "{n} copies survived invalidation of slots [{x}, {y})",
    K_CONSERVATION: "stored - restored - invalidated - reclaimed - evicted = {x}, but {y} "
                    "cached",
}


_i64, _i32, _u32, _u8 = types.int64[::1], types.int32[::1], types.uint32[::1], types.uint8[::1]
FIELDS = (
    ("c", _i64),                        # ON, EVENT, the claim's snapshot, COUNT0 + rule
    ("version", _u32),                  # per slot: contents generation
    ("disk", _u32),                     # per slot: generation on disk
    ("copy", _u32),                     # per slot: generation of the stored copy
    ("held", _u8),                      # per slot: a copy was stored, not given back
    ("folio_head", _i32),               # per slot: folio its copy was stored with
    ("folio_nr", _i32),
    ("mark", _u8),                      # per slot: scratch of reserve_begin()
    ("marked", _i64),
    ("tp_slot", _i64),                  # per tag page: slot whose copy it took, by the checker
    ("block_tagged", _i32),             # per tag block: tagged data pages, by the checker
    ("pfn_tagged", _u8),                # per frame: tags written, by the checker
    ("claim_use", _u8),                 # per tag page: its use before the claim
    ("events", types.int64[:, ::1]),    # per rule: event numbers of breaches
    ("nr_events", _i64),
    ("report_rows", types.int64[:, :, ::1]),    # per rule: (kind, event, n, x, y)
    ("nr_reports", _i64),
    ("pfn_to_block", _i32),             # the layout's mapping (hw/layout.py)
    ("tag_page_block", _i32),
    ("block_first_tag_page", _i32),
    ("block_tag_pages", _i32),
    ("refs", _i32),                     # per tag block: the tag storage's reservations
)


@structref.register
class CheckStateType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


CHECK_STATE = CheckStateType(list(FIELDS))


@njit(cache=True)
def _new(c, version, disk, copy, held, folio_head, folio_nr, mark, marked, tp_slot,
         block_tagged, pfn_tagged, claim_use, events, nr_events, report_rows, nr_reports,
         pfn_to_block, tag_page_block, block_first_tag_page, block_tag_pages, refs):
    ck = structref.new(CHECK_STATE)
    ck.c = c
    ck.version = version
    ck.disk = disk
    ck.copy = copy
    ck.held = held
    ck.folio_head = folio_head
    ck.folio_nr = folio_nr
    ck.mark = mark
    ck.marked = marked
    ck.tp_slot = tp_slot
    ck.block_tagged = block_tagged
    ck.pfn_tagged = pfn_tagged
    ck.claim_use = claim_use
    ck.events = events
    ck.nr_events = nr_events
    ck.report_rows = report_rows
    ck.nr_reports = nr_reports
    ck.pfn_to_block = pfn_to_block
    ck.tag_page_block = tag_page_block
    ck.block_first_tag_page = block_first_tag_page
    ck.block_tag_pages = block_tag_pages
    ck.refs = refs
    return ck


@njit(cache=True)
def _unpack(ck):
    return (ck.c, ck.version, ck.disk, ck.copy, ck.held, ck.folio_head, ck.folio_nr, ck.mark,
            ck.marked, ck.tp_slot, ck.block_tagged, ck.pfn_tagged, ck.claim_use, ck.events,
            ck.nr_events, ck.report_rows, ck.nr_reports, ck.pfn_to_block, ck.tag_page_block,
            ck.block_first_tag_page, ck.block_tag_pages, ck.refs)


CheckState = state_class(
    CheckStateType, [f for f, _ in FIELDS], _new, _unpack, "CheckState", __name__,
    "The checker's ground truth, counters and breach log.")


class _NoLayout:
    nr_tag_pages = nr_tag_blocks = nr_pfns = 0
    pfn_to_block = tag_page_block = block_first_tag_page = block_tag_pages = np.zeros(
        0, np.int32)


_NO_LAYOUT = _NoLayout()


def make_checker(layout, nr_slots: int, on: bool) -> CheckState:
    """Ground truth for ``nr_slots`` page-cache slots on ``layout``; with ``on`` False every
    array is empty and every observation returns at once."""
    if layout is None:
        on, layout = False, _NO_LAYOUT
    n = nr_slots if on else 0
    t = layout.nr_tag_pages if on else 0
    c = np.zeros(NR_COUNTERS, np.int64)
    c[ON] = int(on)
    c[EVENT] = -1
    return CheckState(
        c, np.zeros(n, np.uint32), np.zeros(n, np.uint32), np.zeros(n, np.uint32),
        np.zeros(n, np.uint8), np.full(n, -1, np.int32), np.zeros(n, np.int32),
        np.zeros(n, np.uint8), np.zeros(n, np.int64), np.full(t, -1, np.int64),
        np.zeros(layout.nr_tag_blocks if on else 0, np.int32),
        np.zeros(layout.nr_pfns if on else 0, np.uint8), np.zeros(t, np.uint8),
        np.zeros((len(RULES), MAX_EVENTS if on else 0), np.int64),
        np.zeros(len(RULES), np.int64), np.zeros((len(RULES), MAX_REPORTS, 5), np.int64),
        np.zeros(len(RULES), np.int64),
        np.ascontiguousarray(layout.pfn_to_block if on else np.zeros(0, np.int32), np.int32),
        np.ascontiguousarray(layout.tag_page_block, np.int32),
        np.ascontiguousarray(layout.block_first_tag_page, np.int32),
        np.ascontiguousarray(layout.block_tag_pages, np.int32),
        np.zeros(layout.nr_tag_blocks if on else 0, np.int32))


@njit(cache=True)
def fail(ck, rule, kind, n, x, y):
    """Count ``n`` breaches of ``rule`` at the current event; keep the first reports."""
    if n <= 0:
        return
    c = ck.c
    c[COUNT0 + rule] += n
    ev = ck.events
    k = ck.nr_events[rule]
    end = min(k + n, ev.shape[1])
    ev[rule, k:end] = c[EVENT]
    ck.nr_events[rule] = end
    r = ck.nr_reports[rule]
    if r < ck.report_rows.shape[1]:
        row = ck.report_rows[rule, r]
        row[0], row[1], row[2], row[3], row[4] = kind, c[EVENT], n, x, y
        ck.nr_reports[rule] = r + 1


@njit(cache=True)
def _block_holds_tags(ck, tp_state, block):
    """Reserved and, with a backend (``tp_state`` not empty), every tag page holding tags."""
    if ck.refs[block] <= 0:
        return False
    if len(tp_state):
        first = ck.block_first_tag_page[block]
        for tp in range(first, first + ck.block_tag_pages[block]):
            if tp_state[tp] != USE_TAGS:
                return False
    return True


# -- tagged memory (generic mm side) -------------------------------------------------------

@njit(cache=True)
def tags_written(ck, tp_state, pfn_base, pfns):
    """Tags of ``pfns`` were just written (mte_sync_tags(), a tag copy, a tag restore). Each
    tagged page holds its own reference: a block reserved for other pages does not make up
    for a hook that did not reserve."""
    for p in pfns:
        i = p - pfn_base
        if not ck.pfn_tagged[i]:
            ck.pfn_tagged[i] = 1
            ck.block_tagged[ck.pfn_to_block[i]] += 1
    bad, first_bad = 0, -1
    for p in pfns:
        b = ck.pfn_to_block[p - pfn_base]
        if not _block_holds_tags(ck, tp_state, b) or ck.refs[b] < ck.block_tagged[b]:
            bad += 1
            if first_bad < 0:
                first_bad = b
    fail(ck, TAGS_RESERVED, K_TAGS_WRITTEN, bad, first_bad, 0)


@njit(cache=True)
def tags_freed(ck, pfn_base, pfns):
    for p in pfns:
        i = p - pfn_base
        if ck.pfn_tagged[i]:
            ck.pfn_tagged[i] = 0
            ck.block_tagged[ck.pfn_to_block[i]] -= 1


# -- page contents (page cache) ------------------------------------------------------------

@njit(cache=True)
def pages_written(ck, first, end):
    for s in range(first, end):
        ck.version[s] += 1


@njit(cache=True)
def pages_cleaned(ck, head, nr):
    for s in range(head, head + nr):
        ck.disk[s] = ck.version[s]


@njit(cache=True)
def pages_truncated(ck, first, end):
    """Gone past EOF, from the page cache and the disk alike."""
    for s in range(first, end):
        ck.version[s] += 1
        ck.disk[s] = ck.version[s]


# -- cleancache frontend -------------------------------------------------------------------

@njit(cache=True)
def stored(ck, slot_tp, head, nr, tp_tags):
    """The backend accepted copies of slots ``[head, head + nr)`` (``tp_tags``: its units
    are the tag pages, so a copy's unit names a tag page the checker can hold against the
    reservations)."""
    dirty = nowhere = on_tags = 0
    first_tp = -1
    for s in range(head, head + nr):
        if ck.version[s] != ck.disk[s]:
            dirty += 1
        ck.copy[s] = ck.version[s]
        ck.held[s] = 1
        ck.folio_head[s] = head
        ck.folio_nr[s] = nr
        tp = slot_tp[s]
        if tp < 0:
            nowhere += 1
            continue
        if not tp_tags:
            continue
        ck.tp_slot[tp] = s
        b = ck.tag_page_block[tp]
        if ck.block_tagged[b] > 0 or ck.refs[b] > 0:
            on_tags += 1
            if first_tp < 0:
                first_tp = tp
    fail(ck, NO_DIRTY_STORE, K_DIRTY_STORE, dirty, head, 0)
    fail(ck, TAGS_XOR_CACHE, K_STORED_NOWHERE, nowhere, head, 0)
    fail(ck, TAGS_XOR_CACHE, K_STORED_ON_TAGS, on_tags, head, first_tp)


@njit(cache=True)
def restored(ck, first, end, keep):
    """The backend handed back copies of slots ``[first, end)`` (``keep``: a non-exclusive
    backend kept them too)."""
    bad, first_bad = 0, -1
    for s in range(first, end):
        if not ck.held[s] or ck.copy[s] != ck.version[s]:
            bad += 1
            if first_bad < 0:
                first_bad = s
        if not keep:
            ck.held[s] = 0
    fail(ck, RESTORE_FRESH, K_STALE_RESTORE, bad, first_bad, 0)


@njit(cache=True)
def invalidated(ck, slot_tp, first, end):
    """The backend was told to forget ``[first, end)``."""
    left = 0
    for s in range(first, end):
        if slot_tp[s] >= 0:
            left += 1
        ck.held[s] = 0
    fail(ck, RESTORE_FRESH, K_SURVIVED, left, first, end)


# -- reservations --------------------------------------------------------------------------

@njit(cache=True)
def reserve_begin(ck, tp_state, slot_tp, cached, block):
    """A claim of ``block`` starts: note the cached pages and derive the bound from the
    checker's own record of the folios stored on the block's tag pages."""
    c = ck.c
    nm = 0
    first = ck.block_first_tag_page[block]
    for tp in range(first, first + ck.block_tag_pages[block]):
        s = ck.tp_slot[tp]
        if s < 0:
            continue
        h, nr = ck.folio_head[s], ck.folio_nr[s]
        if h < 0:
            continue
        for x in range(h, h + nr):
            if not ck.mark[x]:
                ck.mark[x] = 1
                ck.marked[nm] = x
                nm += 1
    bound = 0
    for k in range(nm):
        x = ck.marked[k]
        ck.mark[x] = 0
        if slot_tp[x] >= 0:
            bound += 1
    ck.claim_use[:] = tp_state
    c[CLAIM_BLOCK], c[CLAIM_BEFORE], c[CLAIM_BOUND] = block, cached, bound


@njit(cache=True)
def reserve_end(ck, tp_state, cached, block, failed, slept, copied, may_sleep, can_fail):
    """The claim of ``block`` ended: hold what it did against the bound. A backend that
    declares it may sleep (and so migrate: copy) or fail is not held to that part of rule 4
    (backends/base.py): it is measured instead."""
    c = ck.c
    bound = c[CLAIM_BOUND]
    dropped = c[CLAIM_BEFORE] - cached
    touched = 0
    for tp in range(len(tp_state)):
        if tp_state[tp] != ck.claim_use[tp]:
            touched += 1
    first = ck.block_first_tag_page[block]
    nr_tp = ck.block_tag_pages[block]
    problems = 0
    if dropped > bound:
        problems |= CLAIM_DROPPED
    if touched > nr_tp + bound:
        problems |= CLAIM_TOUCHED
    if (failed and not can_fail) or ((slept or copied) and not may_sleep):
        problems |= CLAIM_DECLARED
    for tp in range(first, first + nr_tp):
        if tp_state[tp] != USE_TAGS:
            problems |= CLAIM_NOT_TAGS
            break
    if problems:
        fail(ck, RESERVE_BOUNDED, K_CLAIM, 1, block, problems)


# -- counters ------------------------------------------------------------------------------

@njit(cache=True)
def conservation(ck, stored_, restored_, invalidated_, reclaimed, evicted, cached):
    """stored - restored - invalidated - reclaimed - evicted == cached."""
    expect = stored_ - restored_ - invalidated_ - reclaimed - evicted
    if expect != cached:
        fail(ck, CONSERVATION, K_CONSERVATION, 1, expect, cached)


# -- after the run (Python) ----------------------------------------------------------------

def fail_walk(ck: CheckState, details: dict[int, list[str]], rule: int, detail: str,
              n: int = 1) -> None:
    """A breach found by the end-of-run walk (Python), logged like the compiled ones; its
    sentence goes to ``details``, which :func:`reports` takes."""
    fail(ck, rule, -1, n, 0, 0)
    details.setdefault(rule, []).append(detail)


def _claim_text(block: int, problems: int) -> str:
    parts = []
    if problems & CLAIM_DROPPED:
        parts.append("dropped more stored pages than were on it")
    if problems & CLAIM_TOUCHED:
        parts.append("changed more tag pages than its block and the stored pages")
    if problems & CLAIM_DECLARED:
        parts.append("failed, slept or copied")
    if problems & CLAIM_NOT_TAGS:
        parts.append("left tag pages not holding tags")
    return f"claim of block {block}: " + "; ".join(parts)


def reports(ck: CheckState, walk_details: dict[int, list[str]] | None = None
            ) -> list[Violation]:
    """The kept breaches as Violation rows (engine/rules.py), rule by rule."""
    out: list[Violation] = []
    walk = {r: list(v) for r, v in (walk_details or {}).items()}
    for rule, name in enumerate(RULES):
        for row in ck.report_rows[rule, :int(ck.nr_reports[rule])].tolist():
            kind, event, n, x, y = row
            if kind == K_CLAIM:
                text = _claim_text(x, y)
            elif kind < 0:
                text = walk[rule].pop(0) if walk.get(rule) else "found by the final walk"
            else:
                text = MESSAGES[kind].format(n=n, x=x, y=y)
            out.append(Violation(name, int(event), text))
    return out


def counts(ck: CheckState) -> dict[str, int]:
    return {name: int(ck.c[COUNT0 + r]) for r, name in enumerate(RULES)}


def events(ck: CheckState) -> dict[str, list[int]]:
    return {name: ck.events[r, :int(ck.nr_events[r])].tolist()
            for r, name in enumerate(RULES)}
