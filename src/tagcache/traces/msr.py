"""MSR Cambridge block traces (SNIA IOTTA): ``Timestamp,Hostname,DiskNumber,Type,Offset,Size,
ResponseTime``, Type ``Read`` or ``Write``, Offset and Size in bytes.

Each (Hostname, DiskNumber) is one file, in order of first appearance: dev = the host's index
in order of first appearance, ino = the disk number; sized by its highest page + 1. A request
covers the 4 KiB pages of [Offset, Offset + Size); empty requests are skipped. A header line
(first field not a number) is skipped. Offsets are unsigned 64-bit byte addresses; a request
of more than MAX_REQUEST_BYTES, or one passing 2**64, is a bad line. Each disk's address space
is compacted in 2 MiB extents (``_common.compact_extents``): memory follows the extents used,
not the highest offset, and sequential runs and readahead windows are kept.
"""

from __future__ import annotations

import re

import numpy as np

from tagcache.errors import TraceError
from tagcache.traces._common import (
    MAX_REQUEST_BYTES,
    BadLines,
    PathLike,
    bad_byte_ranges,
    byte_range_pages,
    compact_extents,
    dense_ids,
    files_from_table,
    int_word,
    iter_line_chunks,
    open_binary,
    overflow,
    pair_ids,
    parse_column,
    range_problem,
    snippet,
    split_fields,
    trace_name,
)
from tagcache.workloads.events import Op, Trace

NCOLS = 7
_EXPECTED = "'Timestamp,Hostname,DiskNumber,Type(Read|Write),Offset,Size,ResponseTime'"
_TYPES = {b"read": int(Op.READ), b"write": int(Op.WRITE)}
_ROW = re.compile(rb"\d+,[^,]*,\d+,(Read|Write),\d+,\d+,\d+", re.IGNORECASE)


class _Reader:
    def __init__(self, source: str, skip: bool) -> None:
        self.bad = BadLines(source, skip)
        self.hosts: dict[bytes, int] = {}
        self.files: dict[tuple[int, int], int] = {}
        self.cols: list[tuple[np.ndarray, ...]] = []

    def chunk(self, chunk: bytes, line0: int) -> None:
        rows = self._fast(chunk)
        if rows is None:
            rows = self._slow(chunk, line0)
        host, disk, op, offset, size = rows
        keep = size > 0
        hid = dense_ids([h for h, k in zip(host, keep.tolist(), strict=True) if k], self.hosts)
        fid = pair_ids(hid, disk[keep], self.files)
        first, pages = byte_range_pages(offset[keep], size[keep])
        self.cols.append((op[keep], fid, first, pages))
        self.bad.flush()

    def _fast(self, chunk: bytes):
        split = split_fields(chunk, b",", NCOLS)
        if split is None:
            return None
        fields, n = split
        end = n * NCOLS
        disk = parse_column(fields[2:end:NCOLS])
        offset = parse_column(fields[4:end:NCOLS], unsigned=True)
        size = parse_column(fields[5:end:NCOLS], unsigned=True)
        if disk is None or offset is None or size is None:
            return None
        size = np.minimum(size, np.uint64(MAX_REQUEST_BYTES + 1)).astype(np.int64)
        if bad_byte_ranges(offset, size).any():
            return None
        memo: dict[bytes, int] = {}
        op = [memo[t] if t in memo else memo.setdefault(t, _TYPES.get(t.strip().lower(), -1))
              for t in fields[3:end:NCOLS]]
        op = np.asarray(op, np.int64)
        if (op < 0).any():
            return None
        return fields[1:end:NCOLS], disk, op, offset, size

    def _slow(self, chunk: bytes, line0: int):
        host, disk, op, offset, size = [], [], [], [], []
        for i, line in enumerate(chunk.split(b"\n")[:-1]):
            f = line.strip().split(b",")
            if len(f) == NCOLS:
                t = _TYPES.get(f[3].strip().lower())
                d, o, s = int_word(f[2], 2**63 - 1), int_word(f[4]), int_word(f[5])
            else:
                t = d = o = s = None
            if t is None or d is None or o is None or s is None:
                self.bad.add(line0 + i + 1, _EXPECTED, line, len(f) == NCOLS and (
                    overflow(f[2], "DiskNumber", 2**63 - 1) or overflow(f[4], "Offset")
                    or overflow(f[5], "Size")) or None)
                continue
            problem = range_problem(o, s)
            if problem is not None:
                self.bad.add(line0 + i + 1, _EXPECTED, line, problem)
                continue
            host.append(f[1])
            disk.append(d)
            op.append(t)
            offset.append(o)
            size.append(s)
        return (host, np.asarray(disk, np.int64), np.asarray(op, np.int64),
                np.asarray(offset, np.uint64), np.asarray(size, np.int64))


def parse(path: PathLike, *, skip_bad_lines: bool = False, csv_spec: str | None = None) -> Trace:
    """Read an MSR Cambridge csv trace; ``csv_spec`` is not used by this format."""
    r = _Reader(str(path), skip_bad_lines)
    lineno = 0
    with open_binary(path) as f:
        for chunk in iter_line_chunks(f, bad=r.bad):
            if lineno == 0 and chunk[:1] and not chunk[:1].isdigit():
                cut = chunk.find(b"\n") + 1                  # header
                chunk, lineno = chunk[cut:], 1
                if not chunk:
                    continue
            r.chunk(chunk, lineno)
            lineno += chunk.count(b"\n")
    if not r.cols or not sum(len(c[0]) for c in r.cols):
        raise TraceError(f"{path}: no requests in {lineno} lines (expected {_EXPECTED})")
    op, fid, first, pages = (np.concatenate(c) for c in zip(*r.cols, strict=True))
    delta, extents = compact_extents(fid, first, first + pages - 1)
    first = first - delta
    files = files_from_table(r.files, fid, first + pages)
    return Trace(op.astype(np.uint8), fid, first, pages, files, trace_name(path), [],
                 r.bad.count, extents)


def objection(head: bytes, path: PathLike) -> str | None:
    """None for an MSR csv (the first data line has 7 comma fields with Read or Write as the
    4th), else why not."""
    lines = [ln.strip() for ln in head.split(b"\n")[:3] if ln.strip()]
    if lines and not lines[0][:1].isdigit():
        lines = lines[1:]
    if not lines:
        return "no data line"
    if _ROW.fullmatch(lines[0]) is None:
        return f"the first data line {snippet(lines[0], 60)} is not {_EXPECTED}"
    return None
