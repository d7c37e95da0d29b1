"""The files CMD's processes map, from /proc/PID/maps and /proc/PID/fd, and the writable
segments of the ELF objects among them: the sidecar fields ``exec_mappings``, ``cow_mappings``
and ``paths`` (schema.py says why a model needs each). Also opening a mapped file safely, which
residency.py shares."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

from tagcache.record.util import PAGE_SIZE, PROC, read


@dataclass
class Mapped:
    """One mapping of a file seen in /proc/PID/maps: enough to open that very file."""

    pid: str
    start: int
    end: int
    path: str


def file_key(major: int, minor: int, ino: int) -> str:
    """A file as the trace names it (``dev=254:0 ino=52db4``): ``"254:0:52db4"``."""
    return f"{major}:{minor}:{ino:x}"


def file_order(key: str) -> tuple[int, ...]:
    """Sort key of "M:m:inohex"."""
    major, minor, ino = key.split(":")
    return int(major), int(minor), int(ino, 16)


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
            yield file_key(major, minor, ino), offset // PAGE_SIZE, (end - start) // PAGE_SIZE


def merge_runs(runs: list[list[int]] | set[tuple[int, int]]) -> list[list[int]]:
    """Sorted runs ``[first, n]`` with overlapping or adjacent ones merged."""
    merged: list[list[int]] = []
    for first, nr in sorted(runs):
        if merged and first <= merged[-1][0] + merged[-1][1]:
            last = merged[-1]
            last[1] = max(last[1], first + nr - last[0])
        else:
            merged.append([first, nr])
    return merged


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
    return merge_runs(runs)


def open_mapped(major: int, minor: int, ino: int, m: Mapped) -> int | None:
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


class ExecMappings:
    """The executable file mappings seen in a set of processes, gathered sample by sample
    (sidecar fields ``exec_mappings`` and ``cow_mappings``), and the path of every file they
    had mapped or open (``paths``)."""

    def __init__(self, proc: Path = PROC) -> None:
        self.proc = proc
        self.seen: dict[str, set[tuple[int, int]]] = {}
        self.where: dict[str, tuple[int, int, int, Mapped]] = {}
        self.paths: dict[str, str] = {}

    def sample(self, pids: list[int]) -> None:
        for pid in pids:
            self._open_files(pid)
            try:
                text = read(self.proc / str(pid) / "maps")
            except OSError:  # exited meanwhile
                continue
            for major, minor, ino, path, start, end, perms, offset in _file_mappings(text):
                key = file_key(major, minor, ino)
                self.paths.setdefault(key, path)
                if "x" not in perms:
                    continue
                self.seen.setdefault(key, set()).add((offset // PAGE_SIZE,
                                                      (end - start) // PAGE_SIZE))
                self.where.setdefault(key, (major, minor, ino,
                                            Mapped(str(pid), start, end, path)))

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
                key = file_key(os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
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
        return {key: self.paths[key] for key in sorted(self.paths, key=file_order)}

    def runs(self) -> dict[str, list[list[int]]]:
        """``{"M:m:inohex": [[first_page, npages], ...]}``: sorted keys, merged runs."""
        return {key: merge_runs(self.seen[key]) for key in sorted(self.seen, key=file_order)}

    def cow_runs(self) -> dict[str, list[list[int]]]:
        """The writable ELF segments of the same files (elf_writable_pages()), for those
        that can still be opened; files without one are left out."""
        out: dict[str, list[list[int]]] = {}
        for key in sorted(self.where, key=file_order):
            major, minor, ino, m = self.where[key]
            fd = open_mapped(major, minor, ino, m)
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
