"""Trace readers: real captures and block/cache traces turned into event columns.

One module per format, one registry (:data:`READERS`) from format name to reader, and
:func:`read_trace`, which detects the format, parses once and caches the result
(:mod:`tagcache.traces.cache`; not libCacheSim's txt and oracleGeneral, which parse in about
the time the cache takes to read). Files may be plain, zstd or gzip; compression is recognised by
its magic bytes, and a truncated stream is an error, never a short trace.

Formats, and how :func:`detect_format` recognises them in the first 64 KiB of decompressed
content (``.oracleGeneral`` in the name first, libCacheSim's rule; then tried in this order):

- ``ftrace`` (:mod:`~tagcache.traces.ftrace`): a ``# tracer:`` header, or a
  ``SECONDS: mm_filemap_*:`` / ``mm_page_alloc:`` / ``mm_page_free:`` event line.
- ``blkparse`` (:mod:`~tagcache.traces.blkparse`): a first line shaped
  ``M,m CPU SEQ SECONDS PID ACTION``.
- ``msr`` (:mod:`~tagcache.traces.msr`): 7 comma fields with Read or Write as the 4th.
- ``csv`` (:mod:`~tagcache.traces.libcachesim`): a header naming an obj id column (``lbn``,
  ``lba``, ``obj_id``, ``id``, ``key``); other csv traces need ``csv_spec``.
- ``txt`` (:mod:`~tagcache.traces.libcachesim`): one integer per line.
- ``oracleGeneral`` (:mod:`~tagcache.traces.libcachesim`): binary records whose
  next_access_vtime are request numbers or -1 (a NUL byte alone does not make a file binary).

Each format's ``objection`` says why a head is not of that format (None: it is); a file no
format takes is an error listing every objection, and an error reading a file whose format
was detected says what it was read as and why.

Page indexes are dense (``_common.compact_extents`` for addresses, ``dense_object_ids`` for
libCacheSim's object ids): memory follows what the trace touches, not its largest address.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from tagcache.errors import TraceError
from tagcache.traces import blkparse, cache, ftrace, libcachesim, msr
from tagcache.traces._common import open_binary, open_text, read_head
from tagcache.workloads.events import Trace

__all__ = ["READERS", "Reader", "detect", "detect_format", "open_binary", "open_text",
           "read_trace"]


@dataclass(frozen=True)
class Reader:
    """A format: the module and function names that parse and recognise it.

    Functions are looked up on the module at each call, so a test can monkeypatch them.
    """

    name: str
    module: ModuleType
    parse_fn: str = "parse"
    objection_fn: str = "objection"
    uses_csv_spec: bool = False
    cached: bool = True
    """Whether a parsed trace goes to the cache (:mod:`tagcache.traces.cache`): not for the
    formats whose compiled parse is as fast as reading the cached entry back (11.4 M txt ids:
    parse 0.35 s, entry 0.3 s warm to 2.7 s in a fresh process, with three times the memory)."""

    def parse(self, path: str | os.PathLike, *, skip_bad_lines: bool = False,
              csv_spec: str | None = None) -> Trace:
        return getattr(self.module, self.parse_fn)(path, skip_bad_lines=skip_bad_lines,
                                                   csv_spec=csv_spec)

    def objection(self, head: bytes, path: str | os.PathLike) -> str | None:
        """Why ``head`` is not of this format; None when it is."""
        return getattr(self.module, self.objection_fn)(head, path)

    def sniff(self, head: bytes, path: str | os.PathLike) -> bool:
        return self.objection(head, path) is None


READERS: dict[str, Reader] = {r.name: r for r in (
    Reader("ftrace", ftrace),
    Reader("blkparse", blkparse),
    Reader("msr", msr),
    Reader("csv", libcachesim, "parse_csv", "csv_objection", uses_csv_spec=True),
    Reader("txt", libcachesim, "parse_txt", "txt_objection", cached=False),
    Reader("oracleGeneral", libcachesim, "parse_oracle_general", "oracle_general_objection",
           cached=False),
)}
_NAMES = {name.lower(): name for name in READERS} | {"oraclegeneralbin": "oracleGeneral"}
_WHY = {"ftrace": "a '# tracer:' header or an mm_filemap_*/mm_page_* event line",
        "blkparse": "a first line 'M,m CPU SEQ TIME PID ACTION'",
        "msr": "a first data line of 7 comma fields with Read or Write as the 4th",
        "csv": "a header naming an obj id column",
        "txt": "one integer per line",
        "oracleGeneral": "binary records with plausible next_access_vtime"}


def format_name(fmt: str) -> str:
    """The registry name of ``fmt`` (case-insensitive), or :class:`TraceError`."""
    name = _NAMES.get(fmt.lower())
    if name is None:
        raise TraceError(f"unknown trace format {fmt!r}: expected one of {', '.join(READERS)}")
    return name


def detect(path: str | os.PathLike) -> tuple[str, str]:
    """The format of a trace and why: from its name (``.oracleGeneral``) or its decompressed
    content. :class:`TraceError` names what every format objected to when none fits."""
    if ".oraclegeneral" in Path(path).name.lower():
        return "oracleGeneral", "'.oracleGeneral' in the name"
    head = read_head(path)
    if not head:
        raise TraceError(f"{path}: cannot tell the trace format: the file is empty")
    objections = []
    for name, reader in READERS.items():
        why_not = reader.objection(head, path)
        if why_not is None:
            return name, _WHY[name]
        objections.append(f"{name}: {why_not}")
    raise TraceError(f"{path}: cannot tell the trace format (tried {', '.join(READERS)}): "
                     + "; ".join(objections) + "; give it explicitly")


def detect_format(path: str | os.PathLike) -> str:
    """The format of a trace, from its decompressed content (and the oracleGeneral suffix)."""
    return detect(path)[0]


def read_trace(path: str | os.PathLike, fmt: str | None = None, *, skip_bad_lines: bool = False,
               csv_spec: str | None = None, use_cache: bool = True) -> Trace:
    """Parse a trace file into event columns, from the cache when it was parsed before (for
    the formats that are cached: :attr:`Reader.cached`).

    ``fmt`` is a key of :data:`READERS` (detected when None; ``csv`` when only ``csv_spec`` is
    given). ``csv_spec`` is a libCacheSim column spec for csv traces (see
    :func:`tagcache.traces.libcachesim.parse_spec`). With ``skip_bad_lines`` malformed lines are
    counted in ``Trace.skipped_lines`` instead of raising :class:`TraceError`.
    """
    p = Path(path)
    if not p.is_file():
        raise TraceError(f"{p}: no such trace file")
    detected = None
    if fmt is None:
        if csv_spec is not None:
            fmt = "csv"
        else:
            fmt, detected = detect(p)
    reader = READERS[format_name(fmt)]
    if csv_spec is not None and not reader.uses_csv_spec:
        raise TraceError(f"{p}: a csv spec was given but the format is {reader.name}, not csv")
    key = (cache.cache_key(p, reader.name, csv_spec, skip_bad_lines)
           if use_cache and reader.cached else None)
    if key is not None:
        hit = cache.load(key)
        if hit is not None:
            return hit
    try:
        trace = reader.parse(p, skip_bad_lines=skip_bad_lines, csv_spec=csv_spec)
    except TraceError as e:
        if detected is None:
            raise
        raise TraceError(f"{e} (read as {reader.name}, detected by {detected}; give the format "
                      "if it is another)") from None
    if key is not None:
        cache.store(key, trace, reader.name)
    return trace
