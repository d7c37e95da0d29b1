"""Compare the page-cache model with what the real kernel did on a capture (DESIGN.md 5).

Only pages of inodes with at least one access event count. The kernel's *insertions* are the
pages its add events inserted; its *re-insertions* are insertions of a page inserted before.
The model replays only the access events (get_pages, map_pages, fault) with no cleancache,
under a page-cache capacity of the capture's ``kernel.cache_peak`` unless one is given, and
its insertions and re-insertions are counted the same way. The add events serve one purpose
on the model's side: each file's size (the highest page index ever inserted), since access
ranges can pass the end of the file.

Where the comparison departs from the kernel by construction: the kernel's ``cache_peak``
counts every page-cache page charged to the capture's cgroup, the block device's own pages
(filesystem metadata, e.g. ext4's inode-table readahead) and pages of files without access
events included, while the model fills the whole capacity with pages of accessed files only.
Those other pages are seen only through add events, which the model may not use, so while
they are resident the model has that many more pages than the kernel had (up to 655 of
3,716 in ``git-log-p``, 773 of 1,615 in ``small-files-md5sum``). Workloads whose reuse
distance sits between the two capacities are predicted with too few re-insertions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagcache.cleancache.frontend import Cleancache
from tagcache.errors import TraceError
from tagcache.mm.filemap import PageCache
from tagcache.mm.readahead import VM_READAHEAD_PAGES
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


@dataclass
class Validation:
    kernel: dict[str, int]
    model: dict[str, int]
    capacity_pages: int
    files: int

    @property
    def error(self) -> dict[str, float]:
        return {k: (self.model[k] / self.kernel[k] - 1.0) if self.kernel[k] else
                (0.0 if self.model[k] == 0 else float("inf")) for k in self.kernel}

    def to_json(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "model": self.model, "error": self.error,
                "capacity_pages": self.capacity_pages, "files": self.files}


def accessed_files(trace: Trace) -> np.ndarray:
    """Ids of files with at least one access event."""
    m = np.isin(trace.op, np.array(ACCESS_OPS, np.uint8))
    return np.unique(trace.arg0[m])


def kernel_counts(trace: Trace, files: np.ndarray) -> dict[str, int]:
    """Insertions and re-insertions of the kernel's add events on ``files``."""
    m = (trace.op == Op.KERNEL_ADD) & np.isin(trace.arg0, files)
    f, idx, order = trace.arg0[m], trace.arg1[m], trace.arg2[m]
    nr = np.left_shift(1, order)
    if not len(f):
        return {"insertions": 0, "reinsertions": 0}
    pages_f = np.repeat(f, nr)
    starts = np.repeat(idx, nr)
    offs = np.arange(len(pages_f)) - np.repeat(np.cumsum(nr) - nr, nr)
    key = pages_f * (1 << 40) + starts + offs
    total = len(key)
    return {"insertions": int(total), "reinsertions": int(total - len(np.unique(key)))}


def model_files(trace: Trace, files: np.ndarray, large_folios: bool) -> FileTable:
    """The file table the model sees: sizes from add events, only accessed files spanned."""
    ft = trace.files
    keep = np.zeros(len(ft), bool)
    keep[files] = True
    size = np.where(keep, ft.size_pages, 0)
    span = np.where(keep, np.maximum(ft.span_pages, size), 0)
    return FileTable.build(ft.dev, ft.ino, size, span, np.full(len(ft), large_folios))


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


def preload_resident(pc: PageCache, trace: Trace, meta: dict[str, Any] | None) -> int:
    """Mark the pages the sidecar lists as resident before the capture (files mapped by other
    processes, charged to other cgroups); returns how many pages of traced files that is."""
    runs = (meta or {}).get("resident_at_start")
    if not isinstance(runs, dict):
        return 0
    ft = trace.files
    index = {(device_key(int(d)), int(i)): f for f, (d, i) in enumerate(zip(ft.dev, ft.ino,
                                                                          strict=True))}
    total = 0
    for key, spans in runs.items():
        try:
            maj_min, ino = key.rsplit(":", 1)
            f = index.get((maj_min, int(ino, 16)))
        except ValueError:
            raise TraceError(f"resident_at_start: bad key {key!r} (want 'M:m:inohex')") from None
        if f is None or not pc.span[f]:
            continue
        for first, nr in spans:
            pc.preload_foreign(f, int(first), int(nr))
            total += max(0, min(int(first) + int(nr), int(pc.span[f])) - int(first))
    return total


def validate_trace(trace: Trace, capacity_pages: int, *, large_folios: bool = False,
                   ra_pages: int = VM_READAHEAD_PAGES, meta: dict[str, Any] | None = None
                   ) -> Validation:
    """Replay the access events of ``trace`` through the page-cache model and compare.

    With a sidecar ``meta`` that lists pages resident before the capture, those are
    preloaded as resident and charged elsewhere (PG_FOREIGN), as they were.
    """
    files = accessed_files(trace)
    ft = model_files(trace, files, large_folios)
    pc = PageCache(ft, Cleancache(None), lambda: capacity_pages, ra_pages=ra_pages)
    preload_resident(pc, trace, meta)
    handlers = {Op.GET_PAGES: pc.get_pages, Op.READ: pc.read, Op.MAP_PAGES: pc.map_pages,
                Op.FAULT: lambda f, i, _n: pc.fault(f, i)}
    m = np.isin(trace.op, np.array(ACCESS_OPS, np.uint8))
    for op, a0, a1, a2 in zip(trace.op[m].tolist(), trace.arg0[m].tolist(),
                              trace.arg1[m].tolist(), trace.arg2[m].tolist(), strict=True):
        handlers[op](a0, a1, a2)
    model = {"insertions": pc.stats.insertions, "reinsertions": pc.stats.reinsertions}
    return Validation(kernel_counts(trace, files), model, capacity_pages, len(files))
