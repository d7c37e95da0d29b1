"""The recorder's tracefs instance: its own ring buffer, event switches, ``set_event_pid`` and
``options/event-fork``, so the top-level tracing state is never written and stays as it was
even if the recorder is killed. Created configured and off; removed on exit.

A capture's events (:func:`capture_events`): the filemap events, required; ext4's
``ext4_da_write_begin``, ``ext4_write_begin`` and ``ext4_evict_inode`` when the kernel has
them (optional: a kernel without ext4's events still records), so a capture carries the
command's writes to ext4 files and its deletions of them (an inode evicted with nlink 0), which
the filemap events do not show (traces/ftrace.py reads them as WRITE and UNLINK rows); the kmem
page allocator events with ``--with-alloc``. All of them are filtered alike, by set_event_pid
and event-fork: the command's process tree only."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import zstandard

from tagcache.errors import CaptureError
from tagcache.record.util import read, rmdir_retry, write

if TYPE_CHECKING:
    from tagcache.record.state import StateFile

TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
FILEMAP_EVENTS = ("mm_filemap_get_pages", "mm_filemap_map_pages", "mm_filemap_fault",
                  "mm_filemap_add_to_page_cache", "mm_filemap_delete_from_page_cache")
KMEM_EVENTS = ("mm_page_alloc", "mm_page_free")
EXT4_EVENTS = ("ext4_da_write_begin", "ext4_write_begin", "ext4_evict_inode")
"""Recorded when the kernel has them: the command's writes (one per folio-sized chunk a write
copies in) and evictions of its ext4 inodes."""
STATE_KEY = "tracefs_instance"
"""Key of the state file: the instance's path, written before it is created."""

_DEV_RE = re.compile(rb" dev[ =](\d+):(\d+) ")


def find_tracefs(candidates: tuple[Path, ...] | None = None) -> Path:
    """The mounted tracefs directory; CaptureError naming where it looked and how to mount it."""
    candidates = TRACEFS_CANDIDATES if candidates is None else candidates
    for c in candidates:
        if (c / "instances").is_dir() and (c / "events").is_dir():
            return c
    where = " or ".join(str(c) for c in candidates)
    raise CaptureError(f"no tracefs mounted at {where}; mount it with "
                       f"'mount -t tracefs nodev {candidates[0]}'")


def capture_events(tracefs: Path, with_alloc: bool) -> list[tuple[str, str]]:
    """(system, event) of a capture: the ext4 events this kernel has, and the others, which
    are required (CaptureError if this kernel lacks one)."""
    events = [("filemap", e) for e in FILEMAP_EVENTS]
    if with_alloc:
        events += [("kmem", e) for e in KMEM_EVENTS]
    for system, event in events:
        if not (tracefs / "events" / system / event).is_dir():
            raise CaptureError(f"this kernel has no tracepoint {system}/{event} "
                               f"({tracefs / 'events' / system} has no {event})")
    return events + [("ext4", e) for e in EXT4_EVENTS
                     if (tracefs / "events" / "ext4" / e / "enable").is_file()]


def remove_instance(path: Path) -> None:
    """Tracing and every event of instance ``path`` off, then the instance removed (retried
    while the kernel is busy). Nothing happens if it is gone; OSError if it stays."""
    if not path.is_dir():
        return
    for switch in ("tracing_on", "events/enable"):
        with contextlib.suppress(OSError):
            write(path / switch, "0")
    rmdir_retry(path)


class TraceInstance:
    """``instances/NAME`` of tracefs, recorded in the state file before it is made."""

    def __init__(self, tracefs: Path, name: str, events: list[tuple[str, str]],
                 buffer_bytes: int, state: StateFile) -> None:
        self.path = tracefs / "instances" / name
        self.events = events
        self.buffer_bytes = buffer_bytes
        self.state = state

    def __enter__(self) -> TraceInstance:
        self.state.set(STATE_KEY, str(self.path))
        try:
            os.mkdir(self.path)
        except OSError as e:
            self.state.drop(STATE_KEY)
            raise CaptureError(f"cannot create tracefs instance {self.path}: "
                               f"{e.strerror}") from None
        try:
            write(self.path / "tracing_on", "0")
            online = os.sysconf("SC_NPROCESSORS_ONLN") or len(self.cpus()) or 1
            per_cpu_kb = max(4, self.buffer_bytes // online // 1024)
            try:
                write(self.path / "buffer_size_kb", str(per_cpu_kb))
            except OSError as e:
                raise CaptureError(f"cannot allocate a trace buffer of {per_cpu_kb} KiB per CPU "
                                   f"({e.strerror}); lower --buffer-size") from None
            write(self.path / "options" / "event-fork", "1")
            write(self.path / "options" / "markers", "1")   # a new instance copies the top's
            for system, event in self.events:
                write(self.path / "events" / system / event / "enable", "1")
            self.clear()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            remove_instance(self.path)
        except OSError as e:
            self.state.failed(f"could not remove tracefs instance {self.path}: {e.strerror}")
        else:
            self.state.drop(STATE_KEY)

    def cpus(self) -> list[Path]:
        return sorted(self.path.glob("per_cpu/cpu[0-9]*"))

    def clear(self) -> None:
        write(self.path / "trace", "", truncate=True)

    def child_files(self) -> tuple[str, str]:
        """set_event_pid and tracing_on, which CMD's process writes itself before exec."""
        return str(self.path / "set_event_pid"), str(self.path / "tracing_on")

    @property
    def marker_file(self) -> Path:
        """trace_marker: a line written there is an entry of this instance's ring buffer
        (``tracing_mark_write: LINE``), set_event_pid or not; refused while tracing is off."""
        return self.path / "trace_marker"

    def stop(self) -> None:
        write(self.path / "tracing_on", "0")

    def stats(self) -> dict[str, int]:
        """Sum over CPUs of per_cpu/cpu*/stats: entries, overrun, dropped events."""
        tot = {"entries": 0, "overrun": 0, "dropped events": 0}
        for cpu in self.cpus():
            try:
                text = read(cpu / "stats")
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
