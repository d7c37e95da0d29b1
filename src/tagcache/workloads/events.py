"""The event stream: columns of operations that the replay engine applies in order.

Every workload source (generators now, trace readers later) produces one :class:`Trace`:
four parallel integer columns plus a file table. Columns, not objects, so that a trace of tens
of millions of events is a few arrays and a compiled loop can walk it later.

====================  =======  ==============  ==============  ===============================
op                    arg0     arg1            arg2            kernel path modelled
====================  =======  ==============  ==============  ===============================
READ                  file     first page      pages           filemap_read()
GET_PAGES             file     first page      pages           one filemap_get_pages() call
WRITE                 file     first page      pages           generic_perform_write()
FAULT                 file     page            -               filemap_fault()
MAP_PAGES             file     first page      pages           filemap_map_pages()
TRUNCATE              file     new size pages  -               truncate_inode_pages_range()
UNLINK                file     -               -               evict() of an unlinked inode
FSYNC                 file     -               -               file_write_and_wait_range()
UNMOUNT               device   -               -               kill_block_super()
MTE_MAP               process  pages           PROT_MTE pages  mmap + touch; set_ptes_at()
MTE_FORK              parent   child           -               dup_mmap(), CoW sharing
MTE_COW               process  pages           -               wp fault -> copy_highpage()
MTE_SWAP_OUT          process  pages           -               mte_save_tags(), page freed
MTE_SWAP_IN           process  pages           -               arch_swap_restore()
MTE_MIGRATE           process  pages           -               migrate -> copy_highpage()
MTE_EXIT              process  -               -               exit_mmap(), pages freed
KERNEL_ADD            file     page            order           what the kernel inserted
KERNEL_DELETE         file     page            order           what the kernel deleted
PAGE_ALLOC            pfn      order           task<<8 | gfp   kmem mm_page_alloc
PAGE_FREE             pfn      order           task<<8         kmem mm_page_free
CGROUP_SAMPLE         file pg  other pages     buffers pages   the capture cgroup's memory
====================  =======  ==============  ==============  ===============================

The MTE_* rows are anonymous memory of processes, tagged or not: a process's first ``arg2``
pages are PROT_MTE, and only those reach the MTE hooks (engine/anon.py).

The KERNEL_* rows come from captures (mm_filemap_add_to_page_cache and
mm_filemap_delete_from_page_cache): they are the kernel's answer, never replayed; validation
compares the model with them and learns file sizes from them. PAGE_ALLOC / PAGE_FREE carry
real PFNs; ``task`` indexes :attr:`Trace.tasks` (command, pid of the line's task) and the low
byte holds :data:`GFP_USER_ANON` when the gfp flags were those of a user anonymous page
(GFP_HIGHUSER_MOVABLE, the flags of a user page fault).

CGROUP_SAMPLE rows are the recorder's samples of the capture's memory cgroup, in time order
among the events (``tagcache_sample:`` trace_marker lines, record/schema.py
``cgroup_samples``), in pages: ``arg0`` its page cache (``file``), ``arg1`` all else it is
charged for (``usage - file``, at least 0: anonymous and kernel memory, per-CPU charge stock),
``arg2`` how much /proc/meminfo Buffers (filesystem metadata, system-wide) had grown since
CMD started. They describe the environment and are never replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np


class Op(IntEnum):
    READ = 0
    WRITE = 1
    FAULT = 2
    MAP_PAGES = 3
    TRUNCATE = 4
    UNLINK = 5
    FSYNC = 6
    UNMOUNT = 7
    GET_PAGES = 8
    MTE_MAP = 16
    MTE_FORK = 17
    MTE_COW = 18
    MTE_SWAP_OUT = 19
    MTE_SWAP_IN = 20
    MTE_MIGRATE = 21
    MTE_EXIT = 22
    KERNEL_ADD = 32
    KERNEL_DELETE = 33
    PAGE_ALLOC = 34
    PAGE_FREE = 35
    CGROUP_SAMPLE = 36


GFP_USER_ANON = 1

FILE_OPS = frozenset({Op.READ, Op.GET_PAGES, Op.WRITE, Op.FAULT, Op.MAP_PAGES, Op.TRUNCATE,
                      Op.UNLINK, Op.FSYNC})


@dataclass
class FileTable:
    """Files by dense id: device, inode, and the most pages the file ever holds (its span).

    ``size_pages`` is the size at the start of the trace; writes can grow a file up to its span.
    ``large_folios`` says whether the mapping supports large folios (mapping_large_folio_support).
    """

    dev: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ino: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    size_pages: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    span_pages: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    large_folios: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def __len__(self) -> int:
        return len(self.dev)

    @classmethod
    def build(cls, dev, ino, size_pages, span_pages=None, large_folios=None) -> FileTable:
        size = np.asarray(size_pages, np.int64)
        span = size.copy() if span_pages is None else np.asarray(span_pages, np.int64)
        lf = np.zeros(len(size), bool) if large_folios is None else np.asarray(large_folios, bool)
        return cls(np.asarray(dev, np.int64), np.asarray(ino, np.int64), size,
                   np.maximum(span, size), lf)


@dataclass(frozen=True)
class ExtentMap:
    """How a trace's page indexes relate to the addresses its file was read from.

    Readers compact each file's address space (traces/_common.py, ``compact_extents``): the
    space is cut into extents of ``1 << shift`` pages; runs of extents that events touch keep
    their order and their offsets, and a gap of more than ``2 * keep`` unused extents between
    two runs keeps only its first ``keep`` and last ``keep`` extents (a leading gap its last
    ``keep``). Run ``r`` of file ``file[r]`` covers original extents ``lo[r]..hi[r]``, and
    every original page of it, or of the ``keep`` extents on either side, is trace page
    ``original - delta[r]``. Pages farther from every run have no trace page: no event names
    them, and the model never reaches them.
    """

    shift: int
    keep: int
    file: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    delta: np.ndarray

    def __len__(self) -> int:
        return len(self.file)

    def runs(self, f: int, first: int, nr: int) -> list[tuple[int, int]]:
        """The original pages [first, first + nr) of file ``f`` as (first, nr) runs of trace
        pages, in order; the parts with no trace page are left out."""
        sel = np.arange(np.searchsorted(self.file, f, "left"),
                        np.searchsorted(self.file, f, "right"))
        out: list[tuple[int, int]] = []
        if not len(sel) or nr <= 0:
            return out
        lo = np.maximum(self.lo[sel] - self.keep, 0) << self.shift
        hi = (self.hi[sel] + self.keep + 1) << self.shift
        end = first + nr
        for r in range(int(np.searchsorted(hi, first, "right")), len(sel)):
            if int(lo[r]) >= end:
                break
            a, b = max(first, int(lo[r])), min(end, int(hi[r]))
            if a < b:
                out.append((a - int(self.delta[sel[r]]), b - a))
        return out


@dataclass(frozen=True)
class Inserted:
    """Events inserted into a trace without copying its columns: ``events[k]`` (op, arg0,
    arg1, arg2) goes just before event ``at[k]`` of the trace (``at`` non-decreasing; equal
    positions keep their order; ``at == len`` appends). A long reader trace gets a few
    hundred generated anonymous-memory events per tagged share this way, instead of a new
    copy of its columns per share."""

    events: np.ndarray    # (k, 4) int64
    at: np.ndarray        # (k,) int64

    @classmethod
    def build(cls, events: np.ndarray, at: np.ndarray, n: int) -> Inserted:
        """From events scheduled at ``at`` in any order (clipped to ``[0, n]``), sorted
        stably by position, as np.insert() places them."""
        at = np.clip(np.asarray(at, np.int64), 0, n)
        order = np.argsort(at, kind="stable")
        return cls(np.asarray(events, np.int64).reshape(-1, 4)[order], at[order])

    def __len__(self) -> int:
        return len(self.at)

    def positions(self) -> np.ndarray:
        """Each inserted event's index in the merged stream."""
        return self.at + np.arange(len(self.at))


@dataclass
class Trace:
    """An event stream: ``op`` and three argument columns, plus the files they name.

    ``extents`` maps the addresses the trace was read from to its page indexes (None: the
    page indexes are the trace's own, or names of objects with no address, as in
    libCacheSim's object traces). ``inserted``: events that go between the columns' events
    (:class:`Inserted`); the stream is then the merge of both (:meth:`merged`).
    """

    op: np.ndarray
    arg0: np.ndarray
    arg1: np.ndarray
    arg2: np.ndarray
    files: FileTable
    name: str = "trace"
    tasks: list[tuple[str, int]] = field(default_factory=list)
    skipped_lines: int = 0
    extents: ExtentMap | None = None
    inserted: Inserted | None = None

    def __len__(self) -> int:
        return len(self.op) + (len(self.inserted) if self.inserted is not None else 0)

    def merged(self) -> Trace:
        """The same events as plain columns (a copy when events are inserted)."""
        ins = self.inserted
        if ins is None:
            return self
        n, k = len(self.op), len(ins)
        pos = ins.positions()
        keep = np.ones(n + k, bool)
        keep[pos] = False
        cols = []
        for j, col in enumerate((self.op, self.arg0, self.arg1, self.arg2)):
            out = np.empty(n + k, col.dtype)
            out[keep] = col
            out[pos] = ins.events[:, j]
            cols.append(out)
        return replace(self, op=cols[0], arg0=cols[1], arg1=cols[2], arg2=cols[3],
                       inserted=None)


class TraceBuilder:
    """Appends events row by row into growable columns; :meth:`build` returns a Trace."""

    def __init__(self) -> None:
        self._rows: list[tuple[int, int, int, int]] = []
        self._chunks: list[np.ndarray] = []

    def add(self, op: Op, a0: int = 0, a1: int = 0, a2: int = 0) -> None:
        self._rows.append((int(op), a0, a1, a2))
        if len(self._rows) >= 65536:
            self._flush()

    def extend(self, block: np.ndarray) -> None:
        """Append an (N, 4) int64 block of events at once."""
        self._flush()
        self._chunks.append(np.asarray(block, np.int64).reshape(-1, 4))

    def _flush(self) -> None:
        if self._rows:
            self._chunks.append(np.array(self._rows, dtype=np.int64).reshape(-1, 4))
            self._rows = []

    def __len__(self) -> int:
        return sum(len(c) for c in self._chunks) + len(self._rows)

    def build(self, files: FileTable, name: str = "trace",
              tasks: list[tuple[str, int]] | None = None) -> Trace:
        self._flush()
        m = np.concatenate(self._chunks) if self._chunks else np.zeros((0, 4), np.int64)
        return Trace(m[:, 0].astype(np.uint8), m[:, 1].copy(), m[:, 2].copy(), m[:, 3].copy(),
                     files, name, list(tasks or []))
