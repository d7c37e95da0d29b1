"""libCacheSim's trace formats: csv (with a column spec), txt and oracleGeneral.

Every request goes to one file (dev 0, ino 0, no large folios) sized by its highest page + 1.
Obj ids are unsigned 64-bit (libCacheSim's ``obj_id_t``; published traces hash them) and are
names, not addresses: they become dense pages (``_common.dense_object_ids``: in id order,
consecutive ids stay consecutive, a gap becomes one unused page), so memory follows the
distinct ids, not the largest. Addresses (csv with ``block-size``) are compacted in extents
instead (``_common.compact_extents``), which keeps sequential runs and readahead windows.

- **csv**: columns given by a spec string as libCacheSim's ``cachesim -t`` takes it
  (:func:`parse_spec`), e.g. ``time-col=2,op-col=3,obj-size-col=4,obj-id-col=5,has-header=true,
  delimiter=,,block-size=512`` for cloudPhysicsIO.csv. Without ``block-size`` a request is one
  READ of the page numbered by the obj id; with ``block-size=N`` (a key of libCacheSim's too)
  the obj id is an address in N-byte blocks and obj-size the request's bytes (one block when
  there is no size column), and a request is one READ/WRITE event of the pages it touches.
  Non-numeric obj ids (``obj-id-is-num=false``, or a first id that is not a number) get dense
  ids in order of first appearance, as libCacheSim's ``g_quark_from_string`` gives them.
  Rows of size 0 are skipped (libCacheSim's ``ignore_size_zero_req``), and so are rows whose
  op is neither a read nor a write (:data:`READ_OPS`, :data:`WRITE_OPS`; SCSI opcodes too).
- **txt**: one obj id per line, each one 1-page READ (non-numeric ids as above).
- **oracleGeneral**: packed little-endian 24-byte records ``{uint32 clock_time; uint64 obj_id;
  uint32 obj_size; int64 next_access_vtime}`` (libCacheSim's oracleGeneralBin.h), each a 1-page
  READ of obj_id; records of size 0 are skipped as libCacheSim does.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tagcache.errors import TraceError
from tagcache.traces._common import (
    MAX_REQUEST_BYTES,
    U64_MAX,
    BadLines,
    PathLike,
    bad_byte_ranges,
    byte_range_pages,
    compact_extents,
    dense_ids,
    dense_object_ids_in_place,
    int_word,
    iter_line_arrays,
    iter_line_chunks,
    object_trace,
    open_binary,
    overflow,
    parse_column,
    parse_id_lines,
    range_problem,
    single_file_trace,
    snippet,
    split_fields,
    trace_name,
)
from tagcache.workloads.events import ExtentMap, Op, Trace

READ_OPS = frozenset({"r", "read", "get", "gets", "08", "28", "88", "a8"})
WRITE_OPS = frozenset({"w", "write", "set", "put", "add", "replace", "cas", "append", "prepend",
                       "update", "0a", "2a", "8a", "aa"})
_IGNORED = -1


# --------------------------------------------------------------------------- csv spec

@dataclass(frozen=True)
class CsvSpec:
    """A libCacheSim csv column spec (1-based columns; None = absent or detected)."""

    obj_id_col: int
    time_col: int | None = None
    obj_size_col: int | None = None
    op_col: int | None = None
    has_header: bool | None = None
    delimiter: str | None = None
    obj_id_is_num: bool | None = None
    block_size: int | None = None


_COLUMN_KEYS = {"time-col": "time_col", "obj-id-col": "obj_id_col",
                "obj-size-col": "obj_size_col", "size-col": "obj_size_col", "op-col": "op_col"}
_IGNORED_KEYS = frozenset({"ttl-col", "cnt-col", "tenant-col", "next-access-col", "feature-cols"})
_TRUE = {"true": True, "1": True, "yes": True, "y": True,
         "false": False, "0": False, "no": False, "n": False}


def parse_spec(spec: str) -> CsvSpec:
    """Parse ``k1=v1,k2=v2,...`` as libCacheSim does (``delimiter=,,`` means a comma).

    Keys: time-col, obj-id-col, obj-size-col (or size-col), op-col, has-header (or header),
    delimiter (``\\t`` for a tab), obj-id-is-num, block-size; ttl-col, cnt-col, tenant-col,
    next-access-col and feature-cols are accepted and unused. ``_`` may stand for ``-``.
    """
    values: dict = {}
    rest = spec
    while rest:
        key, eq, rest = rest.partition("=")
        value, _, rest = rest.partition(",")
        rest = rest.lstrip(" ,")
        key = key.strip().replace("_", "-").lower()
        if not eq:
            raise TraceError(f"csv spec {spec!r}: expected key=value, got {key!r}")
        if key in _COLUMN_KEYS:
            values[_COLUMN_KEYS[key]] = _spec_int(spec, key, value, 1)
        elif key in ("has-header", "header"):
            values["has_header"] = _spec_bool(spec, key, value)
        elif key == "obj-id-is-num":
            values["obj_id_is_num"] = _spec_bool(spec, key, value)
        elif key == "block-size":
            values["block_size"] = _spec_int(spec, key, value, 1, MAX_REQUEST_BYTES)
        elif key == "delimiter":
            values["delimiter"] = _spec_delimiter(spec, value)
        elif key not in _IGNORED_KEYS:
            raise TraceError(f"csv spec {spec!r}: unknown key {key!r} (expected obj-id-col, "
                             "time-col, obj-size-col, op-col, has-header, delimiter, "
                             "obj-id-is-num or block-size)")
    if "obj_id_col" not in values:
        raise TraceError(f"csv spec {spec!r}: obj-id-col is required")
    return CsvSpec(**values)


def _spec_int(spec: str, key: str, value: str, low: int, high: int = 1 << 16) -> int:
    try:
        v = int(value.strip(), 0)
    except ValueError:
        v = low - 1
    if not low <= v <= high:
        raise TraceError(f"csv spec {spec!r}: {key} must be an integer from {low} to {high}, "
                         f"got {value!r}")
    return v


def _spec_bool(spec: str, key: str, value: str) -> bool:
    v = _TRUE.get(value.strip().lower())
    if v is None:
        raise TraceError(f"csv spec {spec!r}: {key} must be true or false, got {value!r}")
    return v


def _spec_delimiter(spec: str, value: str) -> str:
    if value in ("", "\\", "\\,"):
        return ","
    if value == "\\t":
        return "\t"
    if len(value) != 1:
        raise TraceError(f"csv spec {spec!r}: unsupported delimiter {value!r}")
    return value


_DEFAULT_COLUMNS = (
    ("obj_id_col", ("lbn", "lba"), {"block_size": 512}),
    ("obj_id_col", ("obj_id", "obj-id", "objid", "id", "key"), {}),
    ("obj_size_col", ("size", "obj_size", "obj-size", "length", "len"), {}),
    ("op_col", ("op", "opcode", "type", "operation", "rw"), {}),
    ("time_col", ("time", "timestamp", "ts", "clock_time"), {}),
)


def default_spec(head: bytes) -> str | None:
    """A spec for a csv whose header names its columns (cloudPhysics ``version,time,op,size,
    lbn``: lbn in 512-byte sectors, size in bytes); None when the header names no id column."""
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if not first:
        return None
    delim = _detect_delimiter(first)
    names = [c.strip().strip('"').lower() for c in first.split(delim)]
    if len(names) < 2:
        return None
    found: dict[str, int] = {}
    extra: dict[str, int] = {}
    for key, aliases, more in _DEFAULT_COLUMNS:
        col = next((i + 1 for i, n in enumerate(names) if n in aliases), None)
        if col is not None and key not in found:
            found[key] = col
            extra.update(more)
    if "obj_id_col" not in found:
        return None
    parts = [f"{k.replace('_', '-')}={v}" for k, v in found.items()]
    parts += [f"{k.replace('_', '-')}={v}" for k, v in extra.items()]
    parts.append("has-header=true")
    parts.append("delimiter=\\t" if delim == "\t" else f"delimiter={delim}")
    return ",".join(parts)


def _detect_delimiter(line: str) -> str:
    """libCacheSim's rule: the most frequent of tab, comma, pipe, colon, weighted 4, 3, 2, 1."""
    weights = {d: line.count(d) * (4 - i) for i, d in enumerate("\t,|:")}
    best = max(weights, key=lambda d: weights[d])
    return best if weights[best] else ","


def _detect_header(line: str) -> bool:
    """libCacheSim's rule: a header unless the first line has more digits than letters."""
    digits = sum(c.isdigit() for c in line)
    letters = sum(c.isalpha() for c in line)
    return not digits > letters


# --------------------------------------------------------------------------- ops and ids

def _op_code(word: bytes) -> int:
    w = word.strip().strip(b'"').decode("utf-8", "replace").lower()
    if w.startswith("0x"):
        w = w[2:].rjust(2, "0")
    if w in WRITE_OPS:
        return int(Op.WRITE)
    if w in READ_OPS:
        return int(Op.READ)
    return _IGNORED


class _Ids:
    """Obj ids: unsigned 64-bit integers, or dense ids of strings in order of first appearance
    (as uint64 either way)."""

    def __init__(self, numeric: bool | None) -> None:
        self.numeric = numeric
        self.table: dict[bytes, int] = {}

    def decide(self, word: bytes) -> None:
        if self.numeric is None:
            self.numeric = int_word(word) is not None

    def column(self, words: list[bytes]) -> np.ndarray | None:
        """Decimal ids parsed at once (None: let the line-by-line path look), or dense ids."""
        if self.numeric:
            return parse_column(words, unsigned=True)
        return dense_ids([w.strip() for w in words], self.table).astype(np.uint64)

    def one(self, word: bytes) -> int | None:
        if self.numeric:
            return int_word(word)
        w = word.strip()
        return self.table.setdefault(w, len(self.table))

    @property
    def expected(self) -> str:
        return "an integer obj id from 0 to 2**64 - 1" if self.numeric else "an obj id"


# --------------------------------------------------------------------------- csv

class _Csv:
    """Rows of a csv trace, chunk by chunk: (op, obj id) for object traces, or (op, first
    page, pages) for address traces (``block-size``)."""

    def __init__(self, bad: BadLines, spec: CsvSpec) -> None:
        self.spec = spec
        self.delim = (spec.delimiter or ",").encode()
        self.bad = bad
        self.ids = _Ids(spec.obj_id_is_num)
        self.ncols = 0
        self.need = max(c for c in (spec.obj_id_col, spec.obj_size_col, spec.op_col,
                                    spec.time_col) if c is not None)
        self.out: list[tuple[np.ndarray, ...]] = []
        cols = ", ".join(f"{k}={getattr(spec, k)}" for k in ("obj_id_col", "obj_size_col",
                                                             "op_col") if getattr(spec, k))
        self.expected = f"{self.need}+ fields separated by {self.delim.decode()!r} ({cols})"

    def first_line(self, line: bytes) -> None:
        fields = line.split(self.delim)
        self.ncols = len(fields)
        if len(fields) >= self.spec.obj_id_col:
            self.ids.decide(fields[self.spec.obj_id_col - 1])

    def chunk(self, chunk: bytes, line0: int) -> None:
        rows = self._fast(chunk) if self.ncols >= self.need else None
        if rows is None:
            rows = self._slow(chunk, line0)
        self.out.append(rows)
        self.bad.flush()

    def _fast(self, chunk: bytes):
        split = split_fields(chunk, self.delim, self.ncols)
        if split is None:
            return None
        fields, n = split
        end, k, s = n * self.ncols, self.ncols, self.spec
        ids = self.ids.column(fields[s.obj_id_col - 1:end:k])
        size = None
        if s.obj_size_col:
            size = parse_column(fields[s.obj_size_col - 1:end:k], unsigned=True)
            if size is None:
                return None
            size = np.minimum(size, np.uint64(MAX_REQUEST_BYTES + 1)).astype(np.int64)
        if ids is None:
            return None
        op = self._ops(fields[s.op_col - 1:end:k]) if s.op_col else np.full(n, int(Op.READ))
        return self._requests(ids, size, op)

    def _requests(self, ids: np.ndarray, size: np.ndarray | None, op: np.ndarray):
        """The kept rows as requests; None if one of them cannot be a request."""
        keep = op != _IGNORED
        if size is not None:
            keep &= size > 0
        ids, op = ids[keep], op[keep]
        bs = self.spec.block_size
        if bs is None:
            return op, ids
        nbytes = size[keep] if size is not None else np.full(len(ids), bs, np.int64)
        big = ids > np.uint64(U64_MAX // bs)
        offset = np.where(big, np.uint64(0), ids) * np.uint64(bs)
        if big.any() or bad_byte_ranges(offset, nbytes).any():
            return None
        first, pages = byte_range_pages(offset, nbytes)
        return op, first, pages

    def _ops(self, words: list[bytes]) -> np.ndarray:
        memo: dict[bytes, int] = {}
        return np.fromiter((memo[w] if w in memo else memo.setdefault(w, _op_code(w))
                            for w in words), np.int64, len(words))

    def _slow(self, chunk: bytes, line0: int):
        s, d = self.spec, self.delim.decode()
        ids, sizes, ops = [], [], []
        for i, raw in enumerate(chunk.split(b"\n")[:-1]):
            if not raw.strip():
                continue
            if b'"' in raw:
                text = raw.decode("utf-8", "surrogateescape")
                try:
                    fields = [f.encode("utf-8", "surrogateescape")
                              for f in next(csv.reader([text], delimiter=d))]
                except csv.Error:
                    fields = []
            else:
                fields = raw.rstrip(b"\r").split(self.delim)
            oid = size = None
            if len(fields) >= self.need:
                oid = self.ids.one(fields[s.obj_id_col - 1])
                size = int_word(fields[s.obj_size_col - 1]) if s.obj_size_col else 0
            if oid is None or size is None:
                self.bad.add(line0 + i + 1, self.expected, raw, len(fields) >= self.need and (
                    overflow(fields[s.obj_id_col - 1], "obj id") or (s.obj_size_col and overflow(
                        fields[s.obj_size_col - 1], "obj size"))) or None)
                continue
            op = _op_code(fields[s.op_col - 1]) if s.op_col else int(Op.READ)
            problem = self._problem(oid, size) if op != _IGNORED else None
            if problem is not None:
                self.bad.add(line0 + i + 1, self.expected, raw, problem)
                continue
            ids.append(oid)
            sizes.append(min(size, MAX_REQUEST_BYTES + 1))
            ops.append(op)
        size_col = np.asarray(sizes, np.int64) if s.obj_size_col else None
        return self._requests(np.asarray(ids, np.uint64), size_col, np.asarray(ops, np.int64))

    def _problem(self, oid: int, size: int) -> str | None:
        bs = self.spec.block_size
        if bs is None or (self.spec.obj_size_col and size == 0):
            return None
        if oid * bs > U64_MAX:
            return f"obj id {oid} times block-size {bs} is past the end of 64-bit addresses"
        return range_problem(oid * bs, size if self.spec.obj_size_col else bs, "obj size")

    def events(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, ExtentMap | None]:
        """(op, first page, pages, extent map) of every request, with dense pages."""
        if self.spec.block_size is None:
            op = _cat([o[0] for o in self.out])
            ids = np.concatenate([o[1] for o in self.out]) if self.out else np.zeros(0, np.uint64)
            return op, dense_object_ids_in_place(ids)[0], np.ones(len(op), np.int64), None
        op, first, pages = (_cat([o[j] for o in self.out]) for j in range(3))
        delta, extents = compact_extents(np.zeros(len(op), np.int64), first, first + pages - 1)
        return op, first - delta, pages, extents


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, np.int64)


def parse_csv(path: PathLike, *, skip_bad_lines: bool = False,
              csv_spec: str | None = None) -> Trace:
    """Read a csv trace with a libCacheSim column spec (or the default for a named header)."""
    if csv_spec is None:
        csv_spec = default_spec(_head(path))
        if csv_spec is None:
            raise TraceError(f"{path}: a csv trace needs a column spec such as "
                             "'obj-id-col=2,obj-size-col=3,has-header=true' (its header names "
                             "no obj id column)")
    spec = parse_spec(csv_spec)
    bad = BadLines(str(path), skip_bad_lines)
    r = None
    lineno = 0
    with open_binary(path) as f:
        for chunk in iter_line_chunks(f, bad=bad):
            if r is None:
                first = chunk[: chunk.find(b"\n")].rstrip(b"\r")
                text = first.decode("utf-8", "replace")
                if spec.delimiter is None:
                    spec = replace(spec, delimiter=_detect_delimiter(text))
                if spec.has_header is None:
                    spec = replace(spec, has_header=_detect_header(text))
                r = _Csv(bad, spec)
                if spec.has_header:
                    chunk, lineno = chunk[chunk.find(b"\n") + 1:], 1
                    if not chunk:
                        continue
                r.first_line(chunk[: chunk.find(b"\n")].rstrip(b"\r"))
            r.chunk(chunk, lineno)
            lineno += chunk.count(b"\n")
    if r is None:
        raise TraceError(f"{path}: empty csv trace")
    ops, first, pages, extents = r.events()
    if not len(ops):
        raise TraceError(f"{path}: no read or write requests in {lineno} lines")
    return single_file_trace(ops, first, pages, trace_name(path), bad.count, extents=extents)


def csv_objection(head: bytes, path: PathLike) -> str | None:
    """None for a csv whose header names an obj id column (read with :func:`default_spec`),
    else why not."""
    if default_spec(head) is not None:
        return None
    first = head.split(b"\n", 1)[0]
    return (f"the first line {snippet(first, 60)} is not a header naming an obj id column "
            f"({', '.join(a for _k, names, _m in _DEFAULT_COLUMNS[:2] for a in names)})")


# --------------------------------------------------------------------------- txt

_MAX_RESERVE = 1 << 28          # ids reserved (not touched) up front: 2 GiB of address space


def _first_line(chunk: np.ndarray) -> bytes | None:
    """The first line of ``chunk`` (uint8 bytes) that is not blank, or None; reads only as
    far as that line (a chunk holds millions)."""
    at, n = 0, len(chunk)
    step = 4096
    while at < n:
        block = chunk[at:at + step].tobytes()
        cut = block.rfind(b"\n")
        if cut < 0 and at + len(block) < n:
            step *= 2                          # a line longer than the block: read more
            continue
        lines = block.split(b"\n") if cut < 0 else block[:cut].split(b"\n")
        for ln in lines:
            if ln.strip():
                return ln
        at += len(block) if cut < 0 else cut + 1
    return None


def parse_txt(path: PathLike, *, skip_bad_lines: bool = False,
              csv_spec: str | None = None) -> Trace:
    """Read one obj id per line; each is a 1-page READ. ``csv_spec`` is not used.

    Integer ids are parsed by a compiled loop over the bytes (:func:`parse_id_lines`) into one
    array that becomes the trace's pages in place; string ids (a first line that is not an
    integer) go line by line."""
    bad = BadLines(str(path), skip_bad_lines)
    ids = _Ids(None)
    # an upper bound for a plain file (an id line has 2 bytes at least): address space only,
    # pages are touched as ids are written, and the rest is given back at the end
    out = np.empty(min(Path(path).stat().st_size // 2 + 1, _MAX_RESERVE), np.uint64)
    n = 0
    strings: list[np.ndarray] = []
    lineno = 0
    with open_binary(path) as f:
        # the lines counted so far, when the file ends in a cut line (bound late on purpose)
        for chunk in iter_line_arrays(f, bad=bad, lines=lambda: lineno):  # noqa: B023
            if ids.numeric is None:
                first = _first_line(chunk)
                if first is not None:
                    ids.decide(first)
            if not ids.numeric:
                text = chunk.tobytes()
                if ids.numeric is not None:
                    strings.append(_txt_slow(text, lineno, ids, bad))
                lineno += text.count(b"\n")
                bad.flush()
                continue
            at = 0
            while at < len(chunk):
                if n == len(out):
                    out.resize(max(len(out) + len(out) // 2, 1 << 16), refcheck=False)
                start = at
                at, n, lines, nbad, first_bad = parse_id_lines(chunk, start, out, n)
                if nbad:
                    line = _nth_line(chunk, start, first_bad)
                    bad.add_many(nbad, lineno + first_bad + 1, *_txt_bad(line, ids))
                lineno += lines
                bad.flush()
    if strings:
        out = np.concatenate(strings)
        n = len(out)
    else:
        out.resize(n, refcheck=False)          # gives back what was reserved and not used
    if not n:
        raise TraceError(f"{path}: no obj ids in {lineno} lines (expected one id per line)")
    return object_trace(out, trace_name(path), bad.count)


def _nth_line(buf: np.ndarray, start: int, k: int) -> bytes:
    """Line ``k`` (from 0) of ``buf[start:]``, without its newline."""
    nl = start + np.flatnonzero(buf[start:] == 10)
    a = start if k == 0 else int(nl[k - 1]) + 1
    return buf[a:int(nl[k])].tobytes()


def _txt_bad(line: bytes, ids: _Ids) -> tuple[str, bytes, str | None]:
    """What a bad txt line's error says: (expected, line, problem)."""
    words = line.split()
    return (f"one obj id per line ({ids.expected})", line,
            overflow(words[0], "obj id") if len(words) == 1 else None)


def _txt_slow(chunk: bytes, line0: int, ids: _Ids, bad: BadLines) -> np.ndarray:
    out = []
    for i, line in enumerate(chunk.split(b"\n")[:-1]):
        words = line.split()
        if not words:
            continue
        v = ids.one(words[0]) if len(words) == 1 else None
        if v is None:
            bad.add(line0 + i + 1, *_txt_bad(line, ids))
            continue
        out.append(v)
    return np.asarray(out, np.uint64)


_TXT_LINE = re.compile(rb"\s*\d+\s*")


def txt_objection(head: bytes, path: PathLike) -> str | None:
    """None for one integer per line (the last, possibly cut, line of a full head is not
    looked at), else the first line that is not."""
    lines = head.split(b"\n")
    if len(head) >= 1 << 16:
        lines = lines[:-1]
    seen = False
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        if _TXT_LINE.fullmatch(ln) is None:
            return f"line {i + 1} is not one integer: {snippet(ln, 60)}"
        seen = True
    return None if seen else "no lines"


# --------------------------------------------------------------------------- oracleGeneral

ORACLE_GENERAL = np.dtype([("clock_time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"),
                           ("next_access_vtime", "<i8")])
assert ORACLE_GENERAL.itemsize == 24
_RECORDS_PER_READ = 1 << 20
_MAX_VTIME = 1 << 48          # a request number: far more requests than any trace has


def parse_oracle_general(path: PathLike, *, skip_bad_lines: bool = False,
                         csv_spec: str | None = None) -> Trace:
    """Read oracleGeneral records; each is a 1-page READ of obj_id (any 64-bit value).
    ``skip_bad_lines`` and ``csv_spec`` are not used: a record is bad only when the file is
    cut."""
    size = ORACLE_GENERAL.itemsize
    out: list[np.ndarray] = []
    nrec = 0
    rest = b""
    with open_binary(path) as f:
        while True:
            data = f.read(size * _RECORDS_PER_READ)
            if not data:
                break
            data = rest + data
            whole = len(data) - len(data) % size
            rest = data[whole:]
            rec = np.frombuffer(data[:whole], ORACLE_GENERAL)
            out.append(rec["obj_id"][rec["obj_size"] > 0])
            nrec += len(rec)
    if rest:
        raise TraceError(f"{path}: record {nrec + 1} (byte {nrec * size}): truncated, "
                         f"{len(rest)} of {size} bytes (the size is not a multiple of {size})")
    objs = np.concatenate(out) if out else np.zeros(0, np.uint64)
    if not len(objs):
        raise TraceError(f"{path}: no oracleGeneral records of nonzero size in {nrec} records")
    return object_trace(objs, trace_name(path), 0)


def oracle_general_objection(head: bytes, path: PathLike) -> str | None:
    """None for ``.oracleGeneral`` in the file name (libCacheSim's rule) or binary records
    whose next_access_vtime are all request numbers or -1; else why not."""
    if ".oraclegeneral" in Path(path).name.lower():
        return None
    if b"\0" not in head:
        return "no '.oracleGeneral' in the name and the content is text (no NUL byte)"
    size = ORACLE_GENERAL.itemsize
    rec = np.frombuffer(head[: len(head) - len(head) % size], ORACLE_GENERAL)
    if not len(rec):
        return f"fewer than {size} bytes: not one record"
    vt = rec["next_access_vtime"]
    bad = np.flatnonzero(((vt < 0) & (vt != -1)) | ((vt >= _MAX_VTIME) & (vt != 2**63 - 1)))
    if len(bad):
        i = int(bad[0])
        return (f"record {i + 1}'s next_access_vtime {int(vt[i])} is neither -1 nor a request "
                "number")
    return None


def _head(path: PathLike) -> bytes:
    with open_binary(path) as f:
        return f.read(1 << 16)
