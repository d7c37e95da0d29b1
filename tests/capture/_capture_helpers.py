"""Helpers of the capture tests (root, tracefs and a memory cgroup needed; else skipped)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tagcache.errors import CaptureError
from tagcache.workloads import capture

TRACEFS = Path("/sys/kernel/tracing")
KEY = re.compile(r"^\d+:\d+:[0-9a-f]+$")


def _kernel_has_tracefs() -> bool:
    try:
        return "tracefs" in Path("/proc/filesystems").read_text()
    except OSError:
        return False


def why_no_capture() -> str | None:
    """Why real captures cannot run here, or None."""
    if os.geteuid() != 0:
        return "capture tests need root (tracefs, memory cgroup, drop_caches)"
    if not _kernel_has_tracefs():
        return "capture tests need a kernel with tracefs"
    try:
        capture.find_memory_cgroup()
    except CaptureError as e:
        return f"capture tests need a memory cgroup: {e}"
    return None


needs_capture = pytest.mark.skipif(why_no_capture() is not None, reason=str(why_no_capture()))


def tracing_state(tracefs: Path) -> dict[str, str]:
    """Everything of the top-level tracing state a capture could conceivably change."""
    files = ["tracing_on", "set_event", "buffer_size_kb", "buffer_total_size_kb",
             "current_tracer", "set_event_pid", "set_event_notrace_pid", "trace_options",
             "options/event-fork", "trace_clock"]
    for system, events in (("filemap", capture.FILEMAP_EVENTS), ("kmem", capture.KMEM_EVENTS)):
        for e in events:
            files += [f"events/{system}/{e}/enable", f"events/{system}/{e}/filter"]
    state = {f: (tracefs / f).read_text() for f in files}
    state["instances"] = " ".join(sorted(p.name for p in (tracefs / "instances").iterdir()))
    return state


def leftover_cgroups() -> list[Path]:
    """Memory cgroups named like ours."""
    _, root = capture.find_memory_cgroup()
    return sorted(p for p in root.iterdir() if p.name.startswith(capture.PREFIX))


def python_files(min_bytes: int) -> list[str]:
    """Sorted .py files of /usr/lib/python3*/ adding up to at least ``min_bytes``."""
    out, total = [], 0
    for p in sorted(Path("/usr/lib").glob("python3*/**/*.py")):
        if not p.is_file() or "/test/" in str(p):
            continue
        out.append(str(p))
        total += p.stat().st_size
        if total >= min_bytes:
            break
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def self_libc() -> tuple[str, str]:
    """('M:m:inohex', path) of the libc this process maps, from /proc/self/maps."""
    for major, minor, ino, path, _, _ in capture.parse_maps(Path("/proc/self/maps").read_text()):
        if re.search(r"/libc[.-][^/]*so", path):
            return f"{major}:{minor}:{ino:x}", path
    raise AssertionError("this process maps no libc")


def check_runs(runs: object, npages: int | None = None) -> None:
    """Well-formed runs: [[first, n], ...] of ints, n > 0, sorted, disjoint, not adjacent."""
    assert isinstance(runs, list) and runs
    end = -1
    for run in runs:
        assert isinstance(run, list) and len(run) == 2
        first, n = run
        assert type(first) is int and type(n) is int and first >= 0 and n > 0
        assert first > end
        end = first + n
    if npages is not None:
        assert end <= npages


def check_new_fields(side: dict) -> None:
    """read_ahead_kb and resident_at_start are there and well-formed; so are exec_mappings,
    buffers_growth_peak and folio_orders where the recorder wrote them (older captures lack
    them)."""
    ra = side["read_ahead_kb"]
    assert isinstance(ra, dict)
    for dev, kb in ra.items():
        assert re.fullmatch(r"\d+:\d+", dev) and type(kb) is int and kb >= 0, (dev, kb)
    res = side["resident_at_start"]
    assert isinstance(res, dict) and res
    for key, runs in res.items():
        assert KEY.match(key), key
        check_runs(runs)
    for key, runs in side.get("exec_mappings", {}).items():
        assert KEY.match(key), key
        check_runs(runs)
    growth = side.get("buffers_growth_peak", 0)
    assert type(growth) is int and growth >= 0, growth
    for key, path in side.get("paths", {}).items():
        assert KEY.match(key) and path.startswith("/"), (key, path)
    for order, pages in side.get("folio_orders", {}).items():
        assert order.isdigit() and int(order) <= 9 and type(pages) is int and pages > 0, \
            (order, pages)


def elf_segments(path: str) -> list[tuple[int, int, int, int, int]]:
    """(p_type, p_flags, p_offset, p_vaddr, p_filesz, p_memsz) of each program header of the
    64-bit little-endian ELF ``path``, read with the layout of elf(5)."""
    import struct

    with open(path, "rb") as f:
        data = f.read(1 << 16)
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, path
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    out = []
    for i in range(phnum):
        p_type, p_flags, p_offset, p_vaddr, _pa, p_filesz, p_memsz, _al = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize)
        out.append((p_type, p_flags, p_offset, p_vaddr, p_filesz, p_memsz))
    return out


def elf_exec_pages(path: str) -> tuple[int, int]:
    """(first page, pages) of the file that the executable PT_LOAD segment of the 64-bit
    little-endian ELF ``path`` maps: what /proc/PID/maps shows for its r-x mapping."""
    for p_type, p_flags, p_offset, p_vaddr, _fsz, p_memsz in elf_segments(path):
        if p_type == 1 and p_flags & 1:                       # PT_LOAD, PF_X
            start = p_vaddr & ~(capture.PAGE_SIZE - 1)
            end = -(-(p_vaddr + p_memsz) // capture.PAGE_SIZE) * capture.PAGE_SIZE
            return p_offset // capture.PAGE_SIZE, (end - start) // capture.PAGE_SIZE
    raise AssertionError(f"{path}: no executable PT_LOAD segment")


def elf_writable_file_pages(path: str) -> list[list[int]]:
    """[first page, pages] of the file bytes of each writable PT_LOAD segment of ``path``."""
    ps = capture.PAGE_SIZE
    return [[off // ps, -(-(off + fsz) // ps) - off // ps]
            for p_type, flags, off, _va, fsz, _msz in elf_segments(path)
            if p_type == 1 and flags & 2 and fsz]
