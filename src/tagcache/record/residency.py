"""What is in the page cache before CMD starts (sidecar field ``resident_at_start``): mincore(2)
of every regular file any process maps, since drop_caches cannot drop mapped pages and CMD
hits them without the kernel inserting them. Nothing is read and no page is faulted in."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from pathlib import Path

from tagcache.record.mappings import Mapped, file_key, open_mapped, parse_maps
from tagcache.record.util import PAGE_SIZE, PROC, read

RESIDENT_MAX_FILE_BYTES = 4 << 30
"""Files bigger than this are left out of ``resident_at_start`` (bounds the mincore work)."""
RESIDENT_MAX_FILES = 10_000
"""At most this many mapped files are looked at (a few hundred is usual)."""

_PROT_READ, _MAP_SHARED = 0x1, 0x01
_MAP_FAILED = ctypes.c_void_p(-1).value
_LOW_BIT = bytes(b & 1 for b in range(256))  # mincore: bit 0 of each byte, the rest reserved


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


def resident_at_start(proc: Path = PROC, max_file_bytes: int = RESIDENT_MAX_FILE_BYTES,
                      max_files: int = RESIDENT_MAX_FILES) -> dict[str, list[list[int]]]:
    """``{"M:m:inohex": runs}`` of every regular file mapped by a process now (sidecar field
    ``resident_at_start``): the files of every /proc/PID/maps, this process's included,
    deduplicated by (dev, ino); files without a resident page are left out."""
    files: dict[tuple[int, int, int], Mapped] = {}
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            text = read(pid_dir / "maps")
        except OSError:  # exited meanwhile
            continue
        for major, minor, ino, path, start, end in parse_maps(text):
            key = (major, minor, ino)
            if key not in files and len(files) < max_files:
                files[key] = Mapped(pid_dir.name, start, end, path)
    out: dict[str, list[list[int]]] = {}
    for (major, minor, ino), m in sorted(files.items()):
        fd = open_mapped(major, minor, ino, m)
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
            out[file_key(major, minor, ino)] = runs
    return out
