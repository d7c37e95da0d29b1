"""Parsed traces cached as Parquet files, so that a trace is parsed once.

The cache directory is ``$TAGCACHE_CACHE_DIR``, else ``$XDG_CACHE_HOME/tagcache``, else
``~/.cache/tagcache``. An entry is keyed by a hash of what determines the parse: the trace's
absolute path, size and mtime_ns, the format, the csv spec, skip_bad_lines and
:data:`READER_VERSION` (bump it whenever a reader's output changes). The file holds the four
event columns; the file table, tasks, name and skipped_lines are JSON in the schema metadata,
and the extent map (``Trace.extents``) its arrays' raw little-endian int64 bytes, zstd
compressed (a trace whose map would take more than :data:`MAX_EXTENT_BYTES` is not cached).
It is written under a temporary name and renamed, so a reader never sees half a file. A cache
that cannot be written or read is not an error: the trace is parsed instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import zstandard

from tagcache.outputs import Output
from tagcache.workloads.events import ExtentMap, FileTable, Trace

READER_VERSION = 5
_META_KEY = b"tagcache.trace"
_EXTENTS_KEY = b"tagcache.extents"
_EXTENT_FIELDS = ("file", "lo", "hi", "delta")
MAX_EXTENT_BYTES = 64 << 20


def cache_dir() -> Path:
    explicit = os.environ.get("TAGCACHE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tagcache"


def cache_key(path: str | os.PathLike, fmt: str, csv_spec: str | None,
              skip_bad_lines: bool) -> str:
    p = Path(path).resolve()
    st = p.stat()
    ident = json.dumps([str(p), st.st_size, st.st_mtime_ns, fmt, csv_spec, bool(skip_bad_lines),
                        READER_VERSION])
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


def entry_path(key: str) -> Path:
    return cache_dir() / f"trace-{key}.parquet"


def load(key: str) -> Trace | None:
    """The cached trace for ``key``, or None (absent, unreadable, or of another version)."""
    path = entry_path(key)
    if not path.exists():
        return None
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        metadata = table.schema.metadata
        meta = json.loads(metadata[_META_KEY])
        if meta.get("version") != READER_VERSION:
            return None
        f = meta["files"]
        files = FileTable.build(np.asarray(f["dev"], np.int64), np.asarray(f["ino"], np.int64),
                                np.asarray(f["size_pages"], np.int64),
                                np.asarray(f["span_pages"], np.int64),
                                np.asarray(f["large_folios"], bool))
        cols = [_column(table, c, dt) for c, dt in (("op", np.uint8), ("arg0", np.int64),
                                                     ("arg1", np.int64), ("arg2", np.int64))]
        del table
        extents = None
        if meta.get("extents") is not None:
            shift, keep, n = meta["extents"]
            raw = zstandard.ZstdDecompressor().decompress(metadata[_EXTENTS_KEY])
            arrays = np.frombuffer(raw, "<i8").astype(np.int64).reshape(4, n)
            extents = ExtentMap(int(shift), int(keep), *arrays)
        return Trace(*cols,
                     files=files, name=meta["name"],
                     tasks=[(str(c), int(p)) for c, p in meta["tasks"]],
                     skipped_lines=int(meta["skipped_lines"]), extents=extents)
    except Exception:  # noqa: BLE001 - a damaged cache entry is re-parsed, never fatal
        return None


def _column(table, name: str, dtype) -> np.ndarray:
    """A column as a writable array of ``dtype``, copied once: to_numpy() joins the chunks of
    a column into a new array, and views Arrow's memory (read-only) only for one chunk."""
    a = np.asarray(table.column(name).to_numpy(), dtype)
    return a if a.flags.writeable else a.copy()


def store(key: str, trace: Trace, fmt: str) -> Path | None:
    """Write ``trace`` for ``key``; returns the entry's path, or None if it could not be written."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:          # a dependency, but a trace can be read without its cache
        return None

    files = trace.files
    ext = trace.extents
    if ext is not None and 4 * 8 * len(ext) > MAX_EXTENT_BYTES:
        return None
    meta = {"version": READER_VERSION, "format": fmt, "name": trace.name,
            "skipped_lines": int(trace.skipped_lines), "tasks": [list(t) for t in trace.tasks],
            "files": {"dev": files.dev.tolist(), "ino": files.ino.tolist(),
                      "size_pages": files.size_pages.tolist(),
                      "span_pages": files.span_pages.tolist(),
                      "large_folios": files.large_folios.tolist()}}
    table = pa.table({"op": np.asarray(trace.op, np.uint8), "arg0": trace.arg0,
                      "arg1": trace.arg1, "arg2": trace.arg2})
    schema_meta = {}
    if ext is not None:
        meta["extents"] = [ext.shift, ext.keep, len(ext)]
        raw = np.stack([np.asarray(getattr(ext, k), "<i8") for k in _EXTENT_FIELDS]).tobytes()
        schema_meta[_EXTENTS_KEY] = zstandard.ZstdCompressor().compress(raw)
    schema_meta[_META_KEY] = json.dumps(meta).encode()
    table = table.replace_schema_metadata(schema_meta)
    path = entry_path(key)
    out = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        out = Output(path)
        if out.in_place:                  # not ours: a device or FIFO put there; leave it
            return None
        pq.write_table(table, out.path, compression="zstd")
        out.commit()
        return path
    except OSError:
        if out is not None:
            out.abort()
        return None
