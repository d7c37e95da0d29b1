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

Speed: a 16 MiB chunk of lines is searched with numpy for the ``DIGIT: mm_`` and ``DIGIT: ext``
markers (and ``DIGIT: tracing_mark_write: tagcache_sample:``), events are told apart by their
names' bytes, and the lines of each event type are parsed together with bytes methods (split at
the field labels), ``numpy.fromstring`` for the decimal fields and one parse per distinct ``dev
... ino ...`` field; a line-by-line regular expression runs only for the lines of a chunk where
that fails (a bad line, or an older kernel's format).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tagcache.errors import TraceError
from tagcache.traces._common import (
    MAX_REQUEST_BYTES,
    BadLines,
    PathLike,
    compact_extents,
    iter_line_chunks,
    open_binary,
    pair_ids,
    parse_words,
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
# The fast path of each event takes the n tails of its lines (the text after "EVENT: ") joined
# by newlines, splits them at the field labels with bytes methods, parses decimal fields with
# numpy (parse_words: so many numbers on every line) and the dev/ino field once per distinct
# file; it returns None when anything does not fit. Its lines are then parsed again one by
# one by the event's regular expression, which also takes the older kernels' forms; what that
# cannot parse is a bad line.

_HEX = rb"([0-9a-fA-F]+)"
_INO10 = -10
"""The base of a decimal inode number (ext4's ``%lu``): like a hexadecimal one (``%lx``), a value
of 2**63 or more wraps to the negative int64 of the same 64 bits, so both name the same file."""
_INT64_MAX = (1 << 63) - 1
_PFN = rb"(0x[0-9a-fA-F]+|\d+)"


def _decimals(parts: list[bytes], per_line: int = 1, signed: bool = False) -> np.ndarray | None:
    """(n, per_line) non-negative int64 decimals, ``per_line`` in each of the n ``parts``;
    None unless every part holds exactly so many. ``signed``: a minus sign is dropped (for
    fields only checked, never used)."""
    text = b"\n".join(parts) + b"\n"
    if signed:
        text = text.replace(b"-", b"")
    return parse_words(text, len(parts), (10,) * per_line)


def _byte_ranges(parts: list[bytes]) -> np.ndarray | None:
    """(n, 2) of ``A-B`` fields, digits on both sides of exactly one dash in each; else None
    (``-585728-651263`` is not a range: the slow path refuses it)."""
    text = b"\n".join(parts) + b"\n"
    buf = np.frombuffer(text, np.uint8)
    dash = np.flatnonzero(buf == 45)
    nl = np.flatnonzero(buf == 10)
    if len(dash) != len(parts) or not np.array_equal(np.searchsorted(dash, nl),
                                                     np.arange(1, len(parts) + 1)):
        return None
    digit = (buf >= 48) & (buf <= 57)
    if not (digit[np.maximum(dash - 1, 0)] & digit[dash + 1] & (dash > 0)).all():
        return None
    return parse_words(text.replace(b"-", b" "), len(parts), (10, 10))


_KEY_RANGE = re.compile(rb"dev=(\d+):(\d+) ino=([0-9a-fA-F]+)")
_KEY_CACHE = re.compile(rb"dev (\d+):(\d+) ino ([0-9a-fA-F]+)")
_KEY_EXT4 = re.compile(rb"dev (\d+),(\d+) ino (\d+)")


def _file_keys(keys: list[bytes], rx: re.Pattern, ino_base: int = 16) -> np.ndarray | None:
    """(n, 3) major, minor, inode of the ``dev ... ino ...`` field of each line, parsed once
    per distinct file (a trace names few files many times); None if one does not parse."""
    table: list[tuple[int, int, int]] = []

    def parse(key: bytes) -> int:
        m = rx.fullmatch(key)
        if m is None:
            return -1
        major, minor = int(m.group(1)), int(m.group(2))
        if major >= 1 << (32 - MINORBITS) or minor >= 1 << MINORBITS:
            return -1                  # not a device number: the slow path names the line
        try:
            table.append((major, minor, _int(m.group(3), ino_base, None)))
        except ValueError:
            return -1
        return len(table) - 1

    memo: dict[bytes, int] = {}
    idx = [memo[k] if k in memo else memo.setdefault(k, parse(k)) for k in keys]
    if -1 in memo.values() or not table:
        return None
    return np.asarray(table, np.int64)[np.asarray(idx, np.int64)]


def _pfns(words: list[bytes], n: int) -> np.ndarray | None:
    """0x-prefixed hexadecimal page frame numbers (decimal in older kernels)."""
    text = b"\n" + b"\n".join(words) + b"\n"
    hexes = text.count(b"\n0x")
    if hexes == n:
        cols = parse_words(text.replace(b"\n0x", b"\n")[1:], n, (16,))
    elif hexes == 0:
        cols = parse_words(text[1:], n, (10,))
    else:
        return None
    return None if cols is None else cols[:, 0]


def _split(blob: bytes, n: int, labels: tuple[bytes, ...]) -> list[bytes] | None:
    """Fields between ``labels`` (each once a line): field j of line i at [i * k + j].

    A line without a label (or with one twice) shifts the fields of the lines after it, which
    the count check or the numbers' parsing then refuses."""
    for label in labels:
        blob = blob.replace(label, b"\n")
    parts = blob.split(b"\n")
    return parts if len(parts) == n * (len(labels) + 1) + 1 else None


def _fast_range(blob: bytes, n: int, single: bool = False):
    """get_pages/map_pages ``dev=M:m ino=HEX ofs=A-B``; fault (single) ``ofs=A``."""
    parts = _split(blob, n, (b" ofs=",))
    if parts is None:
        return None
    key = _file_keys(parts[0:2 * n:2], _KEY_RANGE)
    ofs = _decimals(parts[1:2 * n:2]) if single else _byte_ranges(parts[1:2 * n:2])
    if key is None or ofs is None:
        return None
    return np.concatenate([key, ofs], axis=1), {}


def _fast_cache(blob: bytes, n: int):
    """add/delete ``dev M:m ino HEX pfn=0xPFN ofs=BYTES order=N``."""
    parts = _split(blob, n, (b" pfn=", b" ofs="))
    if parts is None:
        return None
    key = _file_keys(parts[0:3 * n:3], _KEY_CACHE)
    pfn = _pfns(parts[1:3 * n:3], n)
    text = b"\n".join(parts[2:3 * n:3]) + b"\n"         # "BYTES order=N" on every line
    rest = parse_words(text.replace(b" order=", b" "), n, (10, 10))
    if key is None or pfn is None or rest is None:
        return None
    return np.concatenate([key, pfn[:, None], rest], axis=1), {}


def _fast_alloc(blob: bytes, n: int):
    """``page=PTR pfn=0xPFN order=N migratetype=T gfp_flags=FLAGS``."""
    parts = _split(blob, n, (b" pfn=", b" order=", b" migratetype=", b" gfp_flags="))
    if parts is None:
        return None
    pfn = _pfns(parts[1:5 * n:5], n)
    order = _decimals(parts[2:5 * n:5])
    mt = _decimals(parts[3:5 * n:5], signed=True)
    if pfn is None or order is None or mt is None or parts[0][:5] != b"page=":
        return None
    memo: dict[bytes, int] = {}
    gfp = [memo[f] if f in memo else memo.setdefault(f, _gfp_bit(f)) for f in parts[4:5 * n:5]]
    return np.concatenate([pfn[:, None], order], axis=1), {"gfp": np.asarray(gfp, np.int64)}


def _fast_free(blob: bytes, n: int):
    """``page=PTR pfn=0xPFN order=N``."""
    parts = _split(blob, n, (b" pfn=", b" order="))
    if parts is None:
        return None
    pfn = _pfns(parts[1:3 * n:3], n)
    order = _decimals(parts[2:3 * n:3])
    if pfn is None or order is None or parts[0][:5] != b"page=":
        return None
    return np.concatenate([pfn[:, None], order], axis=1), {}


def _fast_write(blob: bytes, n: int):
    """ext4 write_begin ``dev M,m ino DEC pos BYTES len BYTES``."""
    parts = _split(blob, n, (b" pos ",))
    if parts is None:
        return None
    key = _file_keys(parts[0:2 * n:2], _KEY_EXT4, _INO10)
    text = b"\n".join(parts[1:2 * n:2]) + b"\n"         # "BYTES len BYTES" on every line
    rest = parse_words(text.replace(b" len ", b" "), n, (10, 10))
    if key is None or rest is None:
        return None
    return np.concatenate([key, rest], axis=1), {}


def _fast_evict(blob: bytes, n: int):
    """ext4_evict_inode ``dev M,m ino DEC nlink N`` (a negative N: line by line)."""
    parts = _split(blob, n, (b" nlink ",))
    if parts is None:
        return None
    key = _file_keys(parts[0:2 * n:2], _KEY_EXT4, _INO10)
    nlink = _decimals(parts[1:2 * n:2])
    if key is None or nlink is None:
        return None
    return np.concatenate([key, nlink], axis=1), {}


_SAMPLE_BLOB = re.compile(rb"(?: file=\d+ anon=\d+ usage=\d+ buffers=\d+\n)*")


def _fast_sample(blob: bytes, n: int):
    """`` file=B anon=B usage=B buffers=B`` (the tails start after ``tagcache_sample:``)."""
    if _SAMPLE_BLOB.fullmatch(blob) is None:
        return None
    text = (blob.replace(b" file=", b"").replace(b" anon=", b" ").replace(b" usage=", b" ")
            .replace(b" buffers=", b" "))
    c = parse_words(text, n, (10, 10, 10, 10))
    return None if c is None else (c, {})


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
    fast: Callable
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

    def parse(self, tails: list[bytes]):
        """(rows, good mask): all lines at once, or line by line when that fails."""
        got = self.fast(b"\n".join(tails) + b"\n", len(tails))
        if got is not None:
            rows, bad = self.rows(got[0])
            if not bad.any():
                rows.update(got[1])
                return rows, np.ones(len(tails), bool)
        return self.slow(tails)

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


_RANGE = dict(pattern=rb"dev=(\d+):(\d+) ino=" + _HEX + rb" ofs=(\d+)-(\d+)",
              bases=(10, 10, 16, 10, 10), rows=_rows_range, fast=_fast_range)
_CACHE = dict(pattern=rb"dev (\d+):(\d+) ino " + _HEX + rb"(?: page=\S+)? pfn=" + _PFN
              + rb" ofs=(\d+)(?: order=(\d+))?",
              bases=(10, 10, 16, 0, 10, 10), defaults=(None,) * 5 + (0,), rows=_rows_cache,
              fast=_fast_cache)
_WRITE = dict(pattern=rb"dev (\d+),(\d+) ino (\d+) pos (\d+) len (\d+)",
              bases=(10, 10, _INO10, 10, 10), rows=_rows_write, fast=_fast_write)

EVENTS: dict[bytes, _Event] = {e.name: e for e in (
    _Event(b"mm_filemap_get_pages", Op.GET_PAGES, "'dev=M:m ino=HEX ofs=A-B'", **_RANGE),
    _Event(b"mm_filemap_map_pages", Op.MAP_PAGES, "'dev=M:m ino=HEX ofs=A-B'", **_RANGE),
    _Event(b"mm_filemap_fault", Op.FAULT, "'dev=M:m ino=HEX ofs=A'",
           fast=lambda blob, n: _fast_range(blob, n, single=True),
           pattern=rb"dev=(\d+):(\d+) ino=" + _HEX + rb" ofs=(\d+)", bases=(10, 10, 16, 10),
           rows=_rows_fault),
    _Event(b"mm_filemap_add_to_page_cache", Op.KERNEL_ADD,
           "'dev M:m ino HEX pfn=0xPFN ofs=BYTES order=N'", **_CACHE),
    _Event(b"mm_filemap_delete_from_page_cache", Op.KERNEL_DELETE,
           "'dev M:m ino HEX pfn=0xPFN ofs=BYTES order=N'", **_CACHE),
    _Event(b"mm_page_alloc", Op.PAGE_ALLOC,
           "'page=PTR pfn=0xPFN order=N migratetype=T gfp_flags=FLAGS'", fast=_fast_alloc,
           pattern=rb"page=\S+ pfn=" + _PFN + rb" order=(\d+) migratetype=-?\d+ "
           rb"gfp_flags=(\S*)", bases=(0, 10), gfp_group=3, rows=_rows_page),
    _Event(b"mm_page_free", Op.PAGE_FREE, "'page=PTR pfn=0xPFN order=N'", fast=_fast_free,
           pattern=rb"page=\S+ pfn=" + _PFN + rb" order=(\d+)", bases=(0, 10), rows=_rows_page),
    _Event(b"ext4_da_write_begin", Op.WRITE, "'dev M,m ino DEC pos BYTES len BYTES'", **_WRITE),
    _Event(b"ext4_write_begin", Op.WRITE, "'dev M,m ino DEC pos BYTES len BYTES'", **_WRITE),
    _Event(b"ext4_evict_inode", Op.UNLINK, "'dev M,m ino DEC nlink N'", fast=_fast_evict,
           pattern=rb"dev (\d+),(\d+) ino (\d+) nlink (-?\d+)", bases=(10, 10, _INO10, 10),
           rows=_rows_evict),
)}
_BY_LEN: dict[int, list[_Event]] = {}
for _e in EVENTS.values():
    _BY_LEN.setdefault(len(_e.name), []).append(_e)
SAMPLE = _Event(b"tracing_mark_write: tagcache_sample", Op.CGROUP_SAMPLE,
                "'file=BYTES anon=BYTES usage=BYTES buffers=BYTES'", fast=_fast_sample,
                pattern=rb"file=(\d+) anon=(\d+) usage=(\d+) buffers=(\d+)",
                bases=(10, 10, 10, 10), rows=_rows_sample, sep=b":")
"""A trace_marker line of the recorder: ``tracing_mark_write: tagcache_sample:`` and its fields
(a marker starting otherwise is not one of ours, and is skipped)."""


# --------------------------------------------------------------------------- the parser

class _Parser:
    def __init__(self, source: str, skip: bool) -> None:
        self.source = source
        self.bad = BadLines(source, skip)
        self.lines = 0
        self.files: dict[tuple[int, int], int] = {}
        self.tasks: dict[tuple[str, int], int] = {}
        self.out: list[dict[str, np.ndarray]] = []

    def chunk(self, chunk: bytes) -> None:
        buf = np.frombuffer(chunk, np.uint8)
        nl = np.flatnonzero(buf == 10)
        colons = np.flatnonzero(buf == 58)
        c = colons[(colons > 0) & (colons < len(buf) - 5)]
        before = buf[c - 1]
        c = c[(buf[c + 1] == 32) & (before >= 48) & (before <= 57)]   # the ':' after a time
        b2, b3, b4 = buf[c + 2], buf[c + 3], buf[c + 4]
        hit = (((b2 == 109) & (b3 == 109) & (b4 == 95))             # " mm_"
               | ((b2 == 101) & (b3 == 120) & (b4 == 116)))         # " ext"
        cand = c[hit]
        mark = c[(b2 == 116) & (b3 == 114) & (b4 == 97)]
        groups = []
        if len(mark):                                  # " tra": tracing_mark_write?
            idx = mark[:, None] + 2 + np.arange(len(SAMPLE.marker))
            window = buf[np.minimum(idx, len(buf) - 1)]
            mark = mark[(window == SAMPLE.marker).all(axis=1)]
            if len(mark):
                groups.append(self._group(SAMPLE, chunk, nl, mark, np.searchsorted(nl, mark)))
        if len(cand):
            j = np.minimum(np.searchsorted(colons, cand + 2), len(colons) - 1)
            name_len = colons[j] - (cand + 2)
            line_of = np.searchsorted(nl, cand)
            for length, events in _BY_LEN.items():
                k = np.flatnonzero(name_len == length)
                if not len(k):
                    continue
                idx = cand[k, None] + 2 + np.arange(length + 2)
                window = buf[np.minimum(idx, len(buf) - 1)]
                for ev in events:
                    sel = k[(window == ev.marker).all(axis=1)]
                    if len(sel):
                        groups.append(self._group(ev, chunk, nl, cand[sel], line_of[sel]))
        if groups:
            self._merge(groups, chunk, buf, nl)
        self.lines += len(nl)
        self.bad.flush()

    def _group(self, ev: _Event, chunk: bytes, nl, at, line_of) -> dict:
        """Rows of the lines of one event type; its bad lines go to :attr:`bad`."""
        starts = (at + 2 + len(ev.marker)).tolist()
        tails = [chunk[a:b] for a, b in zip(starts, nl[line_of].tolist(), strict=True)]
        lineno = self.lines + line_of + 1
        rows, good = ev.parse(tails)
        if not good.all():
            for i in np.flatnonzero(~good):
                self.bad.add(int(lineno[i]), f"{ev.name.decode()}: {ev.expected}", tails[i],
                             _problem(ev, tails[i]))
            at, lineno = at[good], lineno[good]
        rows["line"] = lineno
        rows["at"] = at
        rows["op"] = np.full(len(lineno), int(ev.op), np.int64)
        if ev.op == Op.PAGE_ALLOC:       # pfn 0: the kernel printed a NULL page, nothing allocated
            real = rows["pfn"] != 0
            rows = {key: v[real] for key, v in rows.items()}
        skip = rows.pop("skip", None)    # good lines that are no row (a write of 0 bytes, ...)
        if skip is not None and skip.any():
            rows = {key: v[~skip] for key, v in rows.items()}
        if ev.kmem and "gfp" not in rows:
            rows["gfp"] = np.zeros(len(rows["line"]), np.int64)
        rows["kmem"] = ev.kmem
        rows["sample"] = ev.sample
        return rows

    def _merge(self, groups: list[dict], chunk: bytes, buf, nl) -> None:
        files = [g for g in groups if not g["kmem"] and not g["sample"] and len(g["line"])]
        kmem = [g for g in groups if g["kmem"] and len(g["line"])]
        samples = [g for g in groups if g["sample"] and len(g["line"])]
        parts = []
        if files:
            parts.append(self._file_part(files))
        if kmem:
            parts.append(self._kmem_part(kmem, chunk, buf, nl))
        if samples:
            parts.append(self._sample_part(samples))
        if not parts:
            return
        cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        order = np.argsort(cat["line"], kind="stable")
        self.out.append({k: v[order] for k, v in cat.items()})

    def _file_part(self, groups: list[dict]) -> dict:
        def cat(key):
            return np.concatenate([g[key] for g in groups])
        line = cat("line")
        order = np.argsort(line, kind="stable")
        dev, ino = cat("dev")[order], cat("ino")[order]
        size_end = cat("size_end")
        return {"line": line[order], "op": cat("op")[order], "a0": pair_ids(dev, ino, self.files),
                "a1": cat("a1")[order], "a2": cat("a2")[order], "end": cat("end")[order],
                "size_end": size_end[order], "file": np.ones(len(line), bool)}

    def _kmem_part(self, groups: list[dict], chunk: bytes, buf, nl) -> dict:
        def cat(key):
            return np.concatenate([g[key] for g in groups])
        line = cat("line")
        order = np.argsort(line, kind="stable")
        line, at = line[order], cat("at")[order]
        task = self._task_ids(chunk, buf, nl, at, line)
        ok = task >= 0
        n = int(ok.sum())
        return {"line": line[ok], "op": cat("op")[order][ok], "a0": cat("pfn")[order][ok],
                "a1": cat("order")[order][ok], "a2": (task[ok] << 8) | cat("gfp")[order][ok],
                "end": np.zeros(n, np.int64), "size_end": np.full(n, -1, np.int64),
                "file": np.zeros(n, bool)}

    @staticmethod
    def _sample_part(groups: list[dict]) -> dict:
        (g,) = groups
        n = len(g["line"])
        return {"line": g["line"], "op": g["op"], "a0": g["a0"], "a1": g["a1"], "a2": g["a2"],
                "end": np.zeros(n, np.int64), "size_end": np.full(n, -1, np.int64),
                "file": np.zeros(n, bool)}

    def _task_ids(self, chunk: bytes, buf, nl, at, line) -> np.ndarray:
        """Index in the task table of each line's COMM-PID; -1 (a bad line) if it has none."""
        li = line - self.lines - 1
        start = np.where(li > 0, nl[np.maximum(li - 1, 0)] + 1, 0)
        brackets = np.flatnonzero(buf == 91)
        bi = np.searchsorted(brackets, at) - 1
        bracket = np.where(bi >= 0, brackets[np.maximum(bi, 0)], -1)
        length = bracket - start
        ok = (length > 0) & (length <= _MAX_PREFIX)
        task = np.full(len(at), -1, np.int64)
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
            s = int(start[i])
            self.bad.add(int(line[i]), "'COMM-PID [CPU]' before the event",
                         chunk[s:int(nl[li[i]])])
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
        fid = cat["a0"][isf]
        first, end = cat["a1"][isf], cat["end"][isf]
        named = end >= 0                                # an eviction names no page
        if named.all():
            delta, extents = compact_extents(fid, first, np.maximum(first, end - 1))
        else:
            delta = np.zeros(len(fid), np.int64)
            delta[named], extents = compact_extents(fid[named], first[named],
                                                    np.maximum(first, end - 1)[named])
        cat["a1"][isf] = first - delta
        end = end - delta
        size = np.zeros(nfiles, np.int64)
        span = np.zeros(nfiles, np.int64)
        np.maximum.at(span, fid, end)
        added = cat["size_end"][isf]
        has = added >= 0
        np.maximum.at(size, fid[has], added[has] - delta[has])
        files = FileTable.build(dev, ino, size, span, np.full(nfiles, large_folios))
        tasks = list(self.tasks)
        return Trace(cat["op"].astype(np.uint8), cat["a0"].astype(np.int64),
                     cat["a1"].astype(np.int64), cat["a2"].astype(np.int64), files, name,
                     tasks, self.bad.count, extents)


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
        for chunk in iter_line_chunks(f, bad=p.bad):
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
