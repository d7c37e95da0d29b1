"""The capture's memory cgroup: CMD runs under the limit in a cgroup of its own, so that it
reclaims its own pages (direct reclaim runs in CMD's tasks and is traced) and its memory.stat
counts only CMD. Made directly under the hierarchy's root, recorded in the state file before
it is made; on exit any process left in it is moved to the root cgroup (not killed) and it is
removed.

v2 is used where a cgroup2 hierarchy has the memory controller enabled for its children
(``memory`` in the root's cgroup.subtree_control), else v1 (a ``cgroup`` mount with the memory
option)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tagcache.errors import CaptureError
from tagcache.record.kpageflags import page_cache_folio_orders
from tagcache.record.util import mounts, parse_kv, read, rmdir_retry, write

if TYPE_CHECKING:
    from tagcache.record.state import StateFile

STATE_KEY = "cgroup"
"""Key of the state file: ``{"path": the cgroup, "root": its hierarchy's root}``."""


def find_memory_cgroup(mounts_text: str | None = None) -> tuple[int, Path]:
    """(version, root) of the memory cgroup hierarchy to use: v2 if its memory controller is
    enabled for children of the cgroup2 root, else v1; CaptureError if neither exists."""
    mounted = mounts(mounts_text)
    v2_without: list[Path] = []
    for fstype, where, _ in mounted:
        if fstype != "cgroup2":
            continue
        try:
            controllers = read(where / "cgroup.controllers").split()
            subtree = read(where / "cgroup.subtree_control").split()
        except OSError:
            continue
        if "memory" in subtree:
            return 2, where
        if "memory" in controllers:
            v2_without.append(where)
    for fstype, where, opts in mounted:
        if fstype == "cgroup" and "memory" in opts and (where / "memory.limit_in_bytes").exists():
            return 1, where
    if v2_without:
        raise CaptureError(f"the memory controller of cgroup2 at {v2_without[0]} is not enabled "
                           f"for child cgroups; run 'echo +memory > "
                           f"{v2_without[0]}/cgroup.subtree_control'")
    raise CaptureError("no memory cgroup: neither a cgroup2 hierarchy with the memory "
                       "controller nor a cgroup v1 memory hierarchy is mounted")


def cgroup_pids(path: Path) -> list[int]:
    try:
        return [int(p) for p in read(path / "cgroup.procs").split()]
    except OSError:
        return []


def move_out(path: Path, root: Path) -> list[int]:
    """Move every process left in cgroup ``path`` to the ``root`` cgroup; their pids."""
    moved: list[int] = []
    for _ in range(20):
        pids = cgroup_pids(path)
        if not pids:
            break
        for pid in pids:
            try:
                write(root / "cgroup.procs", str(pid))
                if pid not in moved:
                    moved.append(pid)
            except OSError:
                pass  # exited meanwhile, or a zombie about to be reaped
        time.sleep(0.01)
    return moved


def remove_cgroup(path: Path, root: Path) -> list[int]:
    """Processes moved to ``root``, then cgroup ``path`` removed; the pids moved. Nothing
    happens if it is gone; OSError if it stays."""
    if not path.is_dir():
        return []
    moved = move_out(path, root)
    rmdir_retry(path)
    return moved


class MemoryCgroup:
    """A memory cgroup of our own with ``limit_bytes`` as its limit."""

    def __init__(self, version: int, root: Path, name: str, limit_bytes: int,
                 state: StateFile) -> None:
        self.version, self.root, self.path = version, root, root / name
        self.limit_bytes = limit_bytes
        self.state = state
        self._stat_fd: int | None = None
        self._usage_fd: int | None = None
        self.leftover: list[int] = []
        """Processes still in it when it was removed, moved to the root cgroup."""

    def __enter__(self) -> MemoryCgroup:
        self.state.set(STATE_KEY, {"path": str(self.path), "root": str(self.root)})
        try:
            os.mkdir(self.path)
        except OSError as e:
            self.state.drop(STATE_KEY)
            raise CaptureError(f"cannot create memory cgroup {self.path}: {e.strerror}") from None
        try:
            limit_file = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
            try:
                write(self.path / limit_file, str(self.limit_bytes))
            except OSError as e:
                raise CaptureError(f"cannot set {self.path / limit_file} to {self.limit_bytes}: "
                                   f"{e.strerror}") from None
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in (self._stat_fd, self._usage_fd):
            if fd is not None:
                os.close(fd)
        self._stat_fd = self._usage_fd = None
        try:
            self.leftover = remove_cgroup(self.path, self.root)
        except OSError as e:
            self.state.failed(f"could not remove cgroup {self.path}: {e.strerror}")
        else:
            self.state.drop(STATE_KEY)

    @property
    def procs_file(self) -> str:
        return str(self.path / "cgroup.procs")

    @staticmethod
    def _read_fd(fd: int) -> str:
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks).decode()

    def stat(self) -> dict[str, int]:
        """memory.stat (kept open: read at every sample)."""
        if self._stat_fd is None:
            self._stat_fd = os.open(self.path / "memory.stat", os.O_RDONLY)
        return parse_kv(self._read_fd(self._stat_fd))

    def cache_bytes(self, stat: dict[str, int] | None = None) -> int:
        """Its page cache: v1 ``cache``, v2 ``file`` of memory.stat."""
        stat = self.stat() if stat is None else stat
        return stat.get("file" if self.version == 2 else "cache", 0)

    def anon_bytes(self, stat: dict[str, int] | None = None) -> int:
        """Its anonymous memory: v2 ``anon``, v1 ``rss`` of memory.stat. v1 ``rss``
        (NR_ANON_MAPPED) counts the pages of anonymous THPs too, so ``rss_huge`` is not added:
        on Linux 6.18 a cgroup holding 16 MiB of THPs showed rss = rss_huge = 16 MiB."""
        stat = self.stat() if stat is None else stat
        return stat.get("anon" if self.version == 2 else "rss", 0)

    def usage_bytes(self) -> int:
        """All that is charged to it (v1 memory.usage_in_bytes, v2 memory.current: page cache,
        anonymous and kernel memory, per-CPU charge stock); kept open, read at every sample."""
        if self._usage_fd is None:
            name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
            self._usage_fd = os.open(self.path / name, os.O_RDONLY)
        try:
            return int(self._read_fd(self._usage_fd))
        except ValueError:
            return 0

    def folio_orders(self) -> dict[int, int] | None:
        """Its page cache's pages by folio order (kpageflags.py); None where unreadable."""
        try:
            return page_cache_folio_orders(os.stat(self.path).st_ino)
        except OSError:
            return None

    def pids(self) -> list[int]:
        return cgroup_pids(self.path)
