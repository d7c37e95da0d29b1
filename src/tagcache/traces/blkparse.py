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
start with ``M,m`` (the summary blkparse prints at the end, blank lines) are skipped; one that
does but stops before its action is a bad line.

Sectors are unsigned 64-bit (sector_t); a request of more than MAX_REQUEST_BYTES, or one
passing sector 2**64, is a bad line. Each device's address space is compacted in 2 MiB extents
(``_common.compact_extents``): memory follows the extents used, not the highest sector, and
sequential runs and readahead windows are kept.
"""

from __future__ import annotations

import re

import numpy as np

from tagcache.errors import TraceError
from tagcache.traces._common import (
    MAX_REQUEST_BYTES,
    U64_MAX,
    BadLines,
    PathLike,
    compact_extents,
    int_word,
    iter_line_chunks,
    open_binary,
    overflow,
    snippet,
    trace_name,
)
from tagcache.traces.ftrace import MINORBITS, mkdev
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
        for chunk in iter_line_chunks(f, bad=bad):
            for line in chunk.split(b"\n")[:-1]:
                lineno += 1
                words = line.split()
                if not words or _DEV.fullmatch(words[0]) is None:
                    continue                      # summary and blank lines
                if len(words) < 6:                # every action line has M,m .. ACTION
                    bad.add(lineno, _EXPECTED, line)
                    continue
                rows = found.get(words[5])
                if rows is not None and (words[5] == b"Q" or not found[b"Q"]):
                    rows.append((lineno, words))
    action = next((a for a in ACTIONS if found[a]), None)
    if action is None:
        raise TraceError(f"{path}: no Q, D or C records in {lineno} lines "
                         f"(expected blkparse output: {_EXPECTED})")
    ops, devs, first, last = [], [], [], []
    for ln, w in found[action]:
        op = _op(w[6]) if len(w) > 6 else None
        if op is None:
            continue                              # discard, flush-only, passthrough (N)
        sector = count = None
        if len(w) >= 10 and w[8] == b"+":
            sector, count = int_word(w[7]), int_word(w[9])
        if sector is None or count is None:
            bad.add(ln, _EXPECTED, b" ".join(w), len(w) >= 10 and (
                overflow(w[7], "sector") or overflow(w[9], "count")) or None)
            continue
        problem = _problem(w[0], sector, count)
        if problem is not None:
            bad.add(ln, _EXPECTED, b" ".join(w), problem)
            continue
        if count == 0:
            continue
        m = _DEV.fullmatch(w[0])
        ops.append(op)
        devs.append(mkdev(int(m.group(1)), int(m.group(2))))
        first.append(sector >> 3)                 # 8 sectors of 512 bytes to a 4 KiB page
        last.append((sector + count - 1) >> 3)
    bad.flush()
    if not ops:
        raise TraceError(f"{path}: no read or write requests in {lineno} lines "
                         f"(the {action.decode()} records are all empty, discards or flushes)")
    return _build(path, np.asarray(ops, np.int64), np.asarray(devs, np.int64),
                  np.asarray(first, np.int64), np.asarray(last, np.int64), bad.count)


def _problem(dev: bytes, sector: int, count: int) -> str | None:
    """Why a request cannot be one, or None."""
    m = _DEV.fullmatch(dev)
    if int(m.group(1)) >= 1 << (32 - MINORBITS) or int(m.group(2)) >= 1 << MINORBITS:
        return f"device {dev.decode()} is not a device number (major < 4096, minor < 2**20)"
    if count * 512 > MAX_REQUEST_BYTES:
        return (f"{count} sectors is more than one request can move ({MAX_REQUEST_BYTES} "
                "bytes, MAX_REQUEST_BYTES)")
    if sector + max(count, 1) - 1 > U64_MAX:
        return f"sector {sector} + {count} passes the last 64-bit sector"
    return None


def _build(path, ops, devs, first, last, skipped) -> Trace:
    uniq, firstseen, inverse = np.unique(devs, return_index=True, return_inverse=True)
    order = np.argsort(firstseen, kind="stable")
    rank = np.empty(len(uniq), np.int64)
    rank[order] = np.arange(len(uniq))
    fid = rank[inverse.ravel()]
    delta, extents = compact_extents(fid, first, last)
    first, pages = first - delta, last - first + 1
    span = np.zeros(len(uniq), np.int64)
    np.maximum.at(span, fid, first + pages)
    files = FileTable.build(uniq[order], np.zeros(len(uniq), np.int64), span, span,
                            np.zeros(len(uniq), bool))
    return Trace(ops.astype(np.uint8), fid, first, pages, files, trace_name(path), [], skipped,
                 extents)


def objection(head: bytes, path: PathLike) -> str | None:
    """None for blkparse text (the first non-blank line has the ``M,m CPU SEQ TIME PID
    ACTION`` shape), else why not."""
    for line in head.split(b"\n")[:8]:
        if line.strip():
            if _LINE.match(line) is None:
                return f"the first line {snippet(line, 60)} is not 'M,m CPU SEQ TIME PID ACTION'"
            return None
    return "no line in the first 8"
