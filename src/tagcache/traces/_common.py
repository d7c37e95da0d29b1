"""Shared by the format readers: transparent decompression, line chunks, vectorised integers,
bad lines, and dense page indexes.

Readers never loop over lines in Python where a whole chunk can be handled at once: text is read
in chunks of whole lines, and parsed in compiled code over the bytes (ftrace, txt:
:func:`iter_line_arrays`, :func:`parse_id_lines`) or with numpy (:func:`parse_words`: one pass
over the bytes, no Python object per number). A trace's pages are made dense before it is
returned, so that memory follows what it touches, not its largest address or id:
:func:`compact_extents` for addresses (2 MiB extents, order and nearby distances kept),
:func:`dense_object_ids` for libCacheSim's object ids (compiled: a table or a hash table).
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import zstandard
from numba import njit

from tagcache.errors import TraceError
from tagcache.workloads.events import ExtentMap, FileTable, Op, Trace

MAX_REQUEST_BYTES = 1 << 32
"""The most bytes one request of a trace may move: more is a bad line, not a long replay.
Linux moves at most MAX_RW_COUNT (INT_MAX rounded down to a page, 2 GiB - 4 KiB) in one
read or write call, so an ftrace get_pages range is never longer, and a bio's size is a
32-bit count of bytes (bi_size), so neither is a block request; a 1 TiB "request" is a
corrupt line, and replaying it would walk 2**28 pages."""

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 1 << 24          # text is parsed 16 MiB of whole lines at a time
_IN_BYTES = 1 << 20            # compressed bytes fed to the decompressor per step

PathLike = str | os.PathLike


# --------------------------------------------------------------------------- decompression

class _ZstdStream(io.RawIOBase):
    """Decompresses every frame of a zstd file; a stream that ends inside a frame raises.

    ``zstandard``'s own stream reader returns a short result on a cut file; this one checks
    that the last frame ended (``decompressobj().eof``) and raises :class:`TraceError`.
    """

    def __init__(self, raw: BinaryIO, name: str) -> None:
        self._raw = raw
        self._name = name
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._in_frame = False
        self._buf = b""
        self._pos = 0
        self._out = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while not self._done and self._pos >= len(self._buf):
            data = self._raw.read(_IN_BYTES)
            if not data:
                self._done = True
                if self._in_frame:
                    raise TraceError(f"{self._name}: truncated zstd stream: the last frame ends "
                                     f"early, after {self._out} decompressed bytes")
                return
            out = []
            while data:
                self._in_frame = True
                try:
                    out.append(self._obj.decompress(data))
                except zstandard.ZstdError as e:
                    raise TraceError(f"{self._name}: corrupt zstd stream after {self._out} "
                                     f"decompressed bytes: {e}") from None
                if not self._obj.eof:
                    break
                data = self._obj.unused_data
                self._obj = self._dctx.decompressobj()
                self._in_frame = False
            self._buf = b"".join(out)
            self._pos = 0
            self._out += len(self._buf)

    def readinto(self, b) -> int:
        self._fill()
        n = min(len(b), len(self._buf) - self._pos)
        b[:n] = memoryview(self._buf)[self._pos:self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


class _GzipStream(io.RawIOBase):
    """gzip.GzipFile whose truncation and corruption errors become :class:`TraceError`."""

    def __init__(self, raw: BinaryIO, name: str) -> None:
        self._raw = raw
        self._name = name
        self._gz = gzip.GzipFile(fileobj=raw, mode="rb")
        self._out = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            n = self._gz.readinto(b)
        except EOFError:
            raise TraceError(f"{self._name}: truncated gzip stream: it ends before its end "
                             f"marker, after {self._out} decompressed bytes") from None
        except (gzip.BadGzipFile, zlib.error) as e:
            raise TraceError(f"{self._name}: corrupt gzip stream after {self._out} "
                             f"decompressed bytes: {e}") from None
        self._out += n
        return n

    def close(self) -> None:
        self._gz.close()
        self._raw.close()
        super().close()


_COMPRESSED = {".zst": ("zstd", ZSTD_MAGIC), ".gz": ("gzip", GZIP_MAGIC)}


def open_binary(path: PathLike) -> BinaryIO:
    """Open a trace for reading bytes, decompressing zstd or gzip found by their magic bytes."""
    p = Path(path)
    try:
        raw = open(p, "rb")  # noqa: SIM115 - handed to the returned stream
    except OSError as e:
        raise TraceError(f"{p}: cannot open: {e.strerror}") from None
    magic = raw.read(4)
    raw.seek(0)
    if magic == ZSTD_MAGIC:
        return io.BufferedReader(_ZstdStream(raw, str(p)), CHUNK_BYTES)
    if magic[:2] == GZIP_MAGIC:
        return io.BufferedReader(_GzipStream(raw, str(p)), CHUNK_BYTES)
    expected = _COMPRESSED.get(p.suffix.lower())
    if expected is not None:
        raw.close()
        what = "the file is empty" if not magic else f"it starts with {magic.hex(' ')}"
        raise TraceError(f"{p}: truncated {expected[0]} stream: no {expected[0]} magic "
                         f"({expected[1].hex(' ')}), {what}")
    return raw


def open_text(path: PathLike) -> io.TextIOWrapper:
    """Open a trace as UTF-8 text (undecodable bytes replaced), decompressing as needed."""
    return io.TextIOWrapper(open_binary(path), encoding="utf-8", errors="replace")


def read_head(path: PathLike, n: int = 1 << 16) -> bytes:
    """The first ``n`` decompressed bytes of a trace."""
    with open_binary(path) as f:
        return f.read(n)


def iter_line_chunks(stream: BinaryIO, size: int = CHUNK_BYTES,
                     bad: BadLines | None = None) -> Iterator[bytes]:
    """Yield chunks of whole lines, each ending with a newline.

    A file whose last line has no newline was cut in the middle of that line (every tool
    that writes these traces ends its lines): with ``bad`` that line is a bad line (an error,
    or skipped and counted), without it the line is yielded with a newline added. A last
    line of blanks only is ignored.
    """
    rest = b""
    lines = 0
    while True:
        data = stream.read(size)
        if not data:
            break
        data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            rest = data
            continue
        rest = data[cut:]
        lines += data.count(b"\n", 0, cut)
        yield data[:cut]
    if not rest.strip():
        return
    if bad is None:
        yield rest + b"\n"
        return
    bad.add(lines + 1, "a whole line", rest,
            problem="the file ends in the middle of this line (no newline: cut short?)")
    bad.flush()


def iter_line_arrays(stream: BinaryIO, size: int = CHUNK_BYTES, bad: BadLines | None = None,
                     lines: Callable[[], int] | None = None) -> Iterator[np.ndarray]:
    """:func:`iter_line_chunks` for compiled parsers: chunks of whole lines as uint8 arrays
    over one buffer that is read into again and again, so that the text is never copied (and
    its memory is touched once). Each array is valid until the next one is asked for.
    ``lines``: how many lines the caller has counted (then this does not count them)."""
    buf = bytearray(size)
    fill = 0
    count = 0
    while True:
        if fill == len(buf):                       # a line longer than the buffer
            grown = bytearray(2 * len(buf))
            grown[:fill] = buf
            buf = grown
        with memoryview(buf) as view:
            got = stream.readinto(view[fill:])
        if not got:
            break
        fill += got
        cut = buf.rfind(b"\n", 0, fill) + 1
        if cut == 0:
            continue
        if lines is None:
            count += buf.count(b"\n", 0, cut)
        yield np.frombuffer(buf, np.uint8, cut)
        rest = fill - cut
        buf[:rest] = buf[cut:fill]
        fill = rest
    rest = bytes(buf[:fill])
    if not rest.strip():
        return
    if bad is None:
        yield np.frombuffer(bytearray(rest + b"\n"), np.uint8)   # writable: one numba type
        return
    bad.add((count if lines is None else lines()) + 1, "a whole line", rest,
            problem="the file ends in the middle of this line (no newline: cut short?)")
    bad.flush()


# --------------------------------------------------------------------------- errors

def snippet(line: bytes | str, limit: int = 100) -> str:
    """A line shown in an error message: decoded, stripped, shortened, on one line."""
    s = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    s = s.strip()
    return repr(s if len(s) <= limit else s[:limit] + "...")


class BadLines:
    """Collects malformed lines: raises for the first one, or counts them when skipping is asked.

    Readers :meth:`add` every bad line of a chunk and :meth:`flush` at the end of the chunk, so
    the error names the earliest bad line even when a chunk is parsed event type by event type.
    """

    def __init__(self, name: str, skip: bool) -> None:
        self.name = name
        self.skip = skip
        self.count = 0
        self._more = 0
        self._pending: list[tuple[int, str, bytes | str, str | None]] = []

    def add(self, lineno: int, expected: str, line: bytes | str,
            problem: str | None = None) -> None:
        """A bad line: what was expected, or (``problem``) what is wrong with it."""
        self._pending.append((lineno, expected, line, problem))

    def add_many(self, count: int, lineno: int, expected: str, line: bytes | str,
                 problem: str | None = None) -> None:
        """``count`` bad lines found by a compiled parser, of which only the first (the one an
        error names) is described."""
        self.add(lineno, expected, line, problem)
        self._more += count - 1

    def flush(self) -> None:
        if not self._pending:
            return
        if not self.skip:
            lineno, expected, line, problem = min(self._pending, key=lambda t: t[0])
            if problem is not None:
                raise TraceError(f"{self.name}:{lineno}: {problem}: {snippet(line)}")
            raise TraceError(f"{self.name}:{lineno}: expected {expected}, got {snippet(line)}")
        self.count += len(self._pending) + self._more
        self._pending.clear()
        self._more = 0


# --------------------------------------------------------------------------- integers

_MAXLEN = {10: 20, 16: 16}                 # digits of the largest unsigned 64-bit value
_INT64_MAX = np.uint64(2**63 - 1)
_U64_TOP = np.uint64(2**64 - 1 - 10**19)    # the most 19 digits under a leading 1 may hold
_POW = {b: [np.uint64(b ** i) for i in range(_MAXLEN[b])] for b in (10, 16)}
U64_MAX = 2**64 - 1


@functools.lru_cache(maxsize=8)
def _tables(seps: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables for :class:`Words`: digit value of each byte (-1: not a hex digit) and
    whether it belongs to a word (not a separator, not a newline)."""
    digit = np.full(256, -1, np.int8)
    for i, c in enumerate(b"0123456789"):
        digit[c] = i
    for i, c in enumerate(b"abcdef"):
        digit[c] = digit[c - 32] = 10 + i
    word = np.ones(256, bool)
    word[list(seps + b"\n")] = False
    return digit, word


class Words:
    """The words of a byte buffer (maximal runs of bytes that are not ``seps`` or newlines),
    as arrays of first and last byte offsets, and their integer values computed with numpy."""

    def __init__(self, buf: np.ndarray, seps: bytes) -> None:
        digit, word = _tables(seps)
        self.buf = buf
        self.digit = digit                  # looked up at the words' bytes only
        edge = np.flatnonzero(np.diff(word[buf].view(np.int8), prepend=np.int8(0),
                                      append=np.int8(0)))
        self.start = edge[0::2]
        self.end = edge[1::2] - 1

    def __len__(self) -> int:
        return len(self.start)

    def numbers(self, s: np.ndarray, e: np.ndarray, base: int,
                unsigned: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Values of the words [s, e] in ``base`` (10 or 16) and which are not such numbers.

        Base 0 takes hexadecimal for words starting with 0x and decimal for the others.
        Decimal values must fit int64 (``unsigned``: uint64, and the values are uint64);
        16-digit hexadecimal ones may wrap to negative.
        """
        if base == 0:
            pre = (e - s > 1) & (self.buf[s] == 48) & ((self.buf[np.minimum(s + 1, e)] | 32) == 120)
            hv, hb = self.numbers(s + 2 * pre, e, 16, unsigned)
            dv, db = self.numbers(s, e, 10, unsigned)
            return np.where(pre, hv, dv), np.where(pre, hb, db)
        n = len(s)
        length = e - s + 1
        if n == 0:
            return np.zeros(0, np.uint64 if unsigned else np.int64), np.zeros(0, bool)
        acc = np.zeros(n, np.uint64)
        bad = length > _MAXLEN[base]
        for r in range(min(int(length.max()), _MAXLEN[base])):
            d = self.digit[self.buf[e - r]]
            if r:
                d = np.where(r < length, d, 0)
            bad |= (d < 0) | (d >= base)
            if r == 19:                    # a 20th decimal digit: only 1, and not past 2**64
                bad |= (d > 1) | ((d == 1) & (acc > _U64_TOP))
                d = np.where(bad, 0, d)
            acc += d.astype(np.uint64) * _POW[base][r]
        if base == 10 and not unsigned:
            bad |= acc > _INT64_MAX
        return (acc if unsigned else acc.view(np.int64)), bad


def parse_words(blob: bytes, n: int, bases: tuple[int, ...],
                unsigned: bool = False) -> np.ndarray | None:
    """Parse ``n`` lines of ``len(bases)`` integer words each into an (n, k) int64 array
    (``unsigned``: uint64, decimal words up to 2**64 - 1).

    Words are separated by spaces or tabs, lines end with a newline; ``bases[j]`` (10, 16, or 0
    for 0x-prefixed hexadecimal or decimal) is the base of column j. Returns None when anything
    is off (a line with another number of words, a word that is not a number): the caller then
    parses line by line to name the bad line.
    """
    k = len(bases)
    dtype = np.uint64 if unsigned else np.int64
    if n == 0:
        return np.zeros((0, k), dtype)
    buf = np.frombuffer(blob, np.uint8)
    w = Words(buf, b" \t\r")
    nls = np.flatnonzero(buf == 10)
    if len(w) != n * k or len(nls) != n or not np.array_equal(
            np.searchsorted(w.start, nls), k * np.arange(1, n + 1)):
        return None
    s, e = w.start.reshape(n, k), w.end.reshape(n, k)
    out = np.empty((n, k), dtype)
    for j, base in enumerate(bases):
        vals, bad = w.numbers(s[:, j], e[:, j], base, unsigned)
        if bad.any():
            return None
        out[:, j] = vals
    return out


def parse_column(words: list[bytes], base: int = 10, unsigned: bool = False) -> np.ndarray | None:
    """Parse one column of integer words (bytes); None when any word is not an integer
    (``unsigned``: uint64 values, up to 2**64 - 1)."""
    out = parse_words(b"\n".join(words) + b"\n", len(words), (base,), unsigned)
    return None if out is None else out[:, 0]


_INT_WORD = re.compile(rb"\s*(?:([0-9]+)|0[xX]([0-9a-fA-F]+))\s*")


def int_word(word: bytes, limit: int = U64_MAX) -> int | None:
    """A decimal or 0x-hexadecimal integer word (blanks around it) in [0, limit], or None."""
    m = _INT_WORD.fullmatch(word)
    if m is None:
        return None
    v = int(m.group(1)) if m.group(1) is not None else int(m.group(2), 16)
    return v if v <= limit else None


def overflow(word: bytes, what: str, limit: int = U64_MAX) -> str | None:
    """``'WHAT N does not fit 64 bits'`` when ``word`` is a decimal number above ``limit``
    (a problem for :meth:`BadLines.add`), else None."""
    w = word.strip()
    if w.isdigit() and int(w) > limit:
        return f"{what} {w.decode()} does not fit {'64' if limit == U64_MAX else '63'} bits"
    return None


# --------------------------------------------------------------------------- building

def trace_name(path: PathLike) -> str:
    """The trace's name: its file name without compression and format suffixes."""
    name = Path(path).name
    for suffix in (".zst", ".gz", ".trace", ".txt", ".csv", ".oracleGeneral", ".bin", ".blk"):
        if name.lower().endswith(suffix.lower()) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def single_file_trace(op: np.ndarray, first: np.ndarray, pages: np.ndarray, name: str,
                      skipped: int, dev: int = 0, ino: int = 0,
                      extents: ExtentMap | None = None, span: int | None = None) -> Trace:
    """A trace of READ/WRITE events on one file (dev, ino) sized by the highest page named
    (``span``: that size, when the caller knows it). The pages must be dense already
    (:func:`compact_extents`, :func:`dense_object_ids`). Columns of the right dtypes (uint8,
    int64) are taken as they are, not copied."""
    n = len(op)
    if span is None:
        span = int((first + pages).max()) if n else 0
    files = FileTable.build([dev], [ino], [span], [span], [False])
    return Trace(np.asarray(op, np.uint8), np.zeros(n, np.int64), np.asarray(first, np.int64),
                 np.asarray(pages, np.int64), files, name, [], skipped, extents)


def object_trace(ids: np.ndarray, name: str, skipped: int) -> Trace:
    """A trace of one 1-page READ per object id (uint64, overwritten: the pages are built in
    its memory), as libCacheSim's txt and oracleGeneral traces and csv traces of objects."""
    pages, span = dense_object_ids_in_place(ids)
    n = len(pages)
    return single_file_trace(np.full(n, int(Op.READ), np.uint8), pages, np.ones(n, np.int64),
                             name, skipped, span=span)


def byte_range_pages(offset: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First 4 KiB page and number of pages touched by byte ranges [offset, offset + size)
    (uint64 offsets, sizes 1..MAX_REQUEST_BYTES, not passing 2**64: :func:`bad_byte_ranges`)."""
    offset = np.asarray(offset, np.uint64)
    last = offset + (np.asarray(size, np.int64) - 1).astype(np.uint64)
    first = (offset >> np.uint64(12)).astype(np.int64)
    return first, (last >> np.uint64(12)).astype(np.int64) - first + 1


def bad_byte_ranges(offset: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Which byte ranges [offset, offset + size) (uint64 offsets) are longer than
    :data:`MAX_REQUEST_BYTES` or pass the end of the 64-bit address space."""
    size = np.asarray(size, np.int64)
    room = np.uint64(U64_MAX) - np.asarray(offset, np.uint64)
    return (size > MAX_REQUEST_BYTES) | (size < 0) | (
        np.maximum(size - 1, 0).astype(np.uint64) > room)


def range_problem(offset: int, size: int, what: str = "Size") -> str | None:
    """Why the byte range [offset, offset + size) cannot be a request, or None."""
    if size > MAX_REQUEST_BYTES:
        return (f"{what} {size} is more than one request can move ({MAX_REQUEST_BYTES} bytes,"
                " MAX_REQUEST_BYTES)")
    if offset + max(size, 1) - 1 > U64_MAX:
        return f"the request at {offset} of {size} bytes passes the end of 64-bit addresses"
    return None


# --------------------------------------------------------------------------- dense ids

EXTENT_SHIFT = 9
"""Address traces are compacted in extents of 512 pages (2 MiB): offsets within an extent are
kept, so a folio (order <= 9) is aligned as it was, and so is fault-around's window."""
EXTENT_KEEP = 4
"""Unused extents kept on each side of a run of used ones (8 MiB): readahead windows up to
8 MiB (the read_ahead_kb of the machine of captures/) and mmap read-around before a fault
read the pages they would have read without compaction (pages no event names)."""


def compact_extents(fid: np.ndarray, first: np.ndarray, last: np.ndarray,
                    shift: int = EXTENT_SHIFT, keep: int = EXTENT_KEEP
                    ) -> tuple[np.ndarray, ExtentMap]:
    """Dense page indexes for an address trace: each event's pages [first, last] of file
    ``fid`` become [first - delta, last - delta]; returns delta per event and the map.

    The address space of each file is cut into extents of ``1 << shift`` pages. Extents that
    events touch form runs; a gap of at most ``2 * keep`` unused extents between two runs is
    kept, a longer one keeps its first and last ``keep`` extents, a leading one its last
    ``keep``. So order, offsets within runs and every distance up to ``keep`` extents are
    kept (a sequential scan stays sequential, readahead reads the same pages), and a file
    spans at most ``2 * keep + 1`` extents per run of used extents, whatever its addresses.
    File ids are dense (0 to the number of files - 1); pages are in [0, 2**62).
    """
    n = len(fid)
    if n == 0:
        z = np.zeros(0, np.int64)
        return z, ExtentMap(shift, keep, z, z, z, z)
    fid = np.ascontiguousarray(fid, np.int64)
    first = np.ascontiguousarray(first, np.int64)
    last = np.ascontiguousarray(last, np.int64)
    top = _extent_tops(fid, last, shift, int(fid.max()) + 1)
    small = 4 * n + (1 << 16)
    table = int(top.max()) < small and int((top + 1).sum()) < small
    if table:
        # Extents over every file's range are few: mark the ones events cover in one table
        # (no sort of the events, compiled passes over them), then take its used extents.
        base = np.zeros(len(top) + 1, np.int64)
        np.cumsum(top + 1, out=base[1:])
        total = int(base[-1])
        used = np.flatnonzero(_extent_cover(fid, first, last, shift, base, total))
        f_s = np.searchsorted(base, used, "right") - 1
        lo_s = reach = used - base[f_s]
    else:
        lo, hi = first >> shift, last >> shift
        bits = int(top.max()).bit_length()
        if len(top) <= 1 << (63 - bits):        # (file, extent) in one int64 key: one sort
            order = np.argsort((fid << bits) | lo)
            f_s, lo_s, hi_s = fid[order], lo[order], hi[order]
            reach = np.maximum.accumulate((f_s << bits) | hi_s) & ((1 << bits) - 1)
        else:                 # the running max of hi within each file: ranks of (file, hi)
            order = np.lexsort((lo, fid))
            f_s, lo_s, hi_s = fid[order], lo[order], hi[order]
            by_hi = np.lexsort((hi_s, f_s))
            rank = np.empty(n, np.int64)
            rank[by_hi] = np.arange(n)
            reach = hi_s[by_hi][np.maximum.accumulate(rank)]
    # runs: a new one where the file changes or the gap is longer than 2 * keep extents
    m = len(f_s)
    starts = np.ones(m, bool)
    starts[1:] = (f_s[1:] != f_s[:-1]) | (lo_s[1:] - reach[:-1] - 1 > 2 * keep)
    run = np.cumsum(starts) - 1
    at = np.flatnonzero(starts)
    r_file, r_lo = f_s[at], lo_s[at]
    r_hi = reach[np.r_[at[1:], m] - 1]
    length = r_hi - r_lo + 1
    head = np.ones(len(at), bool)
    head[1:] = r_file[1:] != r_file[:-1]
    step = np.where(head, np.minimum(r_lo, keep), 2 * keep) + length
    end = np.cumsum(step)
    file_head = np.maximum.accumulate(np.where(head, np.arange(len(at)), 0))
    new_lo = end - length - (end[file_head] - step[file_head])
    r_delta = (r_lo - new_lo) << shift
    if table:                                    # each event by its first extent
        run_of = np.empty(total, np.int64)
        run_of[used] = run
        delta = _extent_delta(fid, first, shift, base, run_of, r_delta)
    else:
        delta = np.empty(n, np.int64)
        delta[order] = r_delta[run]
    return delta, ExtentMap(shift, keep, r_file, r_lo, r_hi, r_delta)


@njit(cache=True)
def _extent_tops(fid, last, shift, nfiles):
    """Each file's highest extent an event reaches (0 for a file with none)."""
    top = np.zeros(nfiles, np.int64)
    for i in range(len(fid)):
        h = last[i] >> shift
        if h > top[fid[i]]:
            top[fid[i]] = h
    return top


@njit(cache=True)
def _extent_cover(fid, first, last, shift, base, total):
    """Which of the ``total`` extents of every file (file f's at ``base[f]``) events cover."""
    diff = np.zeros(total + 1, np.int64)
    for i in range(len(fid)):
        b = base[fid[i]]
        diff[b + (first[i] >> shift)] += 1
        diff[b + (last[i] >> shift) + 1] -= 1
    cover = np.empty(total, np.bool_)
    run = 0
    for j in range(total):
        run += diff[j]
        cover[j] = run > 0
    return cover


@njit(cache=True)
def _extent_delta(fid, first, shift, base, run_of, r_delta):
    """Each event's delta: its first extent's run's."""
    delta = np.empty(len(fid), np.int64)
    for i in range(len(fid)):
        delta[i] = r_delta[run_of[base[fid[i]] + (first[i] >> shift)]]
    return delta


def dense_object_ids(ids: np.ndarray) -> np.ndarray:
    """Dense page indexes for object ids (uint64): in the ids' order, consecutive ids stay
    consecutive, and any gap between them becomes one unused page (so two runs of ids never
    look like one sequential run). The pages span at most twice the distinct ids."""
    out = np.array(ids, np.uint64)
    return dense_object_ids_in_place(out)[0]


def dense_object_ids_in_place(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """:func:`dense_object_ids` written over ``ids`` (a uint64 array, no copy): the pages (an
    int64 view of it) and their span (the highest page + 1, 0 for no ids).

    Ids within a small range (at most twice their number + 64 Ki) are ranked through a table
    over the range; others are factorised with an open-addressing hash table and only the
    distinct ids are sorted. Either way a distinct id's page is its rank in id order plus the
    number of gaps below it."""
    if ids.dtype != np.uint64 or not ids.flags.c_contiguous or not ids.flags.writeable:
        raise ValueError("dense_object_ids_in_place takes a writable contiguous uint64 array")
    n = len(ids)
    if not n:
        return ids.view(np.int64), 0
    top = int(ids.max())
    if top < 2 * n + _TABLE_SLACK:
        return ids.view(np.int64), int(_rank_in_range(ids, top))
    uniq = _factorise(ids)
    order = np.argsort(uniq)
    gaps = np.zeros(len(uniq), np.int64)
    gaps[1:] = np.diff(uniq[order]) > np.uint64(1)
    lut = np.empty(len(uniq), np.int64)
    lut[order] = np.arange(len(uniq)) + np.cumsum(gaps)
    _translate(ids, lut)
    return ids.view(np.int64), int(lut[order[-1]]) + 1


_U15 = np.uint64(15)
_U32 = np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)
_MIX_LO = np.uint64(0x9E3779B1)          # 32-bit multipliers: lo * M < 2**64, no wrap-around
_MIX_HI = np.uint64(0x85EBCA77)
_TABLE_SLACK = 1 << 16


@njit(cache=True, nogil=True)
def _rank_in_range(ids, top):
    """Dense pages of ids in [0, top] through a table over the range; returns the span."""
    table = np.zeros(top + 1, np.int64)
    for i in range(len(ids)):
        table[ids[i]] = 1
    page = -1
    prev = -1
    for v in range(top + 1):
        if table[v] != 0:
            if prev >= 0 and v - prev > 1:
                page += 1
            page += 1
            table[v] = page
            prev = v
    for i in range(len(ids)):
        ids[i] = np.uint64(table[ids[i]])
    return page + 1


@njit(cache=True)
def _slot(k, mask):
    """Slot of key ``k`` (uint64) in an open-addressing table of ``mask + 1`` slots."""
    x = ((k & _LOW32) * _MIX_LO) ^ ((k >> _U32) * _MIX_HI)
    x ^= x >> _U32
    x ^= x >> _U15
    return np.int64(x & mask)


@njit(cache=True, nogil=True)
def _factorise(ids):
    """Replace each id by its number in order of first appearance (an open-addressing hash
    table, doubled when half full); returns the distinct ids in that order."""
    cap = 1 << 12
    keys = np.empty(cap, np.uint64)
    codes = np.full(cap, -1, np.int64)
    uniq = np.empty(cap // 2, np.uint64)
    m = 0
    mask = np.uint64(cap - 1)
    for i in range(len(ids)):
        k = ids[i]
        h = _slot(k, mask)
        while True:
            c = codes[h]
            if c < 0:
                c = m
                codes[h] = c
                keys[h] = k
                uniq[c] = k
                m += 1
                break
            if keys[h] == k:
                break
            h = (h + 1) & (cap - 1)
        ids[i] = np.uint64(c)
        if 2 * m == cap:
            cap *= 2
            mask = np.uint64(cap - 1)
            keys = np.empty(cap, np.uint64)
            codes = np.full(cap, -1, np.int64)
            grown = np.empty(cap // 2, np.uint64)
            for c in range(m):
                grown[c] = uniq[c]
            uniq = grown
            for c in range(m):
                h = _slot(uniq[c], mask)
                while codes[h] >= 0:
                    h = (h + 1) & (cap - 1)
                codes[h] = c
                keys[h] = uniq[c]
    return uniq[:m]


@njit(cache=True, nogil=True)
def _translate(ids, lut):
    """ids[i] = lut[ids[i]], in place."""
    for i in range(len(ids)):
        ids[i] = np.uint64(lut[np.int64(ids[i])])


_U64_TENTH = np.uint64(U64_MAX // 10)
_U10 = np.uint64(10)
_U16 = np.uint64(16)


@njit(cache=True)
def _hex_value(c):
    """The value of a hexadecimal digit byte, or -1."""
    if c >= 48 and c <= 57:
        return np.int64(c) - 48
    low = np.int64(c) | 32
    if low >= 97 and low <= 102:
        return low - 87
    return -1


@njit(cache=True, nogil=True)
def parse_id_lines(buf, i, out, n):
    """One obj id per line from ``buf[i:]`` (whole lines: it ends with a newline) into
    ``out[n:]``: a decimal or 0x-hexadecimal integer up to 2**64 - 1 with blanks around it, as
    :func:`int_word` takes it; blank lines are skipped, anything else is a bad line.

    Returns (where it stopped: len(buf), or the start of a line when ``out`` is full; ids in
    ``out``; lines passed; bad lines; index among those lines of the first bad one, or -1).
    """
    size = len(buf)
    line = 0
    nbad = 0
    first_bad = -1
    cap = len(out)
    while i < size:
        if n == cap:
            break
        j = i                                          # the usual line: 1-19 digits
        v = np.uint64(0)
        c = buf[j]
        while c >= 48 and c <= 57 and j - i < 19:
            v = v * _U10 + np.uint64(np.int64(c) - 48)
            j += 1
            c = buf[j]
        if c == 10 and j > i:
            out[n] = v
            n += 1
            line += 1
            i = j + 1
            continue
        c = buf[i]
        while c != 10 and (c == 32 or (c >= 9 and c <= 13)):
            i += 1
            c = buf[i]
        if c == 10:                                    # a blank line
            i += 1
            line += 1
            continue
        v = np.uint64(0)
        ok = True
        digits = 0
        if c == 48 and (buf[i + 1] | 32) == 120:       # 0x...
            i += 2
            c = buf[i]
            d = _hex_value(c)
            if d < 0:
                ok = False
            while d >= 0:
                if v != 0 or d != 0:
                    digits += 1
                if digits > 16:
                    ok = False                         # past 2**64 - 1: keep reading
                else:
                    v = v * _U16 + np.uint64(d)
                i += 1
                c = buf[i]
                d = _hex_value(c)
        else:
            while c >= 48 and c <= 57:
                d = np.uint64(np.int64(c) - 48)
                if v > _U64_TENTH or (v == _U64_TENTH and d > np.uint64(5)):
                    ok = False                         # past 2**64 - 1: keep reading
                    v = np.uint64(0)
                v = v * _U10 + d
                digits += 1
                i += 1
                c = buf[i]
            if digits == 0:
                ok = False
        while c != 10 and (c == 32 or (c >= 9 and c <= 13)):
            i += 1
            c = buf[i]
        if c != 10:
            ok = False
            while c != 10:
                i += 1
                c = buf[i]
        i += 1
        if ok:
            out[n] = v
            n += 1
        else:
            if first_bad < 0:
                first_bad = line
            nbad += 1
        line += 1
    return i, n, line, nbad, first_bad


def split_fields(chunk: bytes, delim: bytes, ncols: int) -> tuple[list[bytes], int] | None:
    """Split a chunk of lines of exactly ``ncols`` fields each into one flat list of fields.

    Field j of line i is ``fields[i * ncols + j]``, so column j is ``fields[j::ncols]`` (the
    list ends with one extra empty field). None when any line has another number of fields or
    the chunk has carriage returns or quotes: the caller then goes line by line.
    """
    if b"\r" in chunk or b'"' in chunk:
        return None
    buf = np.frombuffer(chunk, np.uint8)
    nls = np.flatnonzero(buf == 10)
    n = len(nls)
    seps = np.flatnonzero(buf == delim[0])
    if len(seps) != n * (ncols - 1) or not np.array_equal(
            np.searchsorted(seps, nls), (ncols - 1) * np.arange(1, n + 1)):
        return None
    fields = chunk.replace(b"\n", delim).split(delim)
    return fields, n


def dense_ids(words: list[bytes], table: dict[bytes, int]) -> np.ndarray:
    """Ids of words in order of first appearance, continuing ``table`` (updated in place)."""
    return np.fromiter((table[w] if w in table else table.setdefault(w, len(table))
                        for w in words), np.int64, len(words))


def pair_ids(a: np.ndarray, b: np.ndarray, table: dict[tuple[int, int], int]) -> np.ndarray:
    """Dense ids of the pairs (a[i], b[i]) in order of first appearance, continuing ``table``."""
    if not len(a):
        return np.zeros(0, np.int64)
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    if a.min() >= 0 and a.max() < 1 << 31 and b.min() >= 0 and b.max() < 1 << 32:
        # one int64 key per pair, the usual case: factorised by a hash table in order of first
        # appearance (no sort), the few distinct pairs then looked up in ``table``
        codes = ((a << 32) | b).view(np.uint64)
        uniq = _factorise(codes).view(np.int64)
        lut = np.array([table.setdefault((k >> 32, k & 0xFFFFFFFF), len(table))
                        for k in uniq.tolist()], np.int64)
        return lut[codes.view(np.int64)]
    pairs = np.stack([a, b], axis=1)
    uniq, first, inverse = np.unique(pairs, axis=0, return_index=True, return_inverse=True)
    ua, ub = uniq[:, 0], uniq[:, 1]
    lut = np.empty(len(uniq), np.int64)
    for u in np.argsort(first, kind="stable"):
        lut[u] = table.setdefault((int(ua[u]), int(ub[u])), len(table))
    return lut[inverse.ravel()]


def files_from_table(table: dict[tuple[int, int], int], fid: np.ndarray, end: np.ndarray,
                     large_folios: bool = False) -> FileTable:
    """A file table of the (dev, ino) keys of ``table``, each sized by its highest page + 1."""
    keys = list(table)
    span = np.zeros(len(keys), np.int64)
    np.maximum.at(span, fid, end)
    return FileTable.build(np.array([k[0] for k in keys], np.int64),
                           np.array([k[1] for k in keys], np.int64), span, span,
                           np.full(len(keys), large_folios))
