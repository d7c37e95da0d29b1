"""Raw tracefs ``trace`` text: the filemap events, ext4's writes and evictions, and the kmem page
allocator events.

A line is ``COMM-PID [CPU] FLAGS SECONDS: EVENT: FIELDS``; the command may hold spaces and dashes
(the pid follows the last dash before ``[CPU]``); lines starting with ``#`` are headers.

=================================  ==================================================  =============
event                              fields                                              row
=================================  ==================================================  =============
mm_filemap_get_pages               ``dev=M:m ino=HEX ofs=A-B`` (bytes, B inclusive)    GET_PAGES
mm_filemap_map_pages               same                                                MAP_PAGES
mm_filemap_fault                   ``dev=M:m ino=HEX ofs=A``                           FAULT
mm_filemap_add_to_page_cache       ``dev M:m ino HEX pfn=0xP ofs=BYTES order=N``       KERNEL_ADD
mm_filemap_delete_from_page_cache  same                                                KERNEL_DELETE
ext4_da_write_begin                ``dev M,m ino DEC pos BYTES len BYTES``             WRITE
ext4_write_begin                   same                                                WRITE
ext4_evict_inode                   ``dev M,m ino DEC nlink N``                         UNLINK
mm_page_alloc                      ``page=PTR pfn=0xP order=N migratetype=T``          PAGE_ALLOC
                                   ``gfp_flags=FLAGS``
mm_page_free                       ``page=PTR pfn=0xP order=N``                        PAGE_FREE
tracing_mark_write                 ``tagcache_sample: file=B anon=B usage=B``          CGROUP_SAMPLE
                                   ``buffers=B`` (bytes)
=================================  ==================================================  =============

Ranges become (first page, pages) = (A >> 12, (B >> 12) - (A >> 12) + 1), which is the kernel's
(index, last_index - index + 1) since it prints page-aligned A and B + 1; a range of more than
MAX_REQUEST_BYTES (one read(2) moves at most 2 GiB) is a bad line. A write (ext4's
write_begin: one per folio-sized chunk that a write(2) copies in; ext4_da_write_begin falls back
to ext4_write_begin before its own event, so a chunk is one line) is the row (file, POS >> 12,
((POS + LEN - 1) >> 12) - (POS >> 12) + 1); LEN 0 yields no row, LEN over MAX_REQUEST_BYTES or
POS + LEN over 2**63 - 1 is a bad line. An evicted inode with nlink 0 (deleted and its last
reference dropped: evict() then frees its page cache, truncate_inode_pages_final) is the row
(file, 0, 0); nlink > 0 (an inode dropped from the inode cache) yields no row. Files get dense
ids in order of first appearance, one per (dev, ino) with dev = MKDEV(M, m) = M << 20 | m,
whichever event names them first: ext4 prints ``dev M,m`` and the inode in decimal, the filemap
events ``M:m`` and hex, the same numbers (MAJOR and MINOR of s_dev, i_ino). A file's size is the
highest page its add events inserted or its writes wrote; its span also covers every page any
event names (an eviction names none).
Each file's pages are compacted in 2 MiB extents (``_common.compact_extents``, the map in
``Trace.extents``): a file read at a few far offsets spans a few extents, not its offsets.
Add/delete lines of older kernels (``page=PTR``, decimal ``pfn``, no ``order``) are accepted.
An mm_page_alloc with pfn 0 is a failed allocation (the kernel prints a NULL page) and yields no
row. Tasks (command, pid) are listed in order of first appearance on kmem lines only. A
``tagcache_sample:`` marker (the recorder's sample of its cgroup, record/sampling.py) is the row
(file >> 12, max(usage - file, 0) >> 12, buffers >> 12); other trace_marker lines, like other
events, are skipped; a known event whose fields do not parse (a ``tagcache_sample:`` marker
included) is a :class:`TraceError` naming the line.

Speed: each 16 MiB chunk of lines is one compiled pass (:func:`_scan`, numba): it finds the
``DIGIT: EVENT:`` markers and parses each event's usual form by the event's program of literals
and numbers into rows; a line in any other form (a bad line, an older kernel's format, a number
of 19 digits) is parsed by the event's regular expression, which is the reference for what a
line means. The rows of each event type are then computed at once with numpy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from tagcache.errors import TraceError
from tagcache.traces._common import (
    MAX_REQUEST_BYTES,
    BadLines,
    PathLike,
    compact_extents,
    iter_line_arrays,
    open_binary,
    pair_ids,
    snippet,
    trace_name,
)
from tagcache.workloads.events import GFP_USER_ANON, FileTable, Op, Trace

MINORBITS = 20
MAX_ORDER = 10
"""MAX_PAGE_ORDER of a 4 KiB-page kernel (include/linux/mmzone.h): no folio or allocation is
larger, so a bigger order is a damaged line, not 2^31 pages to model."""
_MAX_PREFIX = 96                    # "COMM-PID (TGID) " before "[CPU]" is far shorter
_USER_ANON_FLAGS = b"GFP_HIGHUSER_MOVABLE"


def mkdev(major, minor):
    """The kernel's MKDEV: a device number as stored in ``s_dev``."""
    return (major << MINORBITS) | minor


# --------------------------------------------------------------------------- fields
# Each event's lines are parsed in compiled code (:func:`_scan`) in their usual form, one
# program of literals and numbers per event (:data:`PROGRAMS`); a line in any other form
# (an older kernel's, a 19-digit number, stray blanks, a bad line) is parsed again by the
# event's regular expression, which is the reference: what it cannot parse is a bad line.

_HEX = rb"([0-9a-fA-F]+)"
_INO10 = -10
"""The base of a decimal inode number (ext4's ``%lu``): like a hexadecimal one (``%lx``), a value
of 2**63 or more wraps to the negative int64 of the same 64 bits, so both name the same file."""
_INT64_MAX = (1 << 63) - 1
_PFN = rb"(0x[0-9a-fA-F]+|\d+)"


def _int(word: bytes | None, base: int, default: int | None) -> int:
    if word is None:
        if default is None:
            raise ValueError
        return default
    if base == 0:
        v = int(word, 16) if word[:2] in (b"0x", b"0X") else int(word)
    else:
        v = int(word, abs(base))
        if base in (16, _INO10) and (1 << 63) <= v < (1 << 64):
            v -= 1 << 64                      # 64-bit inode numbers keep their identity
    if not -(1 << 63) <= v < 1 << 63:
        raise ValueError(word)
    return v


def _gfp_bit(flags: bytes) -> int:
    # A user anonymous page is allocated zeroed (vma_alloc_zeroed_movable_folio():
    # GFP_HIGHUSER_MOVABLE|__GFP_ZERO); page-cache pages share GFP_HIGHUSER_MOVABLE but are
    # not zeroed at allocation (readahead adds __GFP_NORETRY|__GFP_NOWARN instead).
    return GFP_USER_ANON if _USER_ANON_FLAGS in flags and b"__GFP_ZERO" in flags else 0


def _rows_range(c: np.ndarray):
    first = c[:, 3] >> 12
    pages = (c[:, 4] >> 12) - first + 1
    bad = (pages < 0) | (c[:, 4] - c[:, 3] >= MAX_REQUEST_BYTES) | _bad_dev(c)
    return _file_rows(c, first, pages, first + pages, None), bad


def _rows_fault(c: np.ndarray):
    page = c[:, 3] >> 12
    return _file_rows(c, page, np.zeros_like(page), page + 1, None), _bad_dev(c)


def _rows_cache(c: np.ndarray):
    page, order = c[:, 4] >> 12, c[:, 5]
    bad = (order < 0) | (order > MAX_ORDER) | _bad_dev(c)
    end = page + (np.int64(1) << np.clip(order, 0, MAX_ORDER))
    return _file_rows(c, page, order, end, end), bad


def _rows_write(c: np.ndarray):
    pos, length = c[:, 3], c[:, 4]
    bad = (length > MAX_REQUEST_BYTES) | (pos > _INT64_MAX - length) | _bad_dev(c)
    pos = np.where(bad, 0, pos)                # no overflow below; bad rows are dropped
    first = pos >> 12
    pages = np.where(length > 0, ((pos + length - 1) >> 12) - first + 1, 0)
    end = first + pages
    rows = _file_rows(c, first, pages, end, end)
    rows["skip"] = length == 0                 # nothing written
    return rows, bad


def _rows_evict(c: np.ndarray):
    zero = np.zeros(len(c), np.int64)
    rows = _file_rows(c, zero, zero, np.full(len(c), -1, np.int64), None)   # names no page
    rows["skip"] = c[:, 3] != 0                # still linked: only the inode cache shrank
    return rows, _bad_dev(c)


def _rows_sample(c: np.ndarray):
    file, usage = c[:, 0], c[:, 2]
    return ({"a0": file >> 12, "a1": np.maximum(usage - file, 0) >> 12, "a2": c[:, 3] >> 12},
            np.zeros(len(c), bool))


def _rows_page(c: np.ndarray):
    order = c[:, 1]
    return {"pfn": c[:, 0], "order": order}, (order < 0) | (order > MAX_ORDER) | (c[:, 0] < 0)


def _problem(ev: _Event, tail: bytes) -> str | None:
    """What is wrong with a line of ``ev`` that has the event's shape, or None."""
    m = ev.rx.fullmatch(tail.strip())
    if m is None:
        return None
    v = [m.group(j + 1) for j in range(len(ev.bases))]
    try:
        for word, base, default in zip(v, ev.bases, ev.defaults or (None,) * len(v),
                                       strict=True):
            _int(word, base, default)
    except ValueError:
        return "a number does not fit 64 bits"
    if ev.sample:
        return None
    order = int(v[1]) if ev.kmem else int(v[5] or 0) if ev.rows is _rows_cache else 0
    if order > MAX_ORDER:
        return f"order {order} is more than {MAX_ORDER}"
    if ev.kmem:
        return None
    major, minor = int(v[0]), int(v[1])
    if major >= 1 << (32 - MINORBITS) or minor >= 1 << MINORBITS:
        sep = "," if ev.rows in (_rows_write, _rows_evict) else ":"
        return f"dev {major}{sep}{minor} is not a device number (major < 4096, minor < 2**20)"
    if ev.rows is _rows_range:
        a, b = int(v[3]), int(v[4])
        if b - a >= MAX_REQUEST_BYTES:
            return (f"the range {a}-{b} is more than one request can move "
                    f"({MAX_REQUEST_BYTES} bytes, MAX_REQUEST_BYTES)")
        if (b >> 12) < (a >> 12) - 1:
            return f"the range {a}-{b} ends before it starts"
    if ev.rows is _rows_write:
        pos, length = int(v[3]), int(v[4])
        if length > MAX_REQUEST_BYTES:
            return (f"len {length} is more than one request can move "
                    f"({MAX_REQUEST_BYTES} bytes, MAX_REQUEST_BYTES)")
        if pos + length > _INT64_MAX:
            return f"pos {pos} + len {length} is past the largest file offset (2**63 - 1)"
    return None


def _bad_dev(c: np.ndarray) -> np.ndarray:
    return (c[:, 0] >= 1 << (32 - MINORBITS)) | (c[:, 1] >= 1 << MINORBITS)


def _file_rows(c, a1, a2, end, size_end):
    return {"dev": mkdev(c[:, 0], c[:, 1]), "ino": c[:, 2], "a1": a1, "a2": a2, "end": end,
            "size_end": np.full(len(c), -1, np.int64) if size_end is None else size_end}


@dataclass(frozen=True)
class _Event:
    name: bytes
    op: Op
    expected: str
    program: tuple
    pattern: bytes
    bases: tuple[int, ...]
    rows: Callable
    defaults: tuple[int | None, ...] | None = None
    gfp_group: int | None = None      # regex group of the gfp flags (mm_page_alloc)
    sep: bytes = b": "                # between the name and the fields
    marker: np.ndarray = field(init=False, repr=False, compare=False)
    rx: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "marker", np.frombuffer(self.name + self.sep, np.uint8))
        object.__setattr__(self, "rx", re.compile(self.pattern))

    @property
    def kmem(self) -> bool:
        return self.op in (Op.PAGE_ALLOC, Op.PAGE_FREE)

    @property
    def sample(self) -> bool:
        return self.op == Op.CGROUP_SAMPLE

    def slow(self, tails: list[bytes]):
        """Line by line: (rows, good mask) of the lines the regular expression parses."""
        defaults = self.defaults or (None,) * len(self.bases)
        rows, gfp, good = [], [], np.zeros(len(tails), bool)
        for i, tail in enumerate(tails):
            m = self.rx.fullmatch(tail.strip())
            if m is None:
                continue
            try:
                rows.append([_int(m.group(j + 1), b, d)
                             for j, (b, d) in enumerate(zip(self.bases, defaults, strict=True))])
            except ValueError:
                continue
            if self.gfp_group is not None:
                gfp.append(_gfp_bit(m.group(self.gfp_group)))
            good[i] = True
        out, bad = self.rows(np.asarray(rows, np.int64).reshape(-1, len(self.bases)))
        if self.gfp_group is not None:
            out["gfp"] = np.asarray(gfp, np.int64)
        keep = np.flatnonzero(good)
        good[keep[bad]] = False
        return {k: v[~bad] for k, v in out.items()}, good


# The fields of an event's usual line, as its program: literal bytes, and these tokens.
DEC, HEX, PFN, WORD, SDEC, GFP = range(1, 7)
"""A decimal of 1 to 18 digits, a hexadecimal of 1 to 15 (both stored); a pfn (0x and
hexadecimal, or decimal; stored); a word of non-blanks (``\\S+``); an optional minus and
digits (``-?\\d+``); gfp flags (``\\S*``, stored as the GFP_USER_ANON bit). Longer numbers
and other forms go to the regular expression."""
_LIT = 0


_RANGE = dict(pattern=rb"dev=(\d+):(\d+) ino=" + _HEX + rb" ofs=(\d+)-(\d+)",
              bases=(10, 10, 16, 10, 10), rows=_rows_range,
              program=(b"dev=", DEC, b":", DEC, b" ino=", HEX, b" ofs=", DEC, b"-", DEC))
_CACHE = dict(pattern=rb"dev (\d+):(\d+) ino " + _HEX + rb"(?: page=\S+)? pfn=" + _PFN
              + rb" ofs=(\d+)(?: order=(\d+))?",
              bases=(10, 10, 16, 0, 10, 10), defaults=(None,) * 5 + (0,), rows=_rows_cache,
              program=(b"dev ", DEC, b":", DEC, b" ino ", HEX, b" pfn=", PFN, b" ofs=", DEC,
                       b" order=", DEC))
_WRITE = dict(pattern=rb"dev (\d+),(\d+) ino (\d+) pos (\d+) len (\d+)",
              bases=(10, 10, _INO10, 10, 10), rows=_rows_write,
              program=(b"dev ", DEC, b",", DEC, b" ino ", DEC, b" pos ", DEC, b" len ", DEC))

EVENTS: dict[bytes, _Event] = {e.name: e for e in (
    _Event(b"mm_filemap_get_pages", Op.GET_PAGES, "'dev=M:m ino=HEX ofs=A-B'", **_RANGE),
    _Event(b"mm_filemap_map_pages", Op.MAP_PAGES, "'dev=M:m ino=HEX ofs=A-B'", **_RANGE),
    _Event(b"mm_filemap_fault", Op.FAULT, "'dev=M:m ino=HEX ofs=A'",
           program=(b"dev=", DEC, b":", DEC, b" ino=", HEX, b" ofs=", DEC),
           pattern=rb"dev=(\d+):(\d+) ino=" + _HEX + rb" ofs=(\d+)", bases=(10, 10, 16, 10),
           rows=_rows_fault),
    _Event(b"mm_filemap_add_to_page_cache", Op.KERNEL_ADD,
           "'dev M:m ino HEX pfn=0xPFN ofs=BYTES order=N'", **_CACHE),
    _Event(b"mm_filemap_delete_from_page_cache", Op.KERNEL_DELETE,
           "'dev M:m ino HEX pfn=0xPFN ofs=BYTES order=N'", **_CACHE),
    _Event(b"mm_page_alloc", Op.PAGE_ALLOC,
           "'page=PTR pfn=0xPFN order=N migratetype=T gfp_flags=FLAGS'",
           program=(b"page=", WORD, b" pfn=", PFN, b" order=", DEC, b" migratetype=", SDEC,
                    b" gfp_flags=", GFP),
           pattern=rb"page=\S+ pfn=" + _PFN + rb" order=(\d+) migratetype=-?\d+ "
           rb"gfp_flags=(\S*)", bases=(0, 10), gfp_group=3, rows=_rows_page),
    _Event(b"mm_page_free", Op.PAGE_FREE, "'page=PTR pfn=0xPFN order=N'",
           program=(b"page=", WORD, b" pfn=", PFN, b" order=", DEC),
           pattern=rb"page=\S+ pfn=" + _PFN + rb" order=(\d+)", bases=(0, 10), rows=_rows_page),
    _Event(b"ext4_da_write_begin", Op.WRITE, "'dev M,m ino DEC pos BYTES len BYTES'", **_WRITE),
    _Event(b"ext4_write_begin", Op.WRITE, "'dev M,m ino DEC pos BYTES len BYTES'", **_WRITE),
    _Event(b"ext4_evict_inode", Op.UNLINK, "'dev M,m ino DEC nlink N'",
           program=(b"dev ", DEC, b",", DEC, b" ino ", DEC, b" nlink ", DEC),
           pattern=rb"dev (\d+),(\d+) ino (\d+) nlink (-?\d+)", bases=(10, 10, _INO10, 10),
           rows=_rows_evict),
)}
_BY_LEN: dict[int, list[_Event]] = {}
for _e in EVENTS.values():
    _BY_LEN.setdefault(len(_e.name), []).append(_e)
SAMPLE = _Event(b"tracing_mark_write: tagcache_sample", Op.CGROUP_SAMPLE,
                "'file=BYTES anon=BYTES usage=BYTES buffers=BYTES'",
                program=(b" file=", DEC, b" anon=", DEC, b" usage=", DEC, b" buffers=", DEC),
                pattern=rb"file=(\d+) anon=(\d+) usage=(\d+) buffers=(\d+)",
                bases=(10, 10, 10, 10), rows=_rows_sample, sep=b":")
"""A trace_marker line of the recorder: ``tracing_mark_write: tagcache_sample:`` and its fields
(a marker starting otherwise is not one of ours, and is skipped)."""


# --------------------------------------------------------------------------- compiled scan

ORDER: list[_Event] = [SAMPLE] + [e for events in _BY_LEN.values() for e in events]
"""Every event, in the order their rows of one line are merged (as the reader always has)."""
_KIND = np.array([2 if e.sample else 1 if e.kmem else 0 for e in ORDER], np.int64)
"""What a row of each event is: 0 a file event, 1 kmem, 2 a sample."""
LINE_BY_LINE = False
"""Parse every event line with its regular expression (tests compare both paths)."""
_MAX_VALUES = 6


def _tables() -> tuple[np.ndarray, ...]:
    """The events' markers and programs as flat arrays for :func:`_scan`."""
    marks, mark_at, prog, prog_at, lits, lit_at = [], [0], [], [0], [], [0]
    for ev in ORDER:
        marks.append(ev.marker.tobytes())
        mark_at.append(mark_at[-1] + len(ev.marker))
        stored = 0
        for tok in ev.program:
            if isinstance(tok, bytes):
                prog.append((_LIT, lit_at[-1], len(tok)))
                lits.append(tok)
                lit_at.append(lit_at[-1] + len(tok))
            else:
                prog.append((tok, 0, 0))
                stored += tok in (DEC, HEX, PFN)
        assert stored == len(ev.bases) <= _MAX_VALUES, ev.name
        prog_at.append(len(prog))
    for word in (_USER_ANON_FLAGS, b"__GFP_ZERO"):         # the last two literals
        lits.append(word)
        lit_at.append(lit_at[-1] + len(word))
    u8 = [np.frombuffer(b"".join(x), np.uint8).copy() for x in (marks, lits)]
    return (u8[0], np.array(mark_at, np.int64), np.array(prog, np.int64).reshape(-1, 3),
            np.array(prog_at, np.int64), u8[1], np.array(lit_at, np.int64),
            np.array([ev.kmem for ev in ORDER], np.bool_))


_TABLES = _tables()


@njit(cache=True)
def _blank(c):
    """What ``\\s`` matches in a bytes pattern, the newline included."""
    return c == 32 or (c >= 9 and c <= 13)


@njit(cache=True)
def _dec(buf, t):
    """A decimal of 1 to 18 digits at ``buf[t]``: (value, where it ends); value -1 for none
    or more digits (the line then goes to the regular expression)."""
    v = 0
    s = t
    c = np.int64(buf[t])
    while c >= 48 and c <= 57:
        if t - s == 18:
            return -1, t
        v = v * 10 + (c - 48)
        t += 1
        c = np.int64(buf[t])
    return (v if t > s else -1), t


@njit(cache=True)
def _hex(buf, t):
    """A hexadecimal of 1 to 15 digits at ``buf[t]``, as :func:`_dec`."""
    v = 0
    s = t
    while True:
        c = np.int64(buf[t])
        if c >= 48 and c <= 57:
            d = c - 48
        elif (c | 32) >= 97 and (c | 32) <= 102:
            d = (c | 32) - 87
        else:
            break
        if t - s == 15:
            return -1, t
        v = v * 16 + d
        t += 1
    return (v if t > s else -1), t


@njit(cache=True)
def _has(buf, s, e, lits, a, b):
    """Whether ``lits[a:b]`` occurs in ``buf[s:e]``."""
    k = b - a
    for p in range(s, e - k + 1):
        q = 0
        while q < k and buf[p + q] == lits[a + q]:
            q += 1
        if q == k:
            return True
    return False


@njit(cache=True)
def _fields(buf, t, prog, p0, p1, lits, lit_at, vals, row, gfp_bit):
    """Run an event's program over its tail at ``buf[t]``; the values go to ``vals[row]``.
    Returns (the line is in this form, its gfp bit, where the program stopped)."""
    col = 0
    gfp = 0
    for p in range(p0, p1):
        tok = prog[p, 0]
        if tok == _LIT:
            a = prog[p, 1]
            for q in range(prog[p, 2]):                # the newline ends a mismatch in time
                if buf[t + q] != lits[a + q]:
                    return False, 0, t
            t += prog[p, 2]
        elif tok == WORD or tok == GFP:
            s = t
            while not _blank(buf[t]):
                t += 1
            if tok == WORD and t == s:
                return False, 0, t
            if tok == GFP:
                n = len(lit_at)
                if (_has(buf, s, t, lits, lit_at[n - 3], lit_at[n - 2])
                        and _has(buf, s, t, lits, lit_at[n - 2], lit_at[n - 1])):
                    gfp = gfp_bit
        elif tok == SDEC:
            if buf[t] == 45:
                t += 1
            s = t
            while buf[t] >= 48 and buf[t] <= 57:
                t += 1
            if t == s:
                return False, 0, t
        else:
            if tok == DEC:
                v, t = _dec(buf, t)
            elif tok == HEX:
                v, t = _hex(buf, t)
            elif buf[t] == 48 and buf[t + 1] == 120:   # PFN: 0x and hexadecimal
                v, t = _hex(buf, t + 2)
            else:                                      # or decimal (older kernels)
                v, t = _dec(buf, t)
            if v < 0:
                return False, 0, t
            vals[row, col] = v
            col += 1
    return buf[t] == 10, gfp, t


def _scratch(size: int) -> tuple[np.ndarray, ...]:
    """Output rows of :func:`_scan` for chunks of up to ``size`` bytes: events start at colons
    a marker (over 8 bytes) apart at least. Reused chunk after chunk, so that their memory is
    touched once."""
    rows = size // 8 + 1
    return (np.empty(rows, np.int64), np.empty((rows, 5), np.int64), np.empty(rows, np.bool_),
            np.empty((rows, _MAX_VALUES), np.int64), np.empty(rows, np.int64))


@njit(cache=True)
def _scan(buf, ev, pos, ok, vals, gfp, marks, mark_at, prog, prog_at, lits, lit_at, kmem,
          gfp_bit):
    """Find the event lines of a chunk (whole lines) and parse the usual ones.

    An event is where ``DIGIT: `` (the colon after the timestamp) is followed by an event's
    marker (its name and separator), as many times as a line holds that. Writes, per event
    found in order, into the next row of ``ev`` to ``gfp`` (:func:`_scratch`: they must have
    ``len(buf) // 8 + 1`` rows): its number in :data:`ORDER`; the colon's offset, the line
    (0-based), the line's start and end (its newline) and for kmem events the last ``[``
    between them before the colon (-1: none); whether its program parsed it; its values;
    its gfp bit. Returns the number of events and of lines."""
    size = len(buf)
    nev = len(mark_at) - 1
    m = 0
    line = 0
    i = 0
    while i < size:
        start = i
        first = m
        while True:                                    # the line, up to its newline
            c = buf[i]
            while c != 10 and c != 58:
                i += 1
                c = buf[i]
            if c == 10:
                break
            if i > start and buf[i - 1] >= 48 and buf[i - 1] <= 57 and buf[i + 1] == 32:
                t = i + 2
                found = -1
                for e in range(nev):
                    a = mark_at[e]
                    k = mark_at[e + 1] - a
                    if t + k >= size or buf[t + k - 1] != marks[a + k - 1]:
                        continue                       # its separator is not there
                    q = 0
                    while q < k and buf[t + q] == marks[a + q]:
                        q += 1
                    if q == k:
                        found = e
                        break
                if found >= 0:
                    ev[m] = found
                    pos[m, 0] = i
                    pos[m, 1] = line
                    pos[m, 2] = start
                    bracket = -1
                    if kmem[found]:
                        b = i - 1
                        while b >= start:
                            if buf[b] == 91:
                                bracket = b
                                break
                            b -= 1
                    pos[m, 4] = bracket
                    good, bit, t = _fields(buf, t + mark_at[found + 1] - mark_at[found], prog,
                                           prog_at[found], prog_at[found + 1], lits, lit_at,
                                           vals, m, gfp_bit)
                    ok[m] = good
                    gfp[m] = bit
                    m += 1
                    if good:                           # nothing more on this line
                        i = t
                        break
            i += 1
        for r in range(first, m):
            pos[r, 3] = i
        line += 1
        i += 1
    return m, line


# --------------------------------------------------------------------------- the parser

class _Parser:
    def __init__(self, source: str, skip: bool) -> None:
        self.source = source
        self.bad = BadLines(source, skip)
        self.lines = 0
        self.files: dict[tuple[int, int], int] = {}
        self.tasks: dict[tuple[str, int], int] = {}
        self.out: list[dict[str, np.ndarray]] = []
        self.scratch = _scratch(0)

    def chunk(self, buf: np.ndarray) -> None:
        """Parse a chunk of whole lines (uint8): the compiled scan, then each event type's
        rows at once, written in the scan's order (the lines' order)."""
        if len(buf) // 8 + 1 > len(self.scratch[0]):
            self.scratch = _scratch(len(buf))
        n, lines = _scan(buf, *self.scratch, *_TABLES, GFP_USER_ANON)
        ev, pos, ok, vals, gfp = (a[:n] for a in self.scratch)
        if LINE_BY_LINE:
            ok = np.zeros(n, bool)
        if n:
            cols = {k: np.zeros(n, np.int64) for k in ("op", "a0", "a1", "a2", "end", "dev",
                                                       "ino", "gfp")}
            cols["size_end"] = np.full(n, -1, np.int64)
            keep = np.zeros(n, bool)
            counts = np.bincount(ev, minlength=len(ORDER))
            for e in np.flatnonzero(counts):
                sel = np.flatnonzero(ev == e) if counts[e] < n else np.arange(n)
                self._event(ORDER[e], buf, sel, pos, ok, vals, gfp, cols, keep)
            self._assemble(ev, pos, cols, keep, buf)
        self.lines += lines
        self.bad.flush()

    def _event(self, ev: _Event, buf: np.ndarray, sel, pos, ok, vals, gfp, cols: dict,
               keep: np.ndarray) -> None:
        """The rows of one event type (``sel``: its events in :func:`_scan`'s output), written
        into ``cols`` at their places and marked in ``keep``. Lines its program did not take
        go to its regular expression, and what that does not take either to :attr:`bad`."""
        good = sel[ok[sel]]
        rows, bad = ev.rows(vals[good, :len(ev.bases)])
        if ev.gfp_group is not None:
            rows["gfp"] = gfp[good]
        retry = sel[~ok[sel]]
        if bad.any():
            retry = np.sort(np.concatenate([retry, good[bad]]))
            rows = {key: v[~bad] for key, v in rows.items()}
            good = good[~bad]
        if len(retry):
            skip = len(ev.marker) + 2
            tails = [buf[a + skip:b].tobytes()
                     for a, b in zip(pos[retry, 0].tolist(), pos[retry, 3].tolist(), strict=True)]
            more, parsed = ev.slow(tails)
            for i in np.flatnonzero(~parsed):
                self.bad.add(self.lines + int(pos[retry[i], 1]) + 1,
                             f"{ev.name.decode()}: {ev.expected}", tails[i],
                             _problem(ev, tails[i]))
            good = np.concatenate([good, retry[parsed]])
            rows = {key: np.concatenate([v, more[key]]) for key, v in rows.items()}
        drop = rows.pop("skip", None)    # good lines that are no row (a write of 0 bytes, ...)
        if ev.op == Op.PAGE_ALLOC:       # pfn 0: the kernel printed a NULL page, nothing allocated
            drop = rows["pfn"] == 0
        if drop is not None:
            good, rows = good[~drop], {key: v[~drop] for key, v in rows.items()}
        if ev.kmem:
            rows = {"a0": rows["pfn"], "a1": rows["order"], "gfp": rows.get("gfp", 0)}
        for key, v in rows.items():
            cols[key][good] = v
        cols["op"][good] = int(ev.op)
        keep[good] = True

    def _assemble(self, ev, pos, cols: dict, keep: np.ndarray, buf: np.ndarray) -> None:
        """The kept rows of a chunk in the lines' order, with dense file ids and task ids. A
        line gives one row at most: an event's fields reach the end of its line (its
        regular expression matches the whole tail) and hold no ``: `` where another starts."""
        idx = np.flatnonzero(keep)
        kind = _KIND[ev[idx]]
        f = kind == 0
        if f.all():
            every = len(idx) == len(keep)
            a0 = pair_ids(cols["dev"] if every else cols["dev"][idx],
                          cols["ino"] if every else cols["ino"][idx], self.files)
        else:
            a0 = cols["a0"][idx]
            a0[f] = pair_ids(cols["dev"][idx[f]], cols["ino"][idx[f]], self.files)
            k = kind == 1
            if k.any():
                r = idx[k]
                task = self._task_ids(buf, self.lines + pos[r, 1] + 1, pos[r, 2], pos[r, 3],
                                      pos[r, 4])
                cols["a2"][r] = (task << 8) | cols["gfp"][r]
                if (task < 0).any():
                    bad = np.flatnonzero(k)[task < 0]
                    idx, a0, f = (np.delete(x, bad) for x in (idx, a0, f))
        if not len(idx):
            return
        if len(idx) == len(keep):                      # every row kept: the columns as they are
            self.out.append({"op": cols["op"], "a0": a0, "a1": cols["a1"], "a2": cols["a2"],
                             "end": cols["end"], "size_end": cols["size_end"], "file": f})
            return
        self.out.append({"op": cols["op"][idx], "a0": a0, "a1": cols["a1"][idx],
                         "a2": cols["a2"][idx], "end": cols["end"][idx],
                         "size_end": cols["size_end"][idx], "file": f})

    def _task_ids(self, buf: np.ndarray, line, start, lend, bracket) -> np.ndarray:
        """Index in the task table of each line's COMM-PID (between the line's ``start`` and
        the ``bracket`` of its ``[CPU]``); -1 (a bad line) if it has none."""
        length = bracket - start
        ok = (length > 0) & (length <= _MAX_PREFIX)
        task = np.full(len(line), -1, np.int64)
        if ok.any():
            width = int(length[ok].max())
            idx = start[:, None] + np.arange(width)
            g = np.where(np.arange(width) < np.where(ok, length, 0)[:, None],
                         buf[np.minimum(idx, len(buf) - 1)], 0).astype(np.uint8)
            keys = np.ascontiguousarray(g).view(f"S{width}").ravel()
            uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
            lut = np.full(len(uniq), -1, np.int64)
            for u in np.argsort(first, kind="stable"):
                t = _task(bytes(uniq[u]))
                if t is not None:
                    lut[u] = self.tasks.setdefault(t, len(self.tasks))
            task = np.where(ok, lut[inverse.ravel()], -1)
        for i in np.flatnonzero(task < 0):
            self.bad.add(int(line[i]), "'COMM-PID [CPU]' before the event",
                         buf[int(start[i]):int(lend[i])].tobytes())
        return task

    def build(self, name: str, large_folios: bool) -> Trace:
        if not self.out:
            raise TraceError(f"{self.source}: no mm_filemap_* or kmem mm_page_alloc/free events "
                             f"in {self.lines} lines (expected a raw tracefs 'trace' capture)")
        cat = {k: np.concatenate([o[k] for o in self.out]) for k in self.out[0]}
        nfiles = len(self.files)
        keys = list(self.files)
        dev = np.array([k[0] for k in keys], np.int64)
        ino = np.array([k[1] for k in keys], np.int64)
        isf = cat["file"]
        every = bool(isf.all())                         # no kmem or sample rows: no copies
        fid = cat["a0"] if every else cat["a0"][isf]
        first = cat["a1"] if every else cat["a1"][isf]
        end, added = (cat["end"], cat["size_end"]) if every else (cat["end"][isf],
                                                                   cat["size_end"][isf])
        last = np.maximum(first, end - 1)
        named = end >= 0                                # an eviction names no page
        if named.all():
            delta, extents = compact_extents(fid, first, last)
        else:
            delta = np.zeros(len(fid), np.int64)
            delta[named], extents = compact_extents(fid[named], first[named], last[named])
        size = np.zeros(nfiles, np.int64)
        span = np.zeros(nfiles, np.int64)
        _file_sizes(fid, end, added, delta, span, size)
        if every:
            first -= delta
        else:
            cat["a1"][isf] = first - delta
        files = FileTable.build(dev, ino, size, span, np.full(nfiles, large_folios))
        tasks = list(self.tasks)
        return Trace(cat["op"].astype(np.uint8), cat["a0"], cat["a1"], cat["a2"], files, name,
                     tasks, self.bad.count, extents)


@njit(cache=True)
def _file_sizes(fid, end, added, delta, span, size):
    """Each file's span (its highest page named + 1) and size (its highest page inserted or
    written + 1), after compaction by ``delta``."""
    for i in range(len(fid)):
        f = fid[i]
        e = end[i] - delta[i]
        if e > span[f]:
            span[f] = e
        if added[i] >= 0 and added[i] - delta[i] > size[f]:
            size[f] = added[i] - delta[i]


def _task(prefix: bytes) -> tuple[str, int] | None:
    """(comm, pid) from ``   COMM-PID`` or ``COMM-PID (TGID)`` (the tgid trace option)."""
    p = prefix.rstrip()
    if p.endswith(b")"):
        p = p[: p.rfind(b"(")].rstrip()
    comm, dash, pid = p.rpartition(b"-")
    if not dash or not pid.isdigit():
        return None
    return comm.strip().decode("utf-8", "replace"), int(pid)


def parse(path: PathLike, *, skip_bad_lines: bool = False, csv_spec: str | None = None,
          large_folios: bool = True) -> Trace:
    """Read a raw tracefs capture; ``large_folios`` is what every file's mapping supports
    (True for ext4 and xfs on kernels >= 6.16). ``csv_spec`` is not used by this format."""
    p = _Parser(str(path), skip_bad_lines)
    with open_binary(path) as f:
        for chunk in iter_line_arrays(f, bad=p.bad, lines=lambda: p.lines):
            p.chunk(chunk)
    return p.build(trace_name(path), large_folios)


def objection(head: bytes, path: PathLike) -> str | None:
    """None for a tracefs capture (the ``# tracer:`` header or a filemap/kmem event line),
    else why not."""
    if head.startswith(b"# tracer:") or re.search(
            rb"\d: (mm_filemap_\w+|mm_page_alloc|mm_page_free|ext4_\w+): ", head) is not None:
        return None
    return ("no '# tracer:' header and no 'SECONDS: mm_filemap_*:' or mm_page_alloc/free "
            f"event line (it starts {snippet(head[:40], 40)})")
