"""What a capture's sidecar tells a model of the page cache it ran on (DESIGN.md 5).

The sidecar NAME.json beside NAME.trace.zst has the fields of DESIGN.md 5 and the ones
``tagcache record`` adds (workloads/capture.py documents each). This module reads them and
turns them into a :class:`CaptureFacts`: the readahead window, whether the files have large
folios, the pages resident before the command (charged elsewhere), its executable and
copy-on-write mappings, and the room filesystem metadata took. ``tagcache validate`` and
``tagcache run --trace`` build the page cache the same way from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagcache.errors import TraceError
from tagcache.mm.filemap import MAX_PAGECACHE_ORDER, PageCache
from tagcache.mm.readahead import VM_READAHEAD_PAGES
from tagcache.units import PAGE_SIZE
from tagcache.workloads.events import FileTable, Op, Trace

SIDECAR_FIELDS = ("name", "limit_mib", "seconds", "trace_overrun_events", "command",
                  "exit_code", "kernel")
KERNEL_FIELDS = ("workingset_refault_file", "pgmajfault", "pgpgin", "pgpgout", "cache",
                 "inactive_file", "active_file", "cache_peak")
ACCESS_OPS = (Op.GET_PAGES, Op.READ, Op.MAP_PAGES, Op.FAULT)


def load_sidecar(path: str | Path) -> dict[str, Any]:
    """Read a capture sidecar; every field of the schema must be there (more may be)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as e:
        raise TraceError(f"{p}: cannot read capture sidecar: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise TraceError(f"{p}: line {e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise TraceError(f"{p}: expected a JSON object with fields {', '.join(SIDECAR_FIELDS)}")
    for k in SIDECAR_FIELDS:
        if k not in data:
            raise TraceError(f"{p}: missing field {k!r}")
    kern = data["kernel"]
    if not isinstance(kern, dict):
        raise TraceError(f"{p}: field 'kernel' must be an object")
    for k in KERNEL_FIELDS:
        v = kern.get(k)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise TraceError(f"{p}: kernel.{k} = {v!r}: expected a byte or event count >= 0")
    return data


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
    if meta and isinstance(meta.get("read_ahead_kb"), dict) and key in meta["read_ahead_kb"]:
        return int(meta["read_ahead_kb"][key]) // 4, f"sidecar read_ahead_kb[{key}]"
    try:
        return int((sysfs / key / "read_ahead_kb").read_text()) // 4, f"{sysfs}/{key}"
    except (OSError, ValueError):
        return VM_READAHEAD_PAGES, "kernel default (128 KiB)"


def sidecar_page_runs(trace: Trace, meta: dict[str, Any] | None,
                      field: str) -> dict[int, list[tuple[int, int]]]:
    """A sidecar field of the shape ``{"M:m:inohex": [[first_page, npages], ...]}`` as
    ``{file id: [(first, npages), ...]}``, for the files of ``trace`` (others left out)."""
    runs = (meta or {}).get(field)
    if not isinstance(runs, dict):
        return {}
    ft = trace.files
    index = {(device_key(int(d)), int(i)): f for f, (d, i) in enumerate(zip(ft.dev, ft.ino,
                                                                          strict=True))}
    out: dict[int, list[tuple[int, int]]] = {}
    for key, spans in runs.items():
        try:
            maj_min, ino = key.rsplit(":", 1)
            f = index.get((maj_min, int(ino, 16)))
            pairs = [(int(first), int(nr)) for first, nr in spans]
        except (ValueError, TypeError):
            raise TraceError(f"{field}: bad entry {key!r}: {spans!r} (want 'M:m:inohex': "
                             f"[[first_page, npages], ...])") from None
        if f is not None:
            out[f] = pairs
    return out


def page_ranges(trace: Trace, meta: dict[str, Any] | None,
                field: str) -> dict[int, list[tuple[int, int]]]:
    """A sidecar field of page runs (``exec_mappings``: the VM_EXEC mappings of the command's
    processes; ``cow_mappings``: their writable ELF segments) as ``{file id: [(start, end),
    ...]}``, the form PageCache takes (it sorts and merges them)."""
    return {f: [(first, first + nr) for first, nr in spans]
            for f, spans in sidecar_page_runs(trace, meta, field).items()}


def metadata_pages(meta: dict[str, Any] | None) -> int:
    """The filesystem metadata the capture's cgroup held at most, in pages: the sidecar's
    ``buffers_growth_peak`` (block-device page cache gained while CMD ran, sampled by
    ``tagcache record``; not derived from the trace's add events)."""
    v = (meta or {}).get("buffers_growth_peak")
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        name = (meta or {}).get("name", "the capture")
        raise TraceError(f"sidecar of {name}: buffers_growth_peak = {v!r}: expected bytes >= 0 "
                         f"(--minus-metadata needs a capture recorded by this version)")
    return v // PAGE_SIZE


def sidecar_large_folios(meta: dict[str, Any] | None) -> bool:
    """Whether the capture's page cache held large folios (sidecar ``folio_orders``, measured
    by ``tagcache record`` when the command exited): the traced filesystem supports them."""
    orders = (meta or {}).get("folio_orders") or {}
    return any(str(k) != "0" and v for k, v in orders.items())


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
    """Room the filesystem metadata took in the capture's cgroup, off the capacity."""

    def data_capacity(self, capacity_pages: int) -> int:
        """The page-cache capacity left to the traced files: less the metadata's room."""
        return max(1, capacity_pages - self.metadata_pages)

    def files(self, files: FileTable) -> FileTable:
        """``files`` with every mapping's large-folio support set as the capture had it."""
        return FileTable.build(files.dev, files.ino, files.size_pages, files.span_pages,
                               np.full(len(files), self.large_folios))

    def page_cache_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for PageCache: readahead window, largest folio, mappings."""
        return {"ra_pages": self.ra_pages,
                "max_folio_order": MAX_PAGECACHE_ORDER if self.large_folios else 0,
                "exec_vmas": self.exec_vmas, "cow_vmas": self.cow_vmas}

    def preload(self, pc: PageCache) -> int:
        """Mark the pages resident before the capture (PG_FOREIGN); how many of traced files."""
        total = 0
        for f, spans in self.resident.items():
            if not pc.span[f]:
                continue
            for first, nr in spans:
                pc.preload_foreign(f, first, nr)
                total += max(0, min(first + nr, int(pc.span[f])) - first)
        return total


def capture_facts(trace: Trace, meta: dict[str, Any] | None, *,
                  large_folios: bool | None = None, ra_pages: int | None = None,
                  mappings: bool = False, minus_metadata: bool = False) -> CaptureFacts:
    """The facts of ``meta`` for ``trace``; explicit ``large_folios`` and ``ra_pages`` win.

    ``mappings`` takes the sidecar's exec_mappings as VM_EXEC mappings and its cow_mappings
    as copy-on-write ranges; ``minus_metadata`` takes metadata_pages() as the metadata's
    room. Both are off by default: DESIGN.md 5 gives the model the whole ``cache_peak``.
    """
    if ra_pages is None:
        ra_pages, ra_from = read_ahead_pages(trace, meta)
    else:
        ra_from = "given"
    return CaptureFacts(
        ra_pages=ra_pages, ra_from=ra_from,
        large_folios=sidecar_large_folios(meta) if large_folios is None else large_folios,
        resident=sidecar_page_runs(trace, meta, "resident_at_start"),
        exec_vmas=page_ranges(trace, meta, "exec_mappings") if mappings else None,
        cow_vmas=page_ranges(trace, meta, "cow_mappings") if mappings else None,
        metadata_pages=metadata_pages(meta) if minus_metadata else 0)
