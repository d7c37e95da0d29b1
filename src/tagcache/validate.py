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
``minus_metadata`` takes that room off the capacity, as the recorder measured it
(``buffers_growth_peak``), so that the add events still serve file sizes only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagcache.cleancache.frontend import Cleancache
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


FAULT_OUTCOMES = ("both_hit", "kernel_miss_model_hit", "kernel_hit_model_miss", "both_miss")


@dataclass
class Validation:
    kernel: dict[str, int]
    model: dict[str, int]
    capacity_pages: int
    files: int
    faults: dict[str, int]
    """Each fault event classified by whether the kernel (its add and delete events) and the
    model had the page cached when it came (FAULT_OUTCOMES): a diagnostic, not an input."""
    fault_pages: dict[str, int]
    """Pages the kernel inserted into the faulting file right after each class of fault (its
    add events up to the next access event): what the kernel read for those faults."""
    large_folios: bool = False
    """Whether the model gave the traced files large folios."""

    @property
    def censored(self) -> float:
        """Share of the kernel's insertions that came on faults where the model hit.

        A fault event exists only where the traced kernel had no PTE for the page, so the
        trace shows every refault of a mapped page the kernel evicted but none of the
        accesses to mapped pages the kernel kept: where the model evicts a mapped page that
        the kernel kept, the process's further touches of it are invisible, the model never
        reads it back, and it keeps pages the kernel evicted instead. A high share means the
        trace is censored by the kernel's own residency and the model's insertions are a
        lower bound for that workload. The converse, kernel_hit_model_miss, is rare by
        construction: the kernel faults on a page it has cached only where the faulting
        process has not mapped it yet.
        """
        n = self.kernel["insertions"]
        return self.fault_pages["kernel_miss_model_hit"] / n if n else 0.0

    @property
    def error(self) -> dict[str, float]:
        return {k: (self.model[k] / self.kernel[k] - 1.0) if self.kernel[k] else
                (0.0 if self.model[k] == 0 else float("inf")) for k in self.kernel}

    def to_json(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "model": self.model, "error": self.error,
                "capacity_pages": self.capacity_pages, "files": self.files,
                "faults": self.faults, "fault_pages": self.fault_pages,
                "censored": self.censored, "large_folios": self.large_folios}


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


def preload_resident(pc: PageCache, trace: Trace, meta: dict[str, Any] | None) -> int:
    """Mark the pages the sidecar lists as resident before the capture (files mapped by other
    processes, charged to other cgroups); returns how many pages of traced files that is."""
    total = 0
    for f, spans in sidecar_page_runs(trace, meta, "resident_at_start").items():
        if not pc.span[f]:
            continue
        for first, nr in spans:
            pc.preload_foreign(f, first, nr)
            total += max(0, min(first + nr, int(pc.span[f])) - first)
    return total


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


def validate_trace(trace: Trace, capacity_pages: int, *, large_folios: bool | None = None,
                   ra_pages: int = VM_READAHEAD_PAGES, meta: dict[str, Any] | None = None,
                   mappings: bool = False, minus_metadata: bool = False) -> Validation:
    """Replay the access events of ``trace`` through the page-cache model and compare.

    With ``large_folios`` the traced files' mappings take folios up to MAX_PAGECACHE_ORDER,
    as ext4 does since Linux 6.16 and xfs since 5.18 (mapping_large_folio_support());
    readahead decides the sizes; None: as the sidecar says (sidecar_large_folios()). With a
    sidecar ``meta`` that lists pages resident before the capture, those are preloaded as
    resident and charged elsewhere (PG_FOREIGN), as they were. With ``mappings``, the
    sidecar's executable mappings are faulted and reclaimed as VM_EXEC mappings and its
    copy-on-write ranges are read but not left mapped. With ``minus_metadata``, the capacity
    is lowered by metadata_pages(): the room filesystem metadata took in the kernel's cgroup.
    These two are off by default (DESIGN.md 5 gives the model the whole ``cache_peak``): see
    README, "Real workloads".
    """
    files = accessed_files(trace)
    if minus_metadata:
        capacity_pages = max(1, capacity_pages - metadata_pages(meta))
    if large_folios is None:
        large_folios = sidecar_large_folios(meta)
    ft = model_files(trace, files, large_folios)
    pc = PageCache(ft, Cleancache(None), lambda: capacity_pages, ra_pages=ra_pages,
                   max_folio_order=MAX_PAGECACHE_ORDER,
                   exec_vmas=page_ranges(trace, meta, "exec_mappings") if mappings else None,
                   cow_vmas=page_ranges(trace, meta, "cow_mappings") if mappings else None)
    preload_resident(pc, trace, meta)
    kernel_cached = pc.head >= 0        # the kernel's page cache as its events say
    handlers = {Op.GET_PAGES: pc.get_pages, Op.READ: pc.read, Op.MAP_PAGES: pc.map_pages,
                Op.FAULT: lambda f, i, _n: pc.fault(f, i)}
    faults = dict.fromkeys(FAULT_OUTCOMES, 0)
    fault_pages = dict.fromkeys(FAULT_OUTCOMES, 0)
    outcome, fault_file = "", -1            # the last fault's class, until the next access
    keep = np.isin(trace.op, np.array((*ACCESS_OPS, Op.KERNEL_ADD, Op.KERNEL_DELETE),
                                      np.uint8))
    span, base = pc.span, pc.base
    for op, a0, a1, a2 in zip(trace.op[keep].tolist(), trace.arg0[keep].tolist(),
                              trace.arg1[keep].tolist(), trace.arg2[keep].tolist(), strict=True):
        if op == Op.KERNEL_ADD or op == Op.KERNEL_DELETE:
            if span[a0]:
                s = int(base[a0]) + a1
                kernel_cached[s:s + (1 << a2)] = op == Op.KERNEL_ADD
                if op == Op.KERNEL_ADD and a0 == fault_file:
                    fault_pages[outcome] += 1 << a2
            continue
        fault_file = -1
        if op == Op.FAULT and a1 < span[a0]:
            s = int(base[a0]) + a1
            k, m = bool(kernel_cached[s]), bool(pc.head[s] >= 0)
            outcome = FAULT_OUTCOMES[(0 if m else 3) if k == m else (1 if m else 2)]
            faults[outcome] += 1
            fault_file = a0
        handlers[op](a0, a1, a2)
    model = {"insertions": pc.stats.insertions, "reinsertions": pc.stats.reinsertions}
    return Validation(kernel_counts(trace, files), model, capacity_pages, len(files), faults,
                      fault_pages, large_folios)
