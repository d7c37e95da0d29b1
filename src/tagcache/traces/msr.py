"""MSR Cambridge block traces (SNIA IOTTA): ``Timestamp,Hostname,DiskNumber,Type,Offset,Size,
ResponseTime``, Type ``Read`` or ``Write``, Offset and Size in bytes.

Each (Hostname, DiskNumber) is one file, in order of first appearance: dev = the host's index
in order of first appearance, ino = the disk number; sized by its highest page + 1. A request
covers the 4 KiB pages of [Offset, Offset + Size); empty requests are skipped. A header line
(first field not a number) is skipped.
"""

from __future__ import annotations

import re

import numpy as np

from tagcache.errors import TraceError
from tagcache.traces._common import (
    BadLines,
    PathLike,
    byte_range_pages,
    dense_ids,
    files_from_table,
    iter_line_chunks,
    open_binary,
    pair_ids,
    parse_column,
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
        offset = parse_column(fields[4:end:NCOLS])
        size = parse_column(fields[5:end:NCOLS])
        if disk is None or offset is None or size is None:
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
            try:
                if len(f) != NCOLS:
                    raise ValueError
                t = _TYPES[f[3].strip().lower()]
                d, o, s = int(f[2]), int(f[4]), int(f[5])
                if min(d, o, s) < 0:
                    raise ValueError
            except (ValueError, KeyError):
                self.bad.add(line0 + i + 1, _EXPECTED, line)
                continue
            host.append(f[1])
            disk.append(d)
            op.append(t)
            offset.append(o)
            size.append(s)
        return (host, *(np.asarray(c, np.int64) for c in (disk, op, offset, size)))


def parse(path: PathLike, *, skip_bad_lines: bool = False, csv_spec: str | None = None) -> Trace:
    """Read an MSR Cambridge csv trace; ``csv_spec`` is not used by this format."""
    r = _Reader(str(path), skip_bad_lines)
    lineno = 0
    with open_binary(path) as f:
        for chunk in iter_line_chunks(f):
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
    files = files_from_table(r.files, fid, first + pages)
    return Trace(op.astype(np.uint8), fid, first, pages, files, trace_name(path), [],
                 r.bad.count)


def sniff(head: bytes, path: PathLike) -> bool:
    """MSR csv: the first data line has 7 comma fields with Read or Write as the 4th."""
    if b"\0" in head:
        return False
    lines = [ln.strip() for ln in head.split(b"\n")[:3] if ln.strip()]
    if lines and not lines[0][:1].isdigit():
        lines = lines[1:]
    return bool(lines) and _ROW.fullmatch(lines[0]) is not None
