"""``tagcache record``: capture the real kernel's page cache under a memory limit (DESIGN.md 5).

One capture runs CMD in a fresh memory cgroup with the given limit and records the filemap
tracepoints (and, with ``with_alloc``, kmem page alloc/free) of CMD and every process it forks.
It writes NAME.trace.zst (the raw tracefs ``trace`` text, zstd) and NAME.json (the sidecar),
each through a temporary name renamed when complete.

Tracing runs in a tracefs *instance* of its own (``instances/tagcache-record-PID-XXXXXX``): its
own ring buffer, event switches, ``set_event_pid`` and ``options/event-fork``. The top-level
tracing state (tracing_on, current_tracer, set_event, set_event_pid, buffer_size_kb, options,
filters, and the top-level buffer's contents) is never written, so it is exactly as it was,
even if the recorder is killed; the instance is removed at the end. Instances exist in every
kernel that has the filemap tracepoints. Only CMD's processes are recorded: CMD's pid goes into
the instance's ``set_event_pid`` and event-fork adds every task it forks (threads included).
Reclaim by kswapd or other cgroups' tasks is therefore not in the capture; the limit makes CMD
reclaim its own pages (direct reclaim runs in CMD's tasks), so its evictions are recorded.

Lifecycle (each step undone in reverse on any exit path)::

    check root, tracefs, events, cgroup     -> CaptureError, nothing changed
    mkdir cgroup, set limit                 rmdir cgroup (leftover tasks moved to the root)
    mkdir instance, buffer, event-fork,     rmdir instance
      events on, tracing off, buffer clear
    set every bdi's read_ahead_kb (if asked) old values written back
    sync; drop_caches = 3
    read bdi read_ahead_kb; mincore of every mapped file (resident_at_start)
    fork; child: join cgroup, set_event_pid, tracing_on = 1; exec CMD
    sample memory.stat, /proc/meminfo Buffers and the cgroup's /proc/PID/maps every
      sample_interval until CMD exits (SIGINT/SIGTERM forwarded)
    tracing_on = 0; read stats and the page cache's folio sizes; stream ``trace`` ->
      NAME.trace.zst; write NAME.json

The memory cgroup is v2 where a cgroup2 hierarchy has the memory controller enabled for its
children (``memory`` in the root's cgroup.subtree_control), else v1 (a ``cgroup`` mount with
the memory option). Sidecar ``kernel`` fields come from the cgroup's memory.stat at the end:

==========================  ==============================  ==================================
sidecar field               cgroup v1                       cgroup v2
==========================  ==============================  ==================================
cache                       cache (bytes)                   file (bytes)
inactive_file, active_file  same name (bytes)               same name (bytes)
cache_peak                  max of ``cache`` sampled        max of ``file`` sampled
pgmajfault                  pgmajfault                      pgmajfault
workingset_refault_file     workingset_refault_file, else   workingset_refault_file
                            delta of /proc/vmstat (global)
pgpgin, pgpgout             pgpgin, pgpgout (pages charged  delta of /proc/vmstat pgpgin /
                            and uncharged)                  pgpgout in pages (global block
                                                            I/O: v2 has no charge counters)
==========================  ==============================  ==================================

Seven more sidecar fields (DESIGN.md 5 allows more) say what a model replaying the access
events cannot learn from them, and would otherwise get wrong:

``read_ahead_kb``: ``{"M:m": KiB}``
    ``/sys/class/bdi/M:m/read_ahead_kb`` of every device whose inodes appear in the filemap
    events (devices without a bdi entry, such as the block-device inodes' 0:3, are left
    out), read just before CMD starts. It sets the readahead window sizes (ra_pages), and a
    machine's value can be far from the kernel default of 128 KiB (8192 on this one's vda).

``resident_at_start``: ``{"M:m:inohex": [[first_page, npages], ...]}``
    The pages in the page cache, right after drop_caches and just before CMD starts, of every
    regular file then mapped by any process of the machine, the recorder's own included (its
    python and libraries). drop_caches cannot drop mapped pages, so libc, ld.so, the shell
    and the like stay resident; they are charged to other cgroups, so CMD hits them without
    the kernel inserting them and the capture's memcg reclaim never evicts them. A model that
    starts from an empty cache inserts them instead, which inflated modelled insertions by
    10-15% on the captures of captures/. Keys are spelled as the trace prints dev and ino
    (``dev=254:0 ino=52db4``: decimal major:minor, inode in lowercase hex), the dev being the
    /proc/PID/maps column (the inode's superblock s_dev, as the tracepoints print it).
    Residency comes from mincore(2) on a read-only MAP_SHARED mapping of each file: nothing
    is read and no page is faulted in. Files with no resident page, deleted files,
    non-regular files and files over 4 GiB are left out; runs are sorted, disjoint and in
    units of PAGE_SIZE pages.

``exec_mappings``: ``{"M:m:inohex": [[vm_pgoff, npages], ...]}``
    The executable file mappings (``x`` in /proc/PID/maps: program text, shared libraries'
    text) of CMD's processes, read at every sample while CMD runs, as file page ranges,
    merged. The filemap events do not say whether a fault came through a VM_EXEC mapping,
    yet the kernel treats those differently: a fault miss reads forward within the VMA
    rather than around the fault (Linux 6.16+), and reclaim activates young executable
    folios at once and keeps them active while young. A process that lives less than one
    sample interval (10 ms by default) can be missed; its binary is usually mapped by a
    longer-lived process of the same command too.

``cow_mappings``: ``{"M:m:inohex": [[first_page, npages], ...]}``
    For each file of ``exec_mappings`` (programs and shared libraries), the file pages of its
    writable PT_LOAD segments (.data, .got, the RELRO part before ld.so protects it), read
    from the ELF program headers after CMD exits. Processes map them private and writable and
    copy them on the first write (do_cow_fault(), wp_page_copy()): the page-cache folio is
    read but does not stay mapped, so reclaim finds it unreferenced, where a fault event alone
    would suggest a mapped, young page.

``paths``: ``{"M:m:inohex": "/path"}``
    The path of every regular file that CMD's processes had mapped or open at a sample
    (/proc/PID/maps, /proc/PID/fd), so that per-file results (``tagcache validate
    --by-file``) can name files. Files opened and closed between two samples are missed.

``buffers_growth_peak``: bytes
    The most that /proc/meminfo ``Buffers`` (nr_blockdev_pages(): the page cache of the block
    devices themselves, i.e. filesystem metadata: ext4 inode-table blocks, directory blocks,
    extent and bitmap blocks) rose above its value when CMD started, sampled with the
    cgroup's cache. Those pages are charged to CMD's cgroup and compete with file data for
    the limit, but have no access events, so a model cannot see them; this is how much room
    they took (``tagcache validate --minus-metadata``). Buffers is system-wide, so metadata
    read by other activity on the machine while CMD runs adds to it; on an idle machine it
    equalled the peak of the capture's own block-device add and delete events in five
    captures of six, and a short run's peak can fall between two samples (mini-grep, 0.1 s:
    465 pages against 520; captures/README.md).

``folio_orders``: ``{"order": pages}``
    The pages of the cgroup's page cache when CMD has exited, by the order of the folio
    holding them (/proc/kpagecgroup and /proc/kpageflags, see kpageflags.py; left out where
    those cannot be read). Any order above 0 says the traced filesystem gives its files large
    folios (ext4 since Linux 6.16), which ``tagcache validate`` then models: readahead grows
    them, and reclaim activates a mapped one at its first scan (more than one young PTE).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import Any

import zstandard

from tagcache.errors import CaptureError
from tagcache.workloads.kpageflags import page_cache_folio_orders

MIB = 1 << 20
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
PROC_MOUNTS = Path("/proc/self/mounts")
PROC_VMSTAT = Path("/proc/vmstat")
PROC_MEMINFO = Path("/proc/meminfo")
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
PROC = Path("/proc")
SYSFS_BDI = Path("/sys/class/bdi")

RESIDENT_MAX_FILE_BYTES = 4 << 30
"""Files bigger than this are left out of ``resident_at_start`` (bounds the mincore work)."""
RESIDENT_MAX_FILES = 10_000
"""At most this many mapped files are looked at (a few hundred is usual)."""

FILEMAP_EVENTS = ("mm_filemap_get_pages", "mm_filemap_map_pages", "mm_filemap_fault",
                  "mm_filemap_add_to_page_cache", "mm_filemap_delete_from_page_cache")
KMEM_EVENTS = ("mm_page_alloc", "mm_page_free")

DEFAULT_BUFFER_BYTES = 128 * MIB
"""Trace buffer of a capture, all CPUs together (split evenly into per-CPU buffers)."""

PREFIX = "tagcache-record-"
SIDECAR_KERNEL_FIELDS = ("workingset_refault_file", "pgmajfault", "pgpgin", "pgpgout", "cache",
                         "inactive_file", "active_file", "cache_peak")

Progress = Callable[[float, int], None]
"""Called at every sample while CMD runs: (seconds since CMD started, page-cache bytes now)."""


@dataclass
class CaptureResult:
    """What one capture wrote and saw. ``sidecar`` is exactly the NAME.json written."""

    name: str
    trace_path: Path
    sidecar_path: Path
    sidecar: dict[str, Any]
    events: dict[str, int]
    """Lines captured per event name (``mm_filemap_get_pages``: 2127, ...)."""
    cgroup_version: int
    interrupted: int | None = None
    """Signal number if SIGINT/SIGTERM was forwarded to CMD, else None."""
    leftover_pids: list[int] = field(default_factory=list)
    """Processes still in the cgroup when CMD exited, moved to the root cgroup (not killed)."""
    warnings: list[str] = field(default_factory=list)

    @property
    def lost_events(self) -> int:
        return int(self.sidecar["trace_overrun_events"])

    @property
    def exit_code(self) -> int:
        return int(self.sidecar["exit_code"])

    @property
    def seconds(self) -> float:
        return float(self.sidecar["seconds"])

    @property
    def cache_peak(self) -> int:
        return int(self.sidecar["kernel"]["cache_peak"])


# --------------------------------------------------------------------------- small file helpers

def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


def _write(path: Path | str, data: str, *, truncate: bool = False) -> None:
    """One write(2) of ``data``, as ``echo data > path`` does; OSError as the kernel says."""
    flags = os.O_WRONLY | (os.O_TRUNC if truncate else 0)
    fd = os.open(path, flags)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def _parse_kv(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                out[parts[0]] = int(parts[1])
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_pid(name: str) -> int | None:
    """PID in a ``tagcache-record-PID-XXXX`` name, else None."""
    if not name.startswith(PREFIX):
        return None
    pid = name[len(PREFIX):].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def _mounts(text: str | None = None) -> list[tuple[str, Path, set[str]]]:
    """(fstype, mount point, options) of every mount; octal escapes in paths decoded."""
    if text is None:
        text = _read(PROC_MOUNTS)
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 4:
            continue
        where = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), f[1])
        out.append((f[2], Path(where), set(f[3].split(","))))
    return out


# --------------------------------------------------------------------------- residency

_PROT_READ, _MAP_SHARED = 0x1, 0x01
_MAP_FAILED = ctypes.c_void_p(-1).value
_LOW_BIT = bytes(b & 1 for b in range(256))  # mincore: bit 0 of each byte, the rest reserved
_DEV_RE = re.compile(rb" dev[ =](\d+):(\d+) ")


class _Libc:
    """mmap, munmap and mincore of the C library (Python 3.11 has no mmap.mincore)."""

    _lib: ctypes.CDLL | None = None

    @classmethod
    def get(cls) -> ctypes.CDLL:
        if cls._lib is None:
            lib = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            lib.mmap.restype = ctypes.c_void_p
            lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                                 ctypes.c_int, ctypes.c_long]
            lib.munmap.restype = ctypes.c_int
            lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
            lib.mincore.restype = ctypes.c_int
            lib.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
            cls._lib = lib
        return cls._lib


def _oserror(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def resident_runs(fd: int, size: int | None = None) -> list[list[int]]:
    """Runs ``[first_page, npages]`` of the pages of open file ``fd`` in the page cache.

    mincore(2) of a read-only MAP_SHARED mapping of the first ``size`` bytes (default: the
    file's size): the file is not read and no page is faulted in. Pages are PAGE_SIZE.
    """
    if size is None:
        size = os.fstat(fd).st_size
    npages = -(-size // PAGE_SIZE)
    if npages <= 0:
        return []
    libc = _Libc.get()
    addr = libc.mmap(None, size, _PROT_READ, _MAP_SHARED, fd, 0)
    if addr is None or addr == _MAP_FAILED:
        raise _oserror("mmap")
    try:
        vec = ctypes.create_string_buffer(npages)
        if libc.mincore(addr, size, vec) != 0:
            raise _oserror("mincore")
        bits = vec.raw.translate(_LOW_BIT)
    finally:
        libc.munmap(addr, size)
    return [[m.start(), m.end() - m.start()] for m in re.finditer(b"\x01+", bits)]


@dataclass
class _Mapped:
    """One mapping of a file seen in /proc/PID/maps: enough to open that very file."""

    pid: str
    start: int
    end: int
    path: str


def _file_mappings(text: str) -> Iterator[tuple[int, int, int, str, int, int, str, int]]:
    """(major, minor, inode, path, start, end, perms, offset) of each file mapping of a
    /proc/PID/maps text; see parse_maps() for what is left out."""
    for line in text.splitlines():
        f = line.split(maxsplit=5)
        if len(f) < 6 or f[4] == "0" or not f[5].startswith("/"):
            continue
        path = f[5]
        if path.endswith(" (deleted)"):
            continue
        try:
            major, minor = (int(x, 16) for x in f[3].split(":"))
            ino = int(f[4])
            start, end = (int(x, 16) for x in f[0].split("-"))
            offset = int(f[2], 16)
        except ValueError:
            continue
        yield major, minor, ino, path, start, end, f[1], offset


def parse_maps(text: str) -> Iterator[tuple[int, int, int, str, int, int]]:
    """(major, minor, inode, path, start, end) of each file mapping of a /proc/PID/maps text.

    The dev column is hex ``major:minor`` (``fe:00``) and comes back as numbers. Anonymous
    mappings (inode 0), pseudo-files (``[vdso]``, ``anon_inode:...``) and deleted files are
    left out.
    """
    for m in _file_mappings(text):
        yield m[:6]


def exec_maps(text: str) -> Iterator[tuple[str, int, int]]:
    """("M:m:inohex", vm_pgoff, pages) of each executable (``x``) file mapping of a
    /proc/PID/maps text, in PAGE_SIZE pages of the file."""
    for major, minor, ino, _path, start, end, perms, offset in _file_mappings(text):
        if "x" in perms:
            yield f"{major}:{minor}:{ino:x}", offset // PAGE_SIZE, (end - start) // PAGE_SIZE


def elf_writable_pages(fd: int) -> list[list[int]]:
    """``[[first_page, npages], ...]`` of the file that the writable PT_LOAD segments of the
    64-bit little-endian ELF object open at ``fd`` cover (p_offset to p_offset + p_filesz):
    the pages a process maps private and writable, and copies on its first write. [] for
    anything else. (Reads the program headers with struct: two fixed layouts.)"""
    head = os.pread(fd, 1 << 16, 0)
    if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        return []
    phoff, = struct.unpack_from("<Q", head, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
    runs: list[list[int]] = []
    for i in range(phnum):
        at = phoff + i * phentsize
        if phentsize < 56 or at + 56 > len(head):
            break
        p_type, p_flags, p_offset, _va, _pa, p_filesz = struct.unpack_from("<IIQQQQ", head, at)
        if p_type == 1 and p_flags & 2 and p_filesz:              # PT_LOAD, PF_W
            first = p_offset // PAGE_SIZE
            runs.append([first, -(-(p_offset + p_filesz) // PAGE_SIZE) - first])
    return _merge_runs(runs)


def _merge_runs(runs: list[list[int]] | set[tuple[int, int]]) -> list[list[int]]:
    """Sorted runs ``[first, n]`` with overlapping or adjacent ones merged."""
    merged: list[list[int]] = []
    for first, nr in sorted(runs):
        if merged and first <= merged[-1][0] + merged[-1][1]:
            last = merged[-1]
            last[1] = max(last[1], first + nr - last[0])
        else:
            merged.append([first, nr])
    return merged


class ExecMappings:
    """The executable file mappings seen in a set of processes, gathered sample by sample
    (sidecar fields ``exec_mappings`` and ``cow_mappings``), and the path of every file they
    had mapped or open (``paths``)."""

    def __init__(self, proc: Path = PROC) -> None:
        self.proc = proc
        self.seen: dict[str, set[tuple[int, int]]] = {}
        self.where: dict[str, tuple[int, int, int, _Mapped]] = {}
        self.paths: dict[str, str] = {}

    def sample(self, pids: list[int]) -> None:
        for pid in pids:
            self._open_files(pid)
            try:
                text = _read(self.proc / str(pid) / "maps")
            except OSError:  # exited meanwhile
                continue
            for major, minor, ino, path, start, end, perms, offset in _file_mappings(text):
                key = f"{major}:{minor}:{ino:x}"
                self.paths.setdefault(key, path)
                if "x" not in perms:
                    continue
                self.seen.setdefault(key, set()).add((offset // PAGE_SIZE,
                                                      (end - start) // PAGE_SIZE))
                self.where.setdefault(key, (major, minor, ino,
                                            _Mapped(str(pid), start, end, path)))

    def _open_files(self, pid: int) -> None:
        """Paths of the regular files ``pid`` has open (its /proc/PID/fd links)."""
        fd_dir = self.proc / str(pid) / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            return
        for fd in fds:
            try:
                st = os.stat(fd_dir / fd)
                if not S_ISREG(st.st_mode):
                    continue
                key = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}:{st.st_ino:x}"
                if key in self.paths:
                    continue
                # The fd may have been closed and reused between the stat and the readlink
                # (cat reopens fd 3 file after file): keep the path only if it is that file.
                path = os.readlink(fd_dir / fd)
                again = os.stat(path)
                if (again.st_dev, again.st_ino) == (st.st_dev, st.st_ino):
                    self.paths[key] = path
            except OSError:  # closed meanwhile, or the path no longer names it
                continue

    def sorted_paths(self) -> dict[str, str]:
        return {key: self.paths[key] for key in sorted(self.paths, key=_file_order)}

    def runs(self) -> dict[str, list[list[int]]]:
        """``{"M:m:inohex": [[first_page, npages], ...]}``: sorted keys, merged runs."""
        return {key: _merge_runs(self.seen[key]) for key in sorted(self.seen, key=_file_order)}

    def cow_runs(self) -> dict[str, list[list[int]]]:
        """The writable ELF segments of the same files (elf_writable_pages()), for those
        that can still be opened; files without one are left out."""
        out: dict[str, list[list[int]]] = {}
        for key in sorted(self.where, key=_file_order):
            major, minor, ino, m = self.where[key]
            fd = _open_mapped(major, minor, ino, m)
            if fd is None:
                continue
            try:
                runs = elf_writable_pages(fd)
            except OSError:
                continue
            finally:
                os.close(fd)
            if runs:
                out[key] = runs
        return out


def _open_mapped(major: int, minor: int, ino: int, m: _Mapped) -> int | None:
    """A read-only fd of the regular file (major:minor, ino) that ``m`` maps, or None.

    By its path if that is the same file (never opening anything but a regular file: no
    device nodes), else through /proc/PID/map_files (another mount namespace, renamed).
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY

    def same(st: os.stat_result) -> bool:
        return (S_ISREG(st.st_mode) and st.st_ino == ino
                and os.major(st.st_dev) == major and os.minor(st.st_dev) == minor)

    def the_mapped_file(st: os.stat_result) -> bool:  # map_files: the mapping's own file
        return S_ISREG(st.st_mode) and st.st_ino == ino

    for path, check in ((m.path, same),
                        (f"/proc/{m.pid}/map_files/{m.start:x}-{m.end:x}", the_mapped_file)):
        try:
            if not check(os.stat(path)):
                continue
            try:
                fd = os.open(path, flags | os.O_NOATIME)
            except PermissionError:
                fd = os.open(path, flags)
        except OSError:
            continue
        try:
            if check(os.fstat(fd)):
                return fd
        except OSError:
            pass
        os.close(fd)
    return None


def resident_at_start(proc: Path = PROC, max_file_bytes: int = RESIDENT_MAX_FILE_BYTES,
                      max_files: int = RESIDENT_MAX_FILES) -> dict[str, list[list[int]]]:
    """``{"M:m:inohex": runs}`` of every regular file mapped by a process now (sidecar field
    ``resident_at_start``): the files of every /proc/PID/maps, this process's included,
    deduplicated by (dev, ino); files without a resident page are left out."""
    files: dict[tuple[int, int, int], _Mapped] = {}
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            text = _read(pid_dir / "maps")
        except OSError:  # exited meanwhile
            continue
        for major, minor, ino, path, start, end in parse_maps(text):
            key = (major, minor, ino)
            if key not in files and len(files) < max_files:
                files[key] = _Mapped(pid_dir.name, start, end, path)
    out: dict[str, list[list[int]]] = {}
    for (major, minor, ino), m in sorted(files.items()):
        fd = _open_mapped(major, minor, ino, m)
        if fd is None:
            continue
        try:
            size = os.fstat(fd).st_size
            if size > max_file_bytes:
                continue
            runs = resident_runs(fd, size)
        except OSError:
            continue
        finally:
            os.close(fd)
        if runs:
            out[f"{major}:{minor}:{ino:x}"] = runs
    return out


def bdi_read_ahead_kb(sysfs: Path = SYSFS_BDI) -> dict[str, int]:
    """``{"M:m": read_ahead_kb}`` of every backing device named by its device number."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for d in sysfs.iterdir():
            if not re.fullmatch(r"\d+:\d+", d.name):
                continue
            with contextlib.suppress(OSError, ValueError):
                out[d.name] = int(_read(d / "read_ahead_kb"))
    return {d: out[d] for d in sorted(out, key=_dev_order)}


def _dev_order(dev: str) -> tuple[int, ...]:
    return tuple(int(x) for x in dev.split(":"))


def _file_order(key: str) -> tuple[int, ...]:
    """Sort key of "M:m:inohex"."""
    major, minor, ino = key.split(":")
    return int(major), int(minor), int(ino, 16)


# --------------------------------------------------------------------------- tracefs

def find_tracefs(candidates: tuple[Path, ...] | None = None) -> Path:
    """The mounted tracefs directory; CaptureError naming where it looked and how to mount it."""
    candidates = TRACEFS_CANDIDATES if candidates is None else candidates
    for c in candidates:
        if (c / "instances").is_dir() and (c / "events").is_dir():
            return c
    where = " or ".join(str(c) for c in candidates)
    raise CaptureError(f"no tracefs mounted at {where}; mount it with "
                       f"'mount -t tracefs nodev {candidates[0]}'")


class _TraceInstance:
    """A tracefs instance of our own: created configured and off, removed at the end."""

    def __init__(self, tracefs: Path, name: str, events: list[tuple[str, str]],
                 buffer_bytes: int) -> None:
        self.path = tracefs / "instances" / name
        self.events = events
        try:
            os.mkdir(self.path)
        except OSError as e:
            raise CaptureError(f"cannot create tracefs instance {self.path}: "
                               f"{e.strerror}") from None
        try:
            _write(self.path / "tracing_on", "0")
            online = os.sysconf("SC_NPROCESSORS_ONLN") or len(self.cpus()) or 1
            per_cpu_kb = max(4, buffer_bytes // online // 1024)
            try:
                _write(self.path / "buffer_size_kb", str(per_cpu_kb))
            except OSError as e:
                raise CaptureError(f"cannot allocate a trace buffer of {per_cpu_kb} KiB per CPU "
                                   f"({e.strerror}); lower --buffer-size") from None
            _write(self.path / "options" / "event-fork", "1")
            for system, event in events:
                _write(self.path / "events" / system / event / "enable", "1")
            self.clear()
        except BaseException:
            self.remove()
            raise

    def cpus(self) -> list[Path]:
        return sorted(self.path.glob("per_cpu/cpu[0-9]*"))

    def clear(self) -> None:
        _write(self.path / "trace", "", truncate=True)

    def child_files(self) -> tuple[str, str]:
        """set_event_pid and tracing_on, which CMD's process writes itself before exec."""
        return str(self.path / "set_event_pid"), str(self.path / "tracing_on")

    def stop(self) -> None:
        _write(self.path / "tracing_on", "0")

    def stats(self) -> dict[str, int]:
        """Sum over CPUs of per_cpu/cpu*/stats: entries, overrun, dropped events."""
        tot = {"entries": 0, "overrun": 0, "dropped events": 0}
        for cpu in self.cpus():
            try:
                text = _read(cpu / "stats")
            except OSError:  # a CPU that is possible but was never online
                continue
            for line in text.splitlines():
                key, _, val = line.partition(":")
                if key in tot:
                    with contextlib.suppress(ValueError):
                        tot[key] += int(val.split()[0])
        return tot

    def write_trace(self, dest: Path, level: int, check: Callable[[], None] = lambda: None,
                    devices: set[str] | None = None) -> dict[str, int]:
        """Stream the whole ``trace`` file zstd-compressed into ``dest``; lines per event.
        ``devices`` gets the ``M:m`` of every dev the events name."""
        devs: set[bytes] = set()
        keys = {e: f": {e}: ".encode() for _, e in self.events}
        counts = dict.fromkeys(keys, 0)
        cctx = zstandard.ZstdCompressor(level=level, threads=-1)
        with open(self.path / "trace", "rb", buffering=0) as src, open(dest, "wb") as out, \
                cctx.stream_writer(out, closefd=False) as z:
            tail = b""
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                check()
                z.write(chunk)
                buf = tail + chunk
                cut = buf.rfind(b"\n") + 1
                whole, tail = buf[:cut], buf[cut:]
                for e, k in keys.items():
                    counts[e] += whole.count(k)
                if devices is not None:
                    devs.update(_DEV_RE.findall(whole))
            for e, k in keys.items():
                counts[e] += tail.count(k)
            if devices is not None:
                devs.update(_DEV_RE.findall(tail))
        if devices is not None:
            devices.update(f"{int(a)}:{int(b)}" for a, b in devs)
        return counts

    def remove(self) -> None:
        """Disable our events and remove the instance (retried while the kernel is busy)."""
        if not self.path.is_dir():
            return
        with contextlib.suppress(OSError):
            _write(self.path / "tracing_on", "0")
        for system, event in self.events:
            with contextlib.suppress(OSError):
                _write(self.path / "events" / system / event / "enable", "0")
        _rmdir_retry(self.path)


# --------------------------------------------------------------------------- memory cgroup

def find_memory_cgroup(mounts_text: str | None = None) -> tuple[int, Path]:
    """(version, root) of the memory cgroup hierarchy to use: v2 if its memory controller is
    enabled for children of the cgroup2 root, else v1; CaptureError if neither exists."""
    mounts = _mounts(mounts_text)
    v2_without: list[Path] = []
    for fstype, where, _ in mounts:
        if fstype != "cgroup2":
            continue
        try:
            controllers = _read(where / "cgroup.controllers").split()
            subtree = _read(where / "cgroup.subtree_control").split()
        except OSError:
            continue
        if "memory" in subtree:
            return 2, where
        if "memory" in controllers:
            v2_without.append(where)
    for fstype, where, opts in mounts:
        if fstype == "cgroup" and "memory" in opts and (where / "memory.limit_in_bytes").exists():
            return 1, where
    if v2_without:
        raise CaptureError(f"the memory controller of cgroup2 at {v2_without[0]} is not enabled "
                           f"for child cgroups; run 'echo +memory > "
                           f"{v2_without[0]}/cgroup.subtree_control'")
    raise CaptureError("no memory cgroup: neither a cgroup2 hierarchy with the memory "
                       "controller nor a cgroup v1 memory hierarchy is mounted")


class _Cgroup:
    """A memory cgroup of our own, directly under the hierarchy's root."""

    def __init__(self, version: int, root: Path, name: str, limit_bytes: int) -> None:
        self.version, self.root, self.path = version, root, root / name
        self._stat_fd: int | None = None
        try:
            os.mkdir(self.path)
        except OSError as e:
            raise CaptureError(f"cannot create memory cgroup {self.path}: {e.strerror}") from None
        try:
            limit_file = "memory.max" if version == 2 else "memory.limit_in_bytes"
            try:
                _write(self.path / limit_file, str(limit_bytes))
            except OSError as e:
                raise CaptureError(f"cannot set {self.path / limit_file} to {limit_bytes}: "
                                   f"{e.strerror}") from None
        except BaseException:
            self.remove()
            raise

    @property
    def procs_file(self) -> str:
        return str(self.path / "cgroup.procs")

    def stat(self) -> dict[str, int]:
        if self._stat_fd is None:
            self._stat_fd = os.open(self.path / "memory.stat", os.O_RDONLY)
        os.lseek(self._stat_fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            b = os.read(self._stat_fd, 1 << 16)
            if not b:
                break
            chunks.append(b)
        return _parse_kv(b"".join(chunks).decode())

    def cache_bytes(self, stat: dict[str, int] | None = None) -> int:
        stat = self.stat() if stat is None else stat
        return stat.get("file" if self.version == 2 else "cache", 0)

    def folio_orders(self) -> dict[int, int] | None:
        """Its page cache's pages by folio order (kpageflags.py); None where unreadable."""
        try:
            return page_cache_folio_orders(os.stat(self.path).st_ino)
        except OSError:
            return None

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in _read(self.path / "cgroup.procs").split()]
        except OSError:
            return []

    def move_out(self) -> list[int]:
        """Move every process left in the cgroup to the root cgroup; their pids."""
        moved: list[int] = []
        for _ in range(20):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    _write(self.root / "cgroup.procs", str(pid))
                    if pid not in moved:
                        moved.append(pid)
                except OSError:
                    pass  # exited meanwhile, or a zombie about to be reaped
            time.sleep(0.01)
        return moved

    def remove(self) -> None:
        if self._stat_fd is not None:
            os.close(self._stat_fd)
            self._stat_fd = None
        if self.path.is_dir():
            _rmdir_retry(self.path)


def _rmdir_retry(path: Path, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def remove_stale(tracefs: Path | None, cgroup_root: Path | None) -> list[Path]:
    """Remove instances and empty cgroups left by recorders that died (owner pid gone)."""
    removed: list[Path] = []
    dirs = []
    if tracefs is not None:
        dirs.append(tracefs / "instances")
    if cgroup_root is not None:
        dirs.append(cgroup_root)
    for d in dirs:
        with contextlib.suppress(OSError):
            for p in d.iterdir():
                pid = _owner_pid(p.name)
                if pid is None or pid == os.getpid() or _alive(pid) or not p.is_dir():
                    continue
                with contextlib.suppress(OSError):
                    os.rmdir(p)
                    removed.append(p)
    return removed


# --------------------------------------------------------------------------- signals

class _Signalled(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Signals:
    """SIGINT/SIGTERM during a capture; the handler never raises, so no step is cut in half.

    While CMD runs, the first signal is forwarded to CMD and the next ones become SIGKILL; the
    capture is then written as usual. At any other time the signal is held: :meth:`check`
    (called between setup steps and while the trace is written) abandons the capture by
    raising, cleanup runs to the end, and :func:`record` delivers the signal again with the
    caller's handlers back (KeyboardInterrupt for SIGINT, by default).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.running = False
        self.child: subprocess.Popen[bytes] | None = None
        self.forwarded: list[int] = []
        self.pending: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        for sig in self.SIGNALS:
            old = signal.getsignal(sig)
            if old in (signal.SIG_IGN, None):
                continue
            try:
                signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay the caller's business
                break
            self._old[sig] = old
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def check(self) -> None:
        if self.pending is not None:
            raise _Signalled(self.pending)

    def start(self, child: subprocess.Popen[bytes]) -> None:
        self.child, self.running = child, True
        if self.pending is not None:
            sig, self.pending = self.pending, None
            self._forward(sig)

    def stop(self) -> None:
        self.running = False

    def _forward(self, signum: int) -> None:
        self.forwarded.append(signum)
        sig = signum if len(self.forwarded) == 1 else signal.SIGKILL
        if self.child is not None and self.child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child.pid, sig)

    def _handle(self, signum: int, frame: object) -> None:
        if self.running:
            self._forward(signum)
        elif self.pending is None:
            self.pending = signum


# --------------------------------------------------------------------------- record

def _check_inputs(name: str, limit_bytes: int, cmd: list[str], out_dir: Path,
                  buffer_bytes: int, sample_interval: float, read_ahead_kb: int | None) -> str:
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise CaptureError(f"bad capture name {name!r}: a file name without '/' is expected "
                           f"(NAME.trace.zst and NAME.json are written in the output directory)")
    if not cmd:
        raise CaptureError("no command to record: give it after '--', e.g. "
                           "tagcache record NAME --limit 16MiB -- grep -r x /usr/lib")
    if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int) or limit_bytes < MIB:
        raise CaptureError(f"memory limit {limit_bytes!r} bytes is too small: at least 1 MiB")
    if buffer_bytes < 64 * 1024:
        raise CaptureError(f"trace buffer of {buffer_bytes} bytes is too small: at least 64 KiB")
    if not sample_interval > 0:
        raise CaptureError(f"sample interval must be > 0 seconds, got {sample_interval!r}")
    if read_ahead_kb is not None and (isinstance(read_ahead_kb, bool)
                                      or not isinstance(read_ahead_kb, int) or read_ahead_kb < 0):
        raise CaptureError(f"read_ahead_kb {read_ahead_kb!r}: expected a whole number of KiB >= 0")
    if not out_dir.is_dir():
        raise CaptureError(f"output directory {out_dir} does not exist")
    if not os.access(out_dir, os.W_OK):
        raise CaptureError(f"output directory {out_dir} is not writable")
    exe = shutil.which(cmd[0])
    if exe is None:
        hint = " (options of tagcache record go before '--')" if cmd[0].startswith("-") else ""
        raise CaptureError(f"command not found: {cmd[0]}{hint}")
    return exe


def _compression_level(entries: int) -> int:
    """zstd level by trace size: small captures as small as possible, big ones in seconds."""
    if entries <= 300_000:
        return 19
    if entries <= 3_000_000:
        return 12
    return 6


def _exit_code(returncode: int) -> int:
    """Shell convention: 128 + N when CMD was killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _vmstat() -> dict[str, int]:
    try:
        return _parse_kv(_read(PROC_VMSTAT))
    except OSError:
        return {}


def _buffers_bytes() -> int:
    """/proc/meminfo ``Buffers``: the page cache of every block device (nr_blockdev_pages())."""
    try:
        for line in _read(PROC_MEMINFO).splitlines():
            if line.startswith("Buffers:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class _BuffersGrowth:
    """The most block-device page cache gained since CMD started (``buffers_growth_peak``)."""

    def __init__(self) -> None:
        self.start = _buffers_bytes()
        self.peak = 0

    def sample(self) -> None:
        self.peak = max(self.peak, _buffers_bytes() - self.start)


def _kernel_fields(version: int, stat: dict[str, int], vm0: dict[str, int],
                   vm1: dict[str, int], cache_peak: int) -> dict[str, int]:
    def vm_delta(key: str) -> int:
        return max(0, vm1.get(key, 0) - vm0.get(key, 0))

    kib_per_page = PAGE_SIZE // 1024
    if "workingset_refault_file" in stat:
        refault = stat["workingset_refault_file"]
    else:  # v1 memory.stat of kernels before 5.9: the global counter's delta
        refault = vm_delta("workingset_refault_file") or vm_delta("workingset_refault")
    if version == 1:
        pgpgin, pgpgout = stat.get("pgpgin", 0), stat.get("pgpgout", 0)
        cache = stat.get("cache", 0)
    else:  # v2 memory.stat has no charge counters: global block I/O, KiB -> pages
        pgpgin, pgpgout = vm_delta("pgpgin") // kib_per_page, vm_delta("pgpgout") // kib_per_page
        cache = stat.get("file", 0)
    return {
        "workingset_refault_file": int(refault),
        "pgmajfault": int(stat.get("pgmajfault", 0)),
        "pgpgin": int(pgpgin),
        "pgpgout": int(pgpgout),
        "cache": int(cache),
        "inactive_file": int(stat.get("inactive_file", 0)),
        "active_file": int(stat.get("active_file", 0)),
        "cache_peak": int(max(cache_peak, cache)),
    }


def sidecar_json(sidecar: dict[str, Any]) -> str:
    """The sidecar's text: objects one member a line (as ``json.dumps(indent=1)``), lists of
    numbers such as residency runs on one line each."""
    def dump(v: Any, depth: int) -> str:
        if isinstance(v, dict) and v:
            pad = " " * (depth + 1)
            items = ",\n".join(f"{pad}{json.dumps(k)}: {dump(x, depth + 1)}"
                               for k, x in v.items())
            return "{\n" + items + "\n" + " " * depth + "}"
        return json.dumps(v)
    return dump(sidecar, 0) + "\n"


def _drop_caches() -> None:
    os.sync()
    try:
        _write(DROP_CACHES, "3")
    except OSError as e:
        raise CaptureError(f"cannot drop caches ({DROP_CACHES}: {e.strerror})") from None


def _enter_cgroup_and_trace(procs: str, event_pid: str, tracing_on: str) -> Callable[[], None]:
    """The child's last steps before exec: only os.* calls (safe after fork)."""
    def enter() -> None:
        pid = str(os.getpid()).encode()
        for path, data, flags in ((procs, pid, os.O_WRONLY),
                                  (event_pid, pid, os.O_WRONLY | os.O_TRUNC),
                                  (tracing_on, b"1", os.O_WRONLY)):
            fd = os.open(path, flags)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
    return enter


def _stop_child(child: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; reaps the child."""
    if child.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        child.wait()


@contextlib.contextmanager
def _temp_output(final: Path) -> Iterator[Path]:
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        yield tmp
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def record(name: str, limit_bytes: int, cmd: list[str], *, with_alloc: bool = False,
           out_dir: Path = Path("."), drop_caches: bool = True, sample_interval: float = 0.01,
           progress: Progress | None = None, buffer_bytes: int = DEFAULT_BUFFER_BYTES,
           compression_level: int | None = None,
           read_ahead_kb: int | None = None) -> CaptureResult:
    """Run ``cmd`` under a ``limit_bytes`` memory cgroup and capture the page cache's events.

    Writes ``out_dir/NAME.trace.zst`` and ``out_dir/NAME.json`` (DESIGN.md section 5) and
    returns what was written. ``buffer_bytes`` is the trace buffer of all CPUs together;
    ``compression_level`` is zstd's (default: 19 for small traces, lower for big ones).
    ``read_ahead_kb`` sets every backing device's read_ahead_kb for the capture (CMD's and
    every other process's I/O alike) and puts the old values back afterwards.
    CaptureError when the capture cannot be made here (not root, no tracefs, no memory
    cgroup, bad name, size or command); nothing is changed then. A non-zero exit of CMD is
    not an error: it is recorded in ``exit_code`` (128 + N when killed by signal N).
    SIGINT/SIGTERM while CMD runs are forwarded to it and the capture is written as usual
    (``interrupted`` says which signal); at any other time they abandon the capture, undo
    everything, and are delivered again once the caller's handlers are back.
    """
    out_dir = Path(out_dir)
    cmd = [str(c) for c in cmd]
    exe = _check_inputs(name, limit_bytes, cmd, out_dir, buffer_bytes, sample_interval,
                        read_ahead_kb)
    if os.geteuid() != 0:
        raise CaptureError("tagcache record must run as root (it uses tracefs, a memory cgroup "
                           "and drop_caches)")
    tracefs = find_tracefs()
    events = [("filemap", e) for e in FILEMAP_EVENTS]
    if with_alloc:
        events += [("kmem", e) for e in KMEM_EVENTS]
    for system, event in events:
        if not (tracefs / "events" / system / event).is_dir():
            raise CaptureError(f"this kernel has no tracepoint {system}/{event} "
                               f"({tracefs / 'events' / system} has no {event})")
    version, cg_root = find_memory_cgroup()
    remove_stale(tracefs, cg_root)

    job = _Job(name=name, limit_bytes=limit_bytes, cmd=cmd, exe=exe, events=events,
               tracefs=tracefs, cgroup_version=version, cgroup_root=cg_root,
               unique=f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}",
               trace_path=out_dir / f"{name}.trace.zst", sidecar_path=out_dir / f"{name}.json",
               drop_caches=drop_caches, sample_interval=sample_interval, progress=progress,
               buffer_bytes=buffer_bytes, compression_level=compression_level,
               read_ahead_kb=read_ahead_kb)
    sigs = _Signals()
    abandoned: int | None = None
    with sigs:
        try:
            result = _run(job, sigs)
        except _Signalled as s:
            abandoned = s.signum
        else:
            abandoned = sigs.pending
    if abandoned is None:
        return result
    os.kill(os.getpid(), abandoned)  # the caller's handler now; SIGINT: KeyboardInterrupt
    time.sleep(0.01)
    raise CaptureError(f"capture {name} abandoned on {signal.Signals(abandoned).name}")


@dataclass
class _Job:
    name: str
    limit_bytes: int
    cmd: list[str]
    exe: str
    events: list[tuple[str, str]]
    tracefs: Path
    cgroup_version: int
    cgroup_root: Path
    unique: str
    trace_path: Path
    sidecar_path: Path
    drop_caches: bool
    sample_interval: float
    progress: Progress | None
    buffer_bytes: int
    compression_level: int | None
    read_ahead_kb: int | None


class _ReadAhead:
    """Every backing device's read_ahead_kb set for a capture, and put back."""

    def __init__(self, kb: int, sysfs: Path = SYSFS_BDI) -> None:
        self.saved: dict[Path, str] = {}
        for dev, old in bdi_read_ahead_kb(sysfs).items():
            path = sysfs / dev / "read_ahead_kb"
            try:
                _write(path, str(kb))
            except OSError as e:
                self.restore()
                raise CaptureError(f"cannot set {path} to {kb}: {e.strerror}") from None
            self.saved[path] = str(old)

    def restore(self) -> list[str]:
        errors = []
        for path, old in self.saved.items():
            try:
                _write(path, old)
            except OSError as e:
                errors.append(f"could not restore {path} to {old}: {e.strerror}")
        self.saved.clear()
        return errors


def _run(job: _Job, sigs: _Signals) -> CaptureResult:
    cgroup: _Cgroup | None = None
    inst: _TraceInstance | None = None
    child: subprocess.Popen[bytes] | None = None
    ra_set: _ReadAhead | None = None
    try:
        cgroup = _Cgroup(job.cgroup_version, job.cgroup_root, job.unique, job.limit_bytes)
        sigs.check()
        inst = _TraceInstance(job.tracefs, job.unique, job.events, job.buffer_bytes)
        sigs.check()
        if job.read_ahead_kb is not None:
            ra_set = _ReadAhead(job.read_ahead_kb)
            sigs.check()
        if job.drop_caches:
            _drop_caches()
            sigs.check()
        read_ahead = bdi_read_ahead_kb()
        resident = resident_at_start()
        sigs.check()
        vm0 = _vmstat()
        inst.clear()
        cache_peak = cgroup.cache_bytes()
        buffers = _BuffersGrowth()
        exec_seen = ExecMappings()
        event_pid, tracing_on = inst.child_files()
        enter = _enter_cgroup_and_trace(cgroup.procs_file, event_pid, tracing_on)
        t0 = time.monotonic()
        try:
            child = subprocess.Popen(job.cmd, executable=job.exe, preexec_fn=enter)
        except subprocess.SubprocessError as e:
            raise CaptureError(f"could not start {job.cmd[0]} inside cgroup {cgroup.path} with "
                               f"tracing on ({e})") from None
        except OSError as e:
            raise CaptureError(f"could not start {job.cmd[0]}: {e.strerror}") from None
        sigs.start(child)
        while True:
            try:
                returncode = child.wait(timeout=job.sample_interval)
                break
            except subprocess.TimeoutExpired:
                now = cgroup.cache_bytes()
                cache_peak = max(cache_peak, now)
                buffers.sample()
                exec_seen.sample(cgroup.pids())
                if job.progress is not None:
                    job.progress(time.monotonic() - t0, now)
        seconds = time.monotonic() - t0
        sigs.stop()
        inst.stop()
        stat = cgroup.stat()
        buffers.sample()
        orders = cgroup.folio_orders()
        vm1 = _vmstat()
        leftover = cgroup.pids()
        tstats = inst.stats()
        lost = tstats["overrun"] + tstats["dropped events"]
        level = job.compression_level
        if level is None:
            level = _compression_level(tstats["entries"])
        devices: set[str] = set()
        with _temp_output(job.trace_path) as tmp:
            counts = inst.write_trace(tmp, level, sigs.check, devices)
            os.replace(tmp, job.trace_path)
        for dev in devices - read_ahead.keys():  # a device that appeared while CMD ran
            with contextlib.suppress(OSError, ValueError):
                read_ahead[dev] = int(_read(SYSFS_BDI / dev / "read_ahead_kb"))
        limit = job.limit_bytes
        sidecar = {
            "name": job.name,
            "limit_mib": limit // MIB if limit % MIB == 0 else limit / MIB,
            "seconds": seconds,
            "trace_overrun_events": int(lost),
            "command": shlex.join(job.cmd),
            "exit_code": _exit_code(returncode),
            "kernel": _kernel_fields(job.cgroup_version, stat, vm0, vm1, cache_peak),
            "read_ahead_kb": {d: read_ahead[d] for d in sorted(devices & read_ahead.keys(),
                                                               key=_dev_order)},
            "resident_at_start": resident,
            "exec_mappings": exec_seen.runs(),
            "cow_mappings": exec_seen.cow_runs(),
            "paths": exec_seen.sorted_paths(),
            "buffers_growth_peak": int(buffers.peak),
        }
        if orders is not None:
            sidecar["folio_orders"] = {str(k): v for k, v in orders.items()}
        with _temp_output(job.sidecar_path) as tmp:
            tmp.write_text(sidecar_json(sidecar))
            os.replace(tmp, job.sidecar_path)
        warnings = []
        if lost:
            warnings.append(f"{lost} events were lost; raise --buffer-size")
        if leftover:
            warnings.append(f"{len(leftover)} processes of the command were still running when "
                            f"it exited; moved to the root cgroup (not killed): "
                            f"{' '.join(map(str, leftover))}")
        return CaptureResult(name=job.name, trace_path=job.trace_path,
                             sidecar_path=job.sidecar_path, sidecar=sidecar, events=counts,
                             cgroup_version=job.cgroup_version,
                             interrupted=sigs.forwarded[0] if sigs.forwarded else None,
                             leftover_pids=leftover, warnings=warnings)
    finally:
        sigs.stop()
        errors: list[str] = []
        if child is not None:
            _stop_child(child)
        if ra_set is not None:
            errors += ra_set.restore()
        if inst is not None:
            try:
                inst.remove()
            except OSError as e:
                errors.append(f"could not remove tracefs instance {inst.path}: {e.strerror}")
        if cgroup is not None:
            cgroup.move_out()
            try:
                cgroup.remove()
            except OSError as e:
                errors.append(f"could not remove cgroup {cgroup.path}: {e.strerror}")
        if errors:
            raise CaptureError("; ".join(errors))
