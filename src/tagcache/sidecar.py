"""What a capture's sidecar tells a model of the page cache it ran on (DESIGN.md 5).

The sidecar NAME.json beside NAME.trace.zst has the fields of DESIGN.md 5 and the ones
``tagcache record`` adds (record/schema.py documents each). This module reads them and
turns them into a :class:`CaptureFacts`: the readahead window, whether the files have large
folios, the pages resident before the command (charged elsewhere), its executable and
copy-on-write mappings, and the room filesystem metadata took. ``tagcache validate`` and
``tagcache run --trace`` build the page cache the same way from it.

Every field read is checked first (:func:`check_sidecar`): a sidecar that is not UTF-8, not
JSON, or has a field of the wrong type is a :class:`TraceError` naming the file, the key and
the value. Page runs are in the file's own page numbers and are mapped to the trace's
compacted ones (``Trace.extents``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagcache.capacity import CgroupRoom, cgroup_room
from tagcache.engine.pagemap import MAX_PAGECACHE_ORDER, VM_READAHEAD_PAGES
from tagcache.errors import TraceError
from tagcache.units import PAGE_SIZE
from tagcache.workloads.events import FileTable, Op, Trace

SIDECAR_FIELDS = ("name", "limit_mib", "seconds", "trace_overrun_events", "command",
                  "exit_code", "kernel")
KERNEL_FIELDS = ("workingset_refault_file", "pgmajfault", "pgpgin", "pgpgout", "cache",
                 "inactive_file", "active_file", "cache_peak")
ACCESS_OPS = (Op.GET_PAGES, Op.READ, Op.MAP_PAGES, Op.FAULT)
MAX_FILE_PAGES = 1 << 51
"""Pages of the largest file Linux allows (MAX_LFS_FILESIZE, 2**63 - 1 bytes)."""
MAX_READ_AHEAD_KB = 1 << 32
"""A read_ahead_kb beyond this (4 TiB) is not a device's setting but a corrupt value."""
_DEVICE = re.compile(r"\d+:\d+")
_FILE = re.compile(r"\d+:\d+:[0-9a-f]+")


def load_sidecar(path: str | Path) -> dict[str, Any]:
    """Read a capture sidecar; every field of the schema must be there (more may be), and
    every field this module reads must have its type (:func:`check_sidecar`)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise TraceError(f"{p}: cannot read capture sidecar: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TraceError(f"{p}: not UTF-8 text: byte {e.start} is 0x{raw[e.start]:02x} "
                         "(a capture sidecar is JSON)") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise TraceError(f"{p}: line {e.lineno}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise TraceError(f"{p}: not a capture sidecar: JSON nested too deeply") from None
    except ValueError as e:        # NaN, Infinity, integers of more than 4300 digits
        raise TraceError(f"{p}: not valid JSON: {e}") from None
    check_sidecar(data, str(p))
    return data


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _show(value: Any) -> str:
    s = repr(value)
    return s if len(s) <= 60 else s[:57] + "..."


def _bad(source: str, key: str, value: Any, expected: str) -> TraceError:
    return TraceError(f"{source}: {key} = {_show(value)}: expected {expected}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**63


def _is_count(v: Any) -> bool:
    return _is_int(v) and v >= 0


def _is_number(v: Any) -> bool:
    return _is_int(v) or (isinstance(v, float) and math.isfinite(v))


def check_sidecar(data: Any, source: str, required: bool = True) -> None:
    """:class:`TraceError` naming ``source``, the key and its value unless ``data`` is a
    sidecar: an object with the fields of DESIGN.md 5 (when ``required``) and, for the
    optional fields that tagcache reads, their types."""
    if not isinstance(data, dict):
        raise TraceError(f"{source}: expected a JSON object with fields "
                         f"{', '.join(SIDECAR_FIELDS)}, got {type(data).__name__}")
    if required:
        for k in SIDECAR_FIELDS:
            if k not in data:
                raise TraceError(f"{source}: missing field {k!r}")
        checks = {"name": (lambda v: isinstance(v, str), "a string"),
                  "limit_mib": (lambda v: _is_number(v) and v > 0, "MiB > 0"),
                  "seconds": (lambda v: _is_number(v) and v >= 0, "seconds >= 0"),
                  "trace_overrun_events": (_is_count, "an event count >= 0"),
                  "command": (lambda v: isinstance(v, str), "a string"),
                  "exit_code": (_is_int, "an integer")}
        for k, (ok, expected) in checks.items():
            if not ok(data[k]):
                raise _bad(source, k, data[k], expected)
        kern = data["kernel"]
        if not isinstance(kern, dict):
            raise _bad(source, "kernel", kern, "an object of " + ", ".join(KERNEL_FIELDS))
        for k in KERNEL_FIELDS:
            v = kern.get(k)
            if not _is_count(v):
                raise _bad(source, f"kernel.{k}", v, "a byte or event count >= 0")
    _check_optional(data, source)


def _check_optional(data: dict[str, Any], source: str) -> None:
    """The optional fields tagcache reads, where present (tagcache record writes them)."""
    if "buffers_growth_peak" in data:
        v = data["buffers_growth_peak"]
        if not _is_count(v):
            raise _bad(source, "buffers_growth_peak", v, "bytes >= 0")
    ra = _object(data, "read_ahead_kb", source)
    for k, v in ra.items():
        if not _DEVICE.fullmatch(k):
            raise _bad(source, "read_ahead_kb key", k, "'M:m', a device number")
        if not _is_int(v) or not 0 <= v < MAX_READ_AHEAD_KB:
            raise _bad(source, f"read_ahead_kb[{k!r}]", v,
                       f"KiB from 0 to {MAX_READ_AHEAD_KB - 1}")
    orders = _object(data, "folio_orders", source)
    for k, v in orders.items():
        if not k.isdigit() or int(k) > 63:
            raise _bad(source, "folio_orders key", k, "a folio order, '0' to '63'")
        if not _is_count(v):
            raise _bad(source, f"folio_orders[{k!r}]", v, "a page count >= 0")
    for field in ("resident_at_start", "exec_mappings", "cow_mappings"):
        for k, runs in _object(data, field, source).items():
            if not _FILE.fullmatch(k):
                raise _bad(source, f"{field} key", k, "'M:m:inohex', a file")
            if not isinstance(runs, list) or not all(
                    isinstance(r, list) and len(r) == 2 and all(_is_count(x) for x in r)
                    and r[0] + r[1] <= MAX_FILE_PAGES for r in runs):
                raise _bad(source, f"{field}[{k!r}]", runs,
                           "[[first_page, npages], ...] of integers >= 0 within a file")
    for k, v in _object(data, "filesystems", source).items():
        if not _DEVICE.fullmatch(k) or not isinstance(v, str):
            raise _bad(source, f"filesystems[{k!r}]", v, "a filesystem type string per 'M:m'")
    if "kernel_release" in data and not isinstance(data["kernel_release"], str):
        raise _bad(source, "kernel_release", data["kernel_release"], "a string (uname -r)")
    for k, v in _object(data, "paths", source).items():
        if not isinstance(v, str):
            raise _bad(source, f"paths[{k!r}]", v, "a path string")


def _object(data: dict[str, Any], field: str, source: str) -> dict[str, Any]:
    v = data.get(field)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _bad(source, field, v, "an object")
    return v


def _source(meta: dict[str, Any]) -> str:
    name = meta.get("name")
    return f"sidecar of {name}" if isinstance(name, str) else "capture sidecar"


def sidecar_for(trace_path: str | Path) -> Path:
    """NAME.json beside NAME.trace.zst (or NAME.trace, NAME.trace.gz)."""
    p = Path(trace_path)
    name = p.name
    for suffix in (".trace.zst", ".trace.gz", ".trace", ".zst", ".gz", ".txt"):
        if name.endswith(suffix):
            return p.with_name(name[: -len(suffix)] + ".json")
    return p.with_suffix(".json")


def device_key(dev: int) -> str:
    """'M:m' of a dev number encoded as MKDEV (major << 20 | minor), as traces print it."""
    return f"{dev >> 20}:{dev & 0xFFFFF}"


def main_device(trace: Trace) -> int:
    """The device with the most access events (its read_ahead_kb sets the model's)."""
    m = np.isin(trace.op, np.array(ACCESS_OPS, np.uint8))
    devs = trace.files.dev[trace.arg0[m]]
    if not len(devs):
        return 0
    vals, counts = np.unique(devs, return_counts=True)
    return int(vals[np.argmax(counts)])


def read_ahead_pages(trace: Trace, meta: dict[str, Any] | None,
                     sysfs: Path = Path("/sys/class/bdi")) -> tuple[int, str]:
    """ra_pages for the replay, and where it came from: the sidecar's read_ahead_kb of the
    main device, else this machine's bdi of the same number, else the kernel default."""
    key = device_key(main_device(trace))
    if meta:
        check_sidecar(meta, _source(meta), required=False)
    if meta and key in (meta.get("read_ahead_kb") or {}):
        return int(meta["read_ahead_kb"][key]) // 4, f"sidecar read_ahead_kb[{key}]"
    try:
        return int((sysfs / key / "read_ahead_kb").read_text()) // 4, f"{sysfs}/{key}"
    except (OSError, ValueError):
        return VM_READAHEAD_PAGES, "kernel default (128 KiB)"


def sidecar_page_runs(trace: Trace, meta: dict[str, Any] | None,
                      field: str) -> dict[int, list[tuple[int, int]]]:
    """A sidecar field of the shape ``{"M:m:inohex": [[first_page, npages], ...]}`` as
    ``{file id: [(first, npages), ...]}``, for the files of ``trace`` (others left out), in
    the trace's page indexes (``Trace.extents``: parts no event comes near are left out)."""
    if not meta:
        return {}
    check_sidecar(meta, _source(meta), required=False)
    runs = meta.get(field) or {}
    ft = trace.files
    index = {(device_key(int(d)), int(i) & (2**64 - 1)): f
             for f, (d, i) in enumerate(zip(ft.dev, ft.ino, strict=True))}
    out: dict[int, list[tuple[int, int]]] = {}
    for key, spans in runs.items():
        maj_min, ino = key.rsplit(":", 1)
        f = index.get((maj_min, int(ino, 16)))
        if f is None:
            continue
        pairs = [(int(first), int(nr)) for first, nr in spans]
        if trace.extents is not None:
            pairs = [piece for first, nr in pairs for piece in trace.extents.runs(f, first, nr)]
        out[f] = pairs
    return out


def page_ranges(trace: Trace, meta: dict[str, Any] | None,
                field: str) -> dict[int, list[tuple[int, int]]]:
    """A sidecar field of page runs (``exec_mappings``: the VM_EXEC mappings of the command's
    processes; ``cow_mappings``: their writable ELF segments) as ``{file id: [(start, end),
    ...]}``, the form make_page_cache() takes (it sorts and merges them)."""
    return {f: [(first, first + nr) for first, nr in spans]
            for f, spans in sidecar_page_runs(trace, meta, field).items()}


def metadata_pages(meta: dict[str, Any] | None) -> int:
    """The filesystem metadata the capture's cgroup held at most, in pages: the sidecar's
    ``buffers_growth_peak`` (block-device page cache gained while CMD ran, sampled by
    ``tagcache record``; not derived from the trace's add events)."""
    v = (meta or {}).get("buffers_growth_peak")
    if not _is_count(v):
        name = (meta or {}).get("name", "the capture")
        raise TraceError(f"sidecar of {name}: buffers_growth_peak = {_show(v)}: expected bytes "
                         ">= 0 (--minus-metadata needs a capture recorded by this version)")
    return v // PAGE_SIZE


def sidecar_large_folios(meta: dict[str, Any] | None) -> bool:
    """Whether the capture's page cache held large folios (sidecar ``folio_orders``, measured
    by ``tagcache record`` when the command exited): the fallback for sidecars that do not
    name the devices' filesystems (:func:`large_folio_devices`)."""
    if meta:
        check_sidecar(meta, _source(meta), required=False)
    orders = (meta or {}).get("folio_orders") or {}
    return any(str(k) != "0" and v for k, v in orders.items())


LARGE_FOLIO_FILESYSTEMS = {"ext4": (6, 16), "xfs": (5, 18)}
"""Filesystems whose regular files' mappings support large folios, from the kernel release
that enabled them: ext4_set_inode_mapping_order() (fs/ext4/inode.c, 6.16: every regular file
but data-journalled, verity and DAX ones, up to EXT4_MAX_PAGECACHE_ORDER, which is
MAX_PAGECACHE_ORDER with 4 KiB blocks) and xfs_setup_inode() -> mapping_set_large_folios()
(fs/xfs/xfs_iops.c, 5.18). Others (tmpfs without huge=, btrfs outside its experimental
build, ...) are taken as order 0."""


def kernel_version(release: str) -> tuple[int, int] | None:
    """(major, minor) of a ``uname -r`` string such as '6.18.44-fc-v669'."""
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else None


def large_folio_devices(meta: dict[str, Any] | None) -> set[str] | None:
    """The devices ('M:m') whose filesystem gives regular files large folios, from the
    sidecar's ``filesystems`` and ``kernel_release`` (facts of the machine, written by
    ``tagcache record``); None when the sidecar lacks them."""
    m = meta or {}
    fs, release = m.get("filesystems"), m.get("kernel_release")
    if not isinstance(fs, dict) or not isinstance(release, str):
        return None
    version = kernel_version(release)
    if version is None:
        return None
    return {dev for dev, name in fs.items()
            if name in LARGE_FOLIO_FILESYSTEMS and version >= LARGE_FOLIO_FILESYSTEMS[name]}


Runs = dict[int, list[tuple[int, int]]]


@dataclass(frozen=True)
class CaptureFacts:
    """The page cache a capture ran on, as its sidecar describes it, for a model of it."""

    ra_pages: int
    ra_from: str
    """Where ``ra_pages`` came from (the sidecar, this machine, the kernel default)."""
    large_folios: bool
    resident: Runs
    """Pages resident before the command, charged to other cgroups: {file: [(first, nr)]}."""
    exec_vmas: Runs | None = None
    cow_vmas: Runs | None = None
    metadata_pages: int = 0
    """Room the filesystem metadata took at most (used where the trace has no samples)."""
    use_metadata: bool = False
    """The room less the metadata: its series from the trace's samples, else its peak."""
    use_nonfile: bool = False
    """The room follows the cgroup's non-file charges (samples, kmem events): capacity.py."""
    naive: bool = False
    large_folio_devs: frozenset[str] | None = None
    """Devices whose files have large folios (large_folio_devices()); None: every file has
    them or none, as ``large_folios`` says."""
    used: tuple[str, ...] = ()
    """The sidecar's facts in use, by name."""

    def room(self, trace: Trace, cache_peak: int) -> CgroupRoom:
        """The room left to the traced files over time (capacity.py), for ``cache_peak``
        pages of page cache at most in the capture's cgroup."""
        return cgroup_room(trace, cache_peak, naive=self.naive, metadata=self.use_metadata,
                           nonfile=self.use_nonfile, metadata_peak=self.metadata_pages)

    def files(self, files: FileTable) -> FileTable:
        """``files`` with every mapping's large-folio support set as the capture had it."""
        return FileTable.build(files.dev, files.ino, files.size_pages, files.span_pages,
                               self.file_large_folios(files))

    def file_large_folios(self, files: FileTable) -> np.ndarray:
        """Per file: does its mapping support large folios (by its device's filesystem)."""
        if self.large_folio_devs is None:
            return np.full(len(files), self.large_folios)
        return np.array([device_key(int(d)) in self.large_folio_devs for d in files.dev],
                        bool)

    def page_cache_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for make_page_cache() (engine/pagecache.py): readahead window,
        largest folio, mappings."""
        return {"ra_pages": self.ra_pages,
                "max_folio_order": MAX_PAGECACHE_ORDER if self.large_folios else 0,
                "exec_vmas": self.exec_vmas, "cow_vmas": self.cow_vmas}



def has_samples(trace: Trace) -> bool:
    """Whether the trace carries the recorder's cgroup samples (Op.CGROUP_SAMPLE)."""
    return bool(np.any(trace.op == Op.CGROUP_SAMPLE))


def capture_facts(trace: Trace, meta: dict[str, Any] | None, *,
                  large_folios: bool | None = None, ra_pages: int | None = None,
                  naive: bool = False, mappings: bool | None = None,
                  metadata: bool | None = None, nonfile: bool | None = None,
                  minus_metadata: bool | None = None) -> CaptureFacts:
    """The facts of ``meta`` (and of the trace's cgroup samples) for ``trace``.

    Every fact measured is used unless switched off (DESIGN.md 5): ``mappings`` takes the
    sidecar's exec_mappings as VM_EXEC mappings and its cow_mappings as copy-on-write ranges;
    ``metadata`` takes the filesystem metadata's room off (its series from the samples, else
    buffers_growth_peak; ``minus_metadata`` is its old name); ``nonfile`` lets the room
    follow the cgroup's other charges (samples; kmem events between them). A fact asked for
    explicitly that the capture lacks is an error; one left to its default is skipped.
    ``naive``: DESIGN.md 5's literal model, none of them, no resident pages, order-0 folios.
    Explicit ``large_folios`` and ``ra_pages`` win.
    """
    if ra_pages is None:
        ra_pages, ra_from = read_ahead_pages(trace, meta)
    else:
        ra_from = "given"
    if minus_metadata is not None and metadata is None:
        metadata = minus_metadata
    if naive:
        return CaptureFacts(ra_pages=ra_pages, ra_from=ra_from,
                            large_folios=bool(large_folios), resident={}, naive=True)
    if meta:
        check_sidecar(meta, _source(meta), required=False)
    m = meta or {}
    samples = has_samples(trace)
    use_mappings = ("exec_mappings" in m or "cow_mappings" in m) if mappings is None \
        else mappings
    use_metadata = ("buffers_growth_peak" in m or samples) if metadata is None else metadata
    use_nonfile = samples if nonfile is None else nonfile
    if use_nonfile and not samples:
        raise TraceError(f"{_source(m)}: the trace has no cgroup samples (tagcache_sample "
                         "markers, written by tagcache record since this version): nothing "
                         "for --nonfile to follow")
    devs = large_folio_devices(meta) if large_folios is None else None
    if devs is not None:
        folios = bool(devs)
    else:
        folios = sidecar_large_folios(meta) if large_folios is None else large_folios
    resident = sidecar_page_runs(trace, meta, "resident_at_start")
    used = tuple(name for name, on in (
        ("resident_at_start", bool(resident)), ("read_ahead_kb", ra_from.startswith("sidecar")),
        ("filesystems", devs is not None),
        ("folio_orders", large_folios is None and devs is None and "folio_orders" in m),
        ("mappings", use_mappings), ("metadata", use_metadata), ("nonfile", use_nonfile)) if on)
    return CaptureFacts(
        ra_pages=ra_pages, ra_from=ra_from, large_folios=folios, resident=resident,
        exec_vmas=page_ranges(trace, meta, "exec_mappings") if use_mappings else None,
        cow_vmas=page_ranges(trace, meta, "cow_mappings") if use_mappings else None,
        metadata_pages=metadata_pages(meta) if use_metadata and not samples else 0,
        use_metadata=use_metadata, use_nonfile=use_nonfile, used=used,
        large_folio_devs=frozenset(devs) if devs is not None else None)
