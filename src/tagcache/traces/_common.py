"""Shared by the format readers: transparent decompression, line chunks, vectorised integers.

Readers never loop over lines in Python where a whole chunk can be handled at once: text is read
in chunks of whole lines, and integer fields are parsed by :func:`parse_words` with numpy (one
pass over the bytes, no Python object per number).
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import zstandard

from tagcache.errors import TraceError
from tagcache.workloads.events import FileTable, Trace

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


def iter_line_chunks(stream: BinaryIO, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Yield chunks of whole lines, each ending with a newline (one is added at EOF)."""
    rest = b""
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
        yield data[:cut]
    if rest:
        yield rest + b"\n"


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
        self._pending: list[tuple[int, str, bytes | str]] = []

    def add(self, lineno: int, expected: str, line: bytes | str) -> None:
        self._pending.append((lineno, expected, line))

    def flush(self) -> None:
        if not self._pending:
            return
        if not self.skip:
            lineno, expected, line = min(self._pending, key=lambda t: t[0])
            raise TraceError(f"{self.name}:{lineno}: expected {expected}, got {snippet(line)}")
        self.count += len(self._pending)
        self._pending.clear()


# --------------------------------------------------------------------------- integers

_MAXLEN = {10: 19, 16: 16}                 # digits that fit an unsigned 64-bit value
_INT64_MAX = np.uint64(2**63 - 1)
_POW = {b: [np.uint64(b ** i) for i in range(_MAXLEN[b])] for b in (10, 16)}


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
        self.digit = digit[buf]
        edge = np.flatnonzero(np.diff(word[buf].view(np.int8), prepend=np.int8(0),
                                      append=np.int8(0)))
        self.start = edge[0::2]
        self.end = edge[1::2] - 1

    def __len__(self) -> int:
        return len(self.start)

    def numbers(self, s: np.ndarray, e: np.ndarray, base: int) -> tuple[np.ndarray, np.ndarray]:
        """Values of the words [s, e] in ``base`` (10 or 16) and which are not such numbers.

        Base 0 takes hexadecimal for words starting with 0x and decimal for the others.
        Decimal values must fit int64; 16-digit hexadecimal ones may wrap to negative.
        """
        if base == 0:
            pre = (e - s > 1) & (self.buf[s] == 48) & ((self.buf[np.minimum(s + 1, e)] | 32) == 120)
            hv, hb = self.numbers(s + 2 * pre, e, 16)
            dv, db = self.numbers(s, e, 10)
            return np.where(pre, hv, dv), np.where(pre, hb, db)
        n = len(s)
        length = e - s + 1
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, bool)
        acc = np.zeros(n, np.uint64)
        bad = length > _MAXLEN[base]
        for r in range(min(int(length.max()), _MAXLEN[base])):
            d = self.digit[e - r]
            if r:
                d = np.where(r < length, d, 0)
            bad |= (d < 0) | (d >= base)
            acc += d.astype(np.uint64) * _POW[base][r]
        if base == 10:
            bad |= acc > _INT64_MAX
        return acc.view(np.int64), bad


def parse_words(blob: bytes, n: int, bases: tuple[int, ...]) -> np.ndarray | None:
    """Parse ``n`` lines of ``len(bases)`` integer words each into an (n, k) int64 array.

    Words are separated by spaces or tabs, lines end with a newline; ``bases[j]`` (10, 16, or 0
    for 0x-prefixed hexadecimal or decimal) is the base of column j. Returns None when anything
    is off (a line with another number of words, a word that is not a number): the caller then
    parses line by line to name the bad line.
    """
    k = len(bases)
    if n == 0:
        return np.zeros((0, k), np.int64)
    buf = np.frombuffer(blob, np.uint8)
    w = Words(buf, b" \t\r")
    nls = np.flatnonzero(buf == 10)
    if len(w) != n * k or len(nls) != n or not np.array_equal(
            np.searchsorted(w.start, nls), k * np.arange(1, n + 1)):
        return None
    s, e = w.start.reshape(n, k), w.end.reshape(n, k)
    out = np.empty((n, k), np.int64)
    for j, base in enumerate(bases):
        vals, bad = w.numbers(s[:, j], e[:, j], base)
        if bad.any():
            return None
        out[:, j] = vals
    return out


def parse_column(words: list[bytes], base: int = 10) -> np.ndarray | None:
    """Parse one column of integer words (bytes); None when any word is not an integer."""
    out = parse_words(b"\n".join(words) + b"\n", len(words), (base,))
    return None if out is None else out[:, 0]


# --------------------------------------------------------------------------- building

def trace_name(path: PathLike) -> str:
    """The trace's name: its file name without compression and format suffixes."""
    name = Path(path).name
    for suffix in (".zst", ".gz", ".trace", ".txt", ".csv", ".oracleGeneral", ".bin", ".blk"):
        if name.lower().endswith(suffix.lower()) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def single_file_trace(op: np.ndarray, first: np.ndarray, pages: np.ndarray, name: str,
                      skipped: int, dev: int = 0, ino: int = 0) -> Trace:
    """A trace of READ/WRITE events on one file (dev, ino) sized by the highest page named."""
    n = len(op)
    span = int((first + pages).max()) if n else 0
    files = FileTable.build([dev], [ino], [span], [span], [False])
    return Trace(np.asarray(op, np.uint8), np.zeros(n, np.int64), np.asarray(first, np.int64),
                 np.asarray(pages, np.int64), files, name, [], skipped)


def byte_range_pages(offset: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First 4 KiB page and number of pages touched by byte ranges [offset, offset + size)."""
    first = offset >> 12
    return first, ((offset + size - 1) >> 12) - first + 1


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
        uniq, first, inverse = np.unique((a << 32) | b, return_index=True, return_inverse=True)
        ua, ub = uniq >> 32, uniq & 0xFFFFFFFF          # one sort of int64 keys, the usual case
    else:
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
