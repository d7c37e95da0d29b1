"""libCacheSim's trace formats: csv (with a column spec), txt and oracleGeneral.

Every request goes to one file (dev 0, ino 0, no large folios) sized by its highest page + 1.

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
  READ of page obj_id; records of size 0 are skipped as libCacheSim does.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tagcache.errors import TraceError
from tagcache.traces._common import (
    BadLines,
    PathLike,
    byte_range_pages,
    dense_ids,
    iter_line_chunks,
    open_binary,
    parse_column,
    parse_words,
    single_file_trace,
    split_fields,
    trace_name,
)
from tagcache.workloads.events import Op, Trace

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
            values["block_size"] = _spec_int(spec, key, value, 1)
        elif key == "delimiter":
            values["delimiter"] = _spec_delimiter(spec, value)
        elif key not in _IGNORED_KEYS:
            raise TraceError(f"csv spec {spec!r}: unknown key {key!r} (expected obj-id-col, "
                             "time-col, obj-size-col, op-col, has-header, delimiter, "
                             "obj-id-is-num or block-size)")
    if "obj_id_col" not in values:
        raise TraceError(f"csv spec {spec!r}: obj-id-col is required")
    return CsvSpec(**values)


def _spec_int(spec: str, key: str, value: str, low: int) -> int:
    try:
        v = int(value.strip(), 0)
    except ValueError:
        v = low - 1
    if v < low:
        raise TraceError(f"csv spec {spec!r}: {key} must be an integer >= {low}, got {value!r}")
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
    if not first or b"\0" in head:
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
    """Obj ids: integers, or dense ids of strings in order of first appearance."""

    def __init__(self, numeric: bool | None) -> None:
        self.numeric = numeric
        self.table: dict[bytes, int] = {}

    def decide(self, word: bytes) -> None:
        if self.numeric is None:
            self.numeric = _int_word(word) is not None

    def column(self, words: list[bytes]) -> np.ndarray | None:
        """Decimal ids parsed at once (None: let the line-by-line path look), or dense ids."""
        if self.numeric:
            return parse_column(words)
        return dense_ids([w.strip() for w in words], self.table)

    def one(self, word: bytes) -> int | None:
        if self.numeric:
            return _int_word(word)
        w = word.strip()
        return self.table.setdefault(w, len(self.table))


def _int_word(word: bytes) -> int | None:
    w = word.strip()
    try:
        v = int(w, 16) if w[:2].lower() == b"0x" else int(w)
    except ValueError:
        return None
    return v if 0 <= v < 1 << 63 else None


# --------------------------------------------------------------------------- csv

class _Csv:
    def __init__(self, source: str, spec: CsvSpec, skip: bool) -> None:
        self.spec = spec
        self.delim = (spec.delimiter or ",").encode()
        self.bad = BadLines(source, skip)
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
        size = parse_column(fields[s.obj_size_col - 1:end:k]) if s.obj_size_col else None
        if ids is None or (s.obj_size_col and size is None):
            return None
        op = self._ops(fields[s.op_col - 1:end:k]) if s.op_col else np.full(n, int(Op.READ))
        return ids, size, op

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
                fields = [f.encode("utf-8", "surrogateescape")
                          for f in next(csv.reader([text], delimiter=d))]
            else:
                fields = raw.rstrip(b"\r").split(self.delim)
            oid = size = None
            if len(fields) >= self.need:
                oid = self.ids.one(fields[s.obj_id_col - 1])
                size = _int_word(fields[s.obj_size_col - 1]) if s.obj_size_col else 0
            if oid is None or size is None:
                self.bad.add(line0 + i + 1, self.expected, raw)
                continue
            ids.append(oid)
            sizes.append(size)
            ops.append(_op_code(fields[s.op_col - 1]) if s.op_col else int(Op.READ))
        size_col = np.asarray(sizes, np.int64) if s.obj_size_col else None
        return np.asarray(ids, np.int64), size_col, np.asarray(ops, np.int64)

    def events(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = np.concatenate([o[0] for o in self.out]) if self.out else np.zeros(0, np.int64)
        ops = np.concatenate([o[2] for o in self.out]) if self.out else np.zeros(0, np.int64)
        if self.spec.obj_size_col:
            size = np.concatenate([o[1] for o in self.out])
        else:
            size = None
        keep = ops != _IGNORED
        if size is not None:
            keep &= size > 0
        ids, ops = ids[keep], ops[keep]
        bs = self.spec.block_size
        if bs is None:
            return ops, ids, np.ones(len(ids), np.int64)
        nbytes = size[keep] if size is not None else np.full(len(ids), bs, np.int64)
        first, pages = byte_range_pages(ids * bs, nbytes)
        return ops, first, pages


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
    r = None
    lineno = 0
    with open_binary(path) as f:
        for chunk in iter_line_chunks(f):
            if r is None:
                first = chunk[: chunk.find(b"\n")].rstrip(b"\r")
                text = first.decode("utf-8", "replace")
                if spec.delimiter is None:
                    spec = replace(spec, delimiter=_detect_delimiter(text))
                if spec.has_header is None:
                    spec = replace(spec, has_header=_detect_header(text))
                r = _Csv(str(path), spec, skip_bad_lines)
                if spec.has_header:
                    chunk, lineno = chunk[chunk.find(b"\n") + 1:], 1
                    if not chunk:
                        continue
                r.first_line(chunk[: chunk.find(b"\n")].rstrip(b"\r"))
            r.chunk(chunk, lineno)
            lineno += chunk.count(b"\n")
    if r is None:
        raise TraceError(f"{path}: empty csv trace")
    ops, first, pages = r.events()
    if not len(ops):
        raise TraceError(f"{path}: no read or write requests in {lineno} lines")
    return single_file_trace(ops, first, pages, trace_name(path), r.bad.count)


def sniff_csv(head: bytes, path: PathLike) -> bool:
    """A csv whose header names an obj id column (read with :func:`default_spec`)."""
    return default_spec(head) is not None


# --------------------------------------------------------------------------- txt

def parse_txt(path: PathLike, *, skip_bad_lines: bool = False,
              csv_spec: str | None = None) -> Trace:
    """Read one obj id per line; each is a 1-page READ. ``csv_spec`` is not used."""
    bad = BadLines(str(path), skip_bad_lines)
    ids = _Ids(None)
    out: list[np.ndarray] = []
    lineno = 0
    with open_binary(path) as f:
        for chunk in iter_line_chunks(f):
            if ids.numeric is None:
                first = next((ln for ln in chunk.split(b"\n") if ln.strip()), None)
                if first is not None:
                    ids.decide(first)
            col = None
            if ids.numeric:
                col = parse_words(chunk, chunk.count(b"\n"), (10,))
                col = None if col is None else col[:, 0]
            if col is None:
                col = _txt_slow(chunk, lineno, ids, bad)
            out.append(col)
            lineno += chunk.count(b"\n")
            bad.flush()
    page = np.concatenate(out) if out else np.zeros(0, np.int64)
    if not len(page):
        raise TraceError(f"{path}: no obj ids in {lineno} lines (expected one id per line)")
    n = len(page)
    return single_file_trace(np.full(n, int(Op.READ)), page, np.ones(n, np.int64),
                             trace_name(path), bad.count)


def _txt_slow(chunk: bytes, line0: int, ids: _Ids, bad: BadLines) -> np.ndarray:
    out = []
    for i, line in enumerate(chunk.split(b"\n")[:-1]):
        words = line.split()
        if not words:
            continue
        v = ids.one(words[0]) if len(words) == 1 else None
        if v is None:
            bad.add(line0 + i + 1, "one obj id per line" +
                    (" (an integer)" if ids.numeric else ""), line)
            continue
        out.append(v)
    return np.asarray(out, np.int64)


_TXT_LINE = re.compile(rb"\s*\d+\s*")


def sniff_txt(head: bytes, path: PathLike) -> bool:
    """One integer per line (the last, possibly cut, line of a full head is not looked at)."""
    if b"\0" in head or not head.strip():
        return False
    lines = head.split(b"\n")
    if len(head) >= 1 << 16:
        lines = lines[:-1]
    lines = [ln for ln in lines if ln.strip()]
    return bool(lines) and all(_TXT_LINE.fullmatch(ln) for ln in lines)


# --------------------------------------------------------------------------- oracleGeneral

ORACLE_GENERAL = np.dtype([("clock_time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"),
                           ("next_access_vtime", "<i8")])
assert ORACLE_GENERAL.itemsize == 24
_RECORDS_PER_READ = 1 << 20


def parse_oracle_general(path: PathLike, *, skip_bad_lines: bool = False,
                         csv_spec: str | None = None) -> Trace:
    """Read oracleGeneral records; each is a 1-page READ of page obj_id. ``skip_bad_lines`` and
    ``csv_spec`` are not used: a record is bad only when the file is cut or an id is >= 2**63."""
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
            ids = rec["obj_id"]
            big = np.flatnonzero(ids >= np.uint64(1 << 63))
            if len(big):
                i = nrec + int(big[0]) + 1
                raise TraceError(f"{path}: record {i} (byte {(i - 1) * size}): obj_id "
                                 f"{int(ids[big[0]])} does not fit a page index (< 2**63)")
            out.append(ids[rec["obj_size"] > 0].astype(np.int64))
            nrec += len(rec)
    if rest:
        raise TraceError(f"{path}: record {nrec + 1} (byte {nrec * size}): truncated, "
                         f"{len(rest)} of {size} bytes (the size is not a multiple of {size})")
    page = np.concatenate(out) if out else np.zeros(0, np.int64)
    if not len(page):
        raise TraceError(f"{path}: no oracleGeneral records of nonzero size in {nrec} records")
    n = len(page)
    return single_file_trace(np.full(n, int(Op.READ)), page, np.ones(n, np.int64),
                             trace_name(path), 0)


def sniff_oracle_general(head: bytes, path: PathLike) -> bool:
    """``.oracleGeneral`` in the file name (libCacheSim's rule), or binary content."""
    if ".oraclegeneral" in Path(path).name.lower():
        return True
    return b"\0" in head


def _head(path: PathLike) -> bytes:
    with open_binary(path) as f:
        return f.read(1 << 16)
