"""blkparse's default text output: one block-layer action per line.

``  8,0    3        1     0.000000000   697  Q  WS 3802888 + 8 [jbd2/sda3-8]`` is device M,m, CPU,
sequence, seconds, pid, action, RWBS, sector + count (512-byte sectors), command.

One action stands for each request, so that a request is counted once: ``Q`` (queued: what the
submitter asked for, before merging) when the trace has any Q line, else ``D`` (issued to the
driver), else ``C`` (completed). libCacheSim has no blkparse reader to follow; Q is what the
workload asked for, which is what a page-cache model replays. RWBS with ``W`` gives a WRITE,
else with ``R`` a READ; other requests (discard, flush-only) and empty ones are skipped. Each
device is one file (dev = MKDEV(M, m), ino 0) in order of first appearance, sized by its highest
page + 1; pages = [sector * 512 >> 12, ((sector + count) * 512 - 1) >> 12]. Lines that do not
start with ``M,m`` (the summary blkparse prints at the end, blank lines) are skipped.
"""

from __future__ import annotations

import re

import numpy as np

from tagcache.errors import TraceError
from tagcache.traces._common import (
    BadLines,
    PathLike,
    byte_range_pages,
    iter_line_chunks,
    open_binary,
    trace_name,
)
from tagcache.traces.ftrace import mkdev
from tagcache.workloads.events import FileTable, Op, Trace

ACTIONS = (b"Q", b"D", b"C")          # preference order of the action that stands for a request
_EXPECTED = "'M,m CPU SEQ TIME PID ACTION RWBS SECTOR + COUNT [COMM]'"
_DEV = re.compile(rb"(\d+),(\d+)")
_LINE = re.compile(rb"\s*\d+,\d+\s+\d+\s+\d+\s+\d+\.\d+\s+\d+\s+[A-Za-z]{1,2}\s")


def _op(rwbs: bytes) -> int | None:
    if b"W" in rwbs:
        return int(Op.WRITE)
    if b"R" in rwbs:
        return int(Op.READ)
    return None


def parse(path: PathLike, *, skip_bad_lines: bool = False, csv_spec: str | None = None) -> Trace:
    """Read blkparse text; ``csv_spec`` is not used by this format."""
    bad = BadLines(str(path), skip_bad_lines)
    found: dict[bytes, list[tuple[int, list[bytes]]]] = {a: [] for a in ACTIONS}
    lineno = 0
    with open_binary(path) as f:
        for chunk in iter_line_chunks(f):
            for line in chunk.split(b"\n")[:-1]:
                lineno += 1
                words = line.split()
                if len(words) < 6 or _DEV.fullmatch(words[0]) is None:
                    continue                      # summary, blank or message lines
                rows = found.get(words[5])
                if rows is not None and (words[5] == b"Q" or not found[b"Q"]):
                    rows.append((lineno, words))
    action = next((a for a in ACTIONS if found[a]), None)
    if action is None:
        raise TraceError(f"{path}: no Q, D or C records in {lineno} lines "
                         f"(expected blkparse output: {_EXPECTED})")
    ops, devs, first, pages = [], [], [], []
    for ln, w in found[action]:
        op = _op(w[6]) if len(w) > 6 else None
        if op is None:
            continue                              # discard, flush-only, passthrough (N)
        try:
            if len(w) < 10 or w[8] != b"+":
                raise ValueError
            sector, count = int(w[7]), int(w[9])
            if sector < 0 or count < 0:
                raise ValueError
        except ValueError:
            bad.add(ln, _EXPECTED, b" ".join(w))
            continue
        if count == 0:
            continue
        m = _DEV.fullmatch(w[0])
        ops.append(op)
        devs.append(mkdev(int(m.group(1)), int(m.group(2))))
        first.append(sector)
        pages.append(count)
    bad.flush()
    return _build(path, np.asarray(ops, np.int64), np.asarray(devs, np.int64),
                  np.asarray(first, np.int64), np.asarray(pages, np.int64), bad.count)


def _build(path, ops, devs, sector, count, skipped) -> Trace:
    first, pages = byte_range_pages(sector * 512, count * 512)
    uniq, firstseen, inverse = np.unique(devs, return_index=True, return_inverse=True)
    order = np.argsort(firstseen, kind="stable")
    rank = np.empty(len(uniq), np.int64)
    rank[order] = np.arange(len(uniq))
    fid = rank[inverse]
    span = np.zeros(len(uniq), np.int64)
    np.maximum.at(span, fid, first + pages)
    files = FileTable.build(uniq[order], np.zeros(len(uniq), np.int64), span, span,
                            np.zeros(len(uniq), bool))
    return Trace(ops.astype(np.uint8), fid, first, pages, files, trace_name(path), [], skipped)


def sniff(head: bytes, path: PathLike) -> bool:
    """blkparse text: the first non-blank line has the ``M,m CPU SEQ TIME PID ACTION`` shape."""
    if b"\0" in head:
        return False
    for line in head.split(b"\n")[:8]:
        if line.strip():
            return _LINE.match(line) is not None
    return False
