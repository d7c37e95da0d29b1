"""Compare the page-cache model with what the real kernel did on a capture (DESIGN.md 5).

Only pages of inodes with at least one access event count. The kernel's *insertions* are the
pages its add events inserted; its *re-insertions* are insertions of a page inserted before.
The model replays only the access events (get_pages, map_pages, fault; and the command's
writes and file deletions where the capture has ext4's write_begin and evict_inode events: a
written file's pages take room, and count where the file is also read) with no cleancache,
in the room the capture's cgroup left to the traced files over time (capacity.py: its
samples less metadata and everything charged that is not page cache), and its insertions
and re-insertions are counted the same way. The add events serve one purpose on the model's
side: each file's size (the highest page index ever inserted), since access ranges can pass
the end of the file; in diagnostics they also give the kernel's folio orders per file and
the fault outcomes, never an input. ``naive`` replays in a fixed ``cache_peak`` with no other
fact of the capture (DESIGN.md 5 to the letter).

Where the comparison departs from the kernel by construction: pages of files the command
neither read nor (with ext4 events) wrote, and whatever the cgroup held that its samples do
not separate, take room in the kernel's cgroup that the model gives to the traced files. For
mmap under pressure the trace is censored (Validation.censored), and validate reports an
interval that contains the kernel's counts (bounds.py) instead of trusting the point.

The model is the compiled engine's, built as ``tagcache run`` builds it (machine.build(): the
capture's facts applied there) and replayed by engine/validate.py's loop, which also
classifies the faults; the room's events come back here (capacity.follow_room()). The engine
is imported when a validation runs, not with this module: the CLI imports it for every
command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tagcache.bounds import Interval, kernel_bounds
from tagcache.capacity import CgroupRoom, follow_room
from tagcache.engine.page_flags import PG_FOREIGN
from tagcache.engine.pagemap import MAX_PAGECACHE_ORDER, VM_READAHEAD_PAGES
from tagcache.hw.layout import simple_layout
from tagcache.sidecar import (
    ACCESS_OPS,
    CaptureFacts,
    capture_facts,
    device_key,
    load_sidecar,
    read_ahead_pages,
    sidecar_for,
)
from tagcache.traces import read_trace
from tagcache.units import PAGE_SIZE
from tagcache.workloads.events import FileTable, Op, Trace

if TYPE_CHECKING:
    from tagcache.engine.machine import FlatMachine

FAULT_OUTCOMES = ("both_hit", "kernel_miss_model_hit", "kernel_hit_model_miss", "both_miss")


@dataclass
class Validation:
    kernel: dict[str, int]
    model: dict[str, int]
    capacity_pages: int
    files: int
    faults: dict[str, int]
    """Each fault event classified by whether the kernel (its add and delete events) and the
    model had the page cached when it came (FAULT_OUTCOMES): a diagnostic, not an input."""
    fault_pages: dict[str, int]
    """Pages the kernel inserted into the faulting file right after each class of fault (its
    add events up to the next access event): what the kernel read for those faults."""
    large_folios: bool = False
    """Whether the model gave the traced files large folios."""
    by_file: list[dict[str, Any]] = field(default_factory=list)
    """Per file with access events, most inserted by the kernel first: ``{"file": "M:m:ino",
    "path": the sidecar's path or None, "kernel": {"insertions", "reinsertions"},
    "model": {...}, "folio_orders": {"kernel": {order: folios}, "model": {...}}}``."""
    folio_orders: dict[str, dict[str, int]] = field(default_factory=dict)
    """Folios inserted into the accessed files by order, kernel and model: a diagnostic (the
    kernel's add events are never an input)."""
    capacity_lowest: int = 0
    """The least room the traced files had (capacity.py), in pages."""
    samples: int = 0
    """Cgroup samples (tagcache_sample markers) the room followed."""
    facts: list[str] = field(default_factory=list)
    """The sidecar's facts the model used (none with ``naive``)."""
    naive: bool = False
    interval: Interval | None = None
    """Bounds on the kernel's counts that hold for any replacement (bounds.py)."""

    def diverging_files(self, n: int) -> list[dict[str, Any]]:
        """The ``n`` files where model and kernel differ most (insertions + re-insertions)."""
        def gap(r: dict[str, Any]) -> int:
            return sum(abs(r["model"][k] - r["kernel"][k]) for k in ("insertions",
                                                                       "reinsertions"))
        return sorted((r for r in self.by_file if gap(r)), key=gap, reverse=True)[:n]

    @property
    def censored(self) -> float:
        """Share of the kernel's insertions that came on faults where the model hit.

        A fault event exists only where the traced kernel had no PTE for the page, so the
        trace shows every refault of a mapped page the kernel evicted but none of the
        accesses to mapped pages the kernel kept: where the model evicts a mapped page that
        the kernel kept, the process's further touches of it are invisible, the model never
        reads it back, and it keeps pages the kernel evicted instead. A high share means the
        trace is censored by the kernel's own residency and the model's insertions are a
        lower bound for that workload. The converse, kernel_hit_model_miss, is rare by
        construction: the kernel faults on a page it has cached only where the faulting
        process has not mapped it yet.
        """
        n = self.kernel["insertions"]
        return self.fault_pages["kernel_miss_model_hit"] / n if n else 0.0

    @property
    def error(self) -> dict[str, float]:
        return {k: (self.model[k] / self.kernel[k] - 1.0) if self.kernel[k] else
                (0.0 if self.model[k] == 0 else float("inf")) for k in self.kernel}

    def to_json(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "model": self.model, "error": self.error,
                "capacity_pages": self.capacity_pages, "files": self.files,
                "faults": self.faults, "fault_pages": self.fault_pages,
                "censored": self.censored, "large_folios": self.large_folios,
                "folio_orders": self.folio_orders, "capacity_lowest": self.capacity_lowest,
                "samples": self.samples, "facts": self.facts, "naive": self.naive,
                "interval": self.interval.to_json() if self.interval else None,
                "by_file": self.by_file}


def accessed_files(trace: Trace) -> np.ndarray:
    """Ids of files with at least one access event."""
    m = np.isin(trace.op, np.array(ACCESS_OPS, np.uint8))
    return np.unique(trace.arg0[m])


def kernel_counts_by_file(trace: Trace, files: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insertions and re-insertions of the kernel's add events on ``files``, per file id."""
    n = len(trace.files)
    m = (trace.op == Op.KERNEL_ADD) & np.isin(trace.arg0, files)
    f, idx, order = trace.arg0[m].astype(np.int64), trace.arg1[m], trace.arg2[m]
    if not len(f):
        return np.zeros(n, np.int64), np.zeros(n, np.int64)
    nr = np.left_shift(1, order.astype(np.int64))
    pages_f = np.repeat(f, nr)
    offs = np.arange(len(pages_f)) - np.repeat(np.cumsum(nr) - nr, nr)
    key = pages_f * (1 << 40) + np.repeat(idx, nr) + offs
    insertions = np.bincount(pages_f, minlength=n)
    first_times = np.bincount(np.unique(key) >> 40, minlength=n)
    return insertions, insertions - first_times


def kernel_counts(trace: Trace, files: np.ndarray) -> dict[str, int]:
    """Insertions and re-insertions of the kernel's add events on ``files``."""
    insertions, reinsertions = kernel_counts_by_file(trace, files)
    return {"insertions": int(insertions.sum()), "reinsertions": int(reinsertions.sum())}


def file_key(trace: Trace, f: int) -> str:
    """A file as the sidecar names it: 'M:m:inohex'."""
    return f"{device_key(int(trace.files.dev[f]))}:{int(trace.files.ino[f]) & (2**64 - 1):x}"


def written_files(trace: Trace) -> np.ndarray:
    """Ids of files the command wrote (ext4 write_begin events, Op.WRITE)."""
    return np.unique(trace.arg0[trace.op == Op.WRITE])


def model_files(trace: Trace, files: np.ndarray, large_folios: bool | np.ndarray) -> FileTable:
    """The file table the model sees: sizes from add events; the accessed files and the
    written ones spanned (a written file's pages take room even where nothing reads it);
    ``large_folios`` for every file or per file."""
    ft = trace.files
    keep = np.zeros(len(ft), bool)
    keep[files] = True
    keep[written_files(trace)] = True
    size = np.where(keep, ft.size_pages, 0)
    span = np.where(keep, np.maximum(ft.span_pages, size), 0)
    return FileTable.build(ft.dev, ft.ino, size, span,
                           np.broadcast_to(np.asarray(large_folios, bool), len(ft)))


ROOM_OPS = frozenset({int(Op.CGROUP_SAMPLE), int(Op.PAGE_ALLOC), int(Op.PAGE_FREE)})
MODEL_LAYOUT_BYTES = 1 << 20
"""The model's machine beside its page cache: validate runs no anonymous memory or tag
storage, so the smallest layout will do (the page cache is sized from the file table)."""


def build_model(trace: Trace, files: np.ndarray, facts: CaptureFacts,
                capacity_pages: int) -> FlatMachine:
    """The flat machine validate replays in (machine.build(), as run builds one): the file
    table model_files() gives for the accessed ``files``, no cleancache, the capture's
    ``facts`` applied (resident pages, mappings, readahead, folio sizes, the room for
    ``capacity_pages`` pages of page cache at most)."""
    from tagcache.engine.machine import build
    from tagcache.replay import Design, MachineConfig

    kw = facts.page_cache_kwargs()
    cfg = MachineConfig(layout=simple_layout(MODEL_LAYOUT_BYTES),
                        page_cache_limit_pages=capacity_pages, ra_pages=kw["ra_pages"],
                        max_folio_order=kw["max_folio_order"])
    ft = model_files(trace, files, facts.file_large_folios(trace.files))
    return build(cfg, Design("idle"), trace, facts, files=ft)


def kept_ops(room: CgroupRoom | None) -> list[int]:
    """The events validate replays: accesses, writes, unlinks, the kernel's adds and
    deletes, and what the ``room`` (or None) follows (cgroup samples; kmem
    events with ``nonfile``)."""
    ops = [*ACCESS_OPS, Op.WRITE, Op.UNLINK, Op.KERNEL_ADD, Op.KERNEL_DELETE]
    if room is not None and (room.use_nonfile or room.use_metadata):
        ops.append(Op.CGROUP_SAMPLE)
    if room is not None and room.use_nonfile:
        ops += [Op.PAGE_ALLOC, Op.PAGE_FREE]
    return [int(o) for o in ops]


def replay_capture(fm: FlatMachine, trace: Trace) -> tuple[dict[str, int], dict[str, int]]:
    """Replay the kept events of ``trace`` on ``fm`` (engine/validate.py's compiled loop;
    the room's events here, through capacity.follow_room()); the fault classes and the
    pages the kernel added after each class (Validation.faults, .fault_pages)."""
    from tagcache.engine import validate as loop
    from tagcache.engine.filemap import check_page_cache_error
    from tagcache.engine.pagecache import ERROR

    keep = np.isin(trace.op, np.array(kept_ops(fm.room), np.uint8))
    op = np.ascontiguousarray(trace.op[keep], np.uint8)
    a0, a1, a2 = (np.ascontiguousarray(a[keep], np.int64)
                  for a in (trace.arg0, trace.arg1, trace.arg2))
    pc, room = fm.pc, fm.room
    kernel_cached = (np.asarray(pc.head) >= 0).astype(np.int8)   # the kernel's, by its events
    vc = np.zeros(loop.NR_VC, np.int64)
    vc[loop.FAULT_FILE] = -1
    at = np.flatnonzero(np.isin(op, np.array(sorted(ROOM_OPS), np.uint8)))
    room_at = at.tolist()              # the room's events, as Python ints, in order
    room_events = list(zip(op[at].tolist(), a0[at].tolist(), a1[at].tolist(),
                           a2[at].tolist(), strict=True))
    c = fm.counters()
    i, k, n = 0, 0, len(op)
    while i < n:
        i = loop.validate_events(pc, op, a0, a1, a2, i, n, kernel_cached, vc)
        if i == n:
            break
        if c[ERROR]:
            check_page_cache_error(pc)
        if room is None or k >= len(room_at) or room_at[k] != i:
            raise ValueError(f"event op {int(op[i])} has no handler in validate")
        while k < len(room_at) and room_at[k] == i:    # a run of them without re-entering
            follow_room(room, fm, *room_events[k])     # a charge sets the limit first
            i += 1
            k += 1
        fm.set_limit()              # as machine._apply() does, before the page cache runs
    faults = {k: int(vc[loop.FAULTS + c]) for c, k in enumerate(FAULT_OUTCOMES)}
    pages = {k: int(vc[loop.FAULT_PAGES + c]) for c, k in enumerate(FAULT_OUTCOMES)}
    return faults, pages


def validate_trace(trace: Trace, capacity_pages: int, *, large_folios: bool | None = None,
                   ra_pages: int = VM_READAHEAD_PAGES, meta: dict[str, Any] | None = None,
                   naive: bool = False, mappings: bool | None = None,
                   metadata: bool | None = None, nonfile: bool | None = None,
                   minus_metadata: bool | None = None) -> Validation:
    """Replay the access events of ``trace`` through the page-cache model and compare.

    ``capacity_pages`` is the most page cache the capture's cgroup held (``cache_peak``).
    By default every measured fact of the sidecar ``meta`` is used (DESIGN.md 5): the pages
    resident before the capture are preloaded as resident and charged elsewhere
    (PG_FOREIGN); the files have large folios where its folio_orders shows them
    (``large_folios`` overrides); its executable mappings are faulted and reclaimed as
    VM_EXEC mappings and its copy-on-write ranges read but not left mapped (``mappings``);
    the room left to the traced files follows the cgroup's samples over time (capacity.py):
    less the filesystem metadata (``metadata``; ``minus_metadata`` is its old name) and less
    everything charged that is not page cache, anonymous memory foremost (``nonfile``). A
    fact the sidecar lacks is left out unless asked for explicitly (then it is an error);
    ``Validation.facts`` lists those used. ``naive`` is DESIGN.md 5's literal model: a
    capacity of ``capacity_pages`` and nothing else (order-0 folios, an empty cache).
    """
    files = accessed_files(trace)
    facts = capture_facts(trace, meta, large_folios=large_folios, ra_pages=ra_pages,
                          naive=naive, mappings=mappings, metadata=metadata, nonfile=nonfile,
                          minus_metadata=minus_metadata)
    fm = build_model(trace, files, facts, capacity_pages)
    room = fm.room
    assert room is not None
    start_room = room.pages
    faults, fault_pages = replay_capture(fm, trace)
    from tagcache.engine.pagecache import file_counts

    pc = fm.pc
    ins, reins, orders = file_counts(pc)
    model = {"insertions": int(ins[files].sum()), "reinsertions": int(reins[files].sum())}
    k_ins, k_re = kernel_counts_by_file(trace, files)
    paths = (meta or {}).get("paths") or {}
    keys = {f: file_key(trace, f) for f in files.tolist()}
    k_orders = kernel_orders_by_file(trace, files)
    by_file = [{"file": keys[f], "path": paths.get(keys[f]),
                "kernel": {"insertions": int(k_ins[f]), "reinsertions": int(k_re[f])},
                "model": {"insertions": int(ins[f]), "reinsertions": int(reins[f])},
                "folio_orders": {"kernel": _histogram(k_orders[f]),
                                 "model": _histogram(orders[f])}}
               for f in sorted(files.tolist(), key=lambda f: (-int(k_ins[f]), f))]
    kernel = {"insertions": int(k_ins.sum()), "reinsertions": int(k_re.sum())}
    limit = (meta or {}).get("limit_mib")
    limit_pages = int(limit * 256) if isinstance(limit, int | float) else room.peak
    foreign = (np.asarray(pc.flags) & PG_FOREIGN) != 0
    interval = kernel_bounds(trace, files, np.asarray(pc.isize), np.asarray(pc.base), foreign,
                             limit_pages, int(pc.ra_pages))
    return Validation(kernel, model, start_room, len(files), faults,
                      fault_pages, facts.large_folios, by_file,
                      folio_orders={"kernel": _histogram(k_orders.sum(axis=0)),
                                    "model": _histogram(orders.sum(axis=0))},
                      capacity_lowest=room.lowest, samples=room.samples, facts=list(facts.used),
                      naive=naive, interval=interval)


def validate_capture(path: str | Path, *, use_cache: bool = True, **kw: Any) -> Validation:
    """:func:`validate_trace` of a capture file as ``tagcache validate PATH`` runs it: its
    sidecar beside it, its read_ahead_kb, a capacity of its ``kernel.cache_peak``; ``kw`` as
    validate_trace() takes them."""
    meta = load_sidecar(sidecar_for(path))
    trace = read_trace(path, use_cache=use_cache)
    ra, _ = read_ahead_pages(trace, meta)
    return validate_trace(trace, meta["kernel"]["cache_peak"] // PAGE_SIZE,
                          ra_pages=kw.pop("ra_pages", ra), meta=meta, **kw)


def kernel_orders_by_file(trace: Trace, files: np.ndarray) -> np.ndarray:
    """Folios the kernel's add events inserted into ``files``, per file id and order."""
    m = (trace.op == Op.KERNEL_ADD) & np.isin(trace.arg0, files)
    out = np.zeros((len(trace.files), MAX_PAGECACHE_ORDER + 2), np.int64)
    np.add.at(out, (trace.arg0[m].astype(np.int64),
                    np.minimum(trace.arg2[m].astype(np.int64), out.shape[1] - 1)), 1)
    return out


def _histogram(counts: np.ndarray) -> dict[str, int]:
    """Folios by order, orders with none left out: {"0": folios, "2": folios, ...}."""
    return {str(o): int(c) for o, c in enumerate(np.asarray(counts).tolist()) if c}
