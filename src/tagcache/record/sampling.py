"""Sampling /proc and the cgroup while CMD runs, every ``sample_interval``: the cgroup's page
cache (its peak is the sidecar's ``cache_peak``), /proc/meminfo ``Buffers`` (filesystem
metadata: ``buffers_growth_peak``) and the maps and open files of CMD's processes
(mappings.py); /proc/vmstat before and after for the counters memory.stat lacks.

Every sample, one just before CMD starts and one right after it exits also go into the trace:
one line written to the instance's ``trace_marker`` (:func:`marker_line`), which the ring
buffer stamps with the trace's clock between the filemap events. ``set_event_pid`` filters
trace events only, not marker writes: the recorder's own lines are recorded (checked on
Linux 6.18). The first one is written by CMD's process itself just after it turns tracing on
and just before exec (command.py), from values the recorder read a moment before; the
recorder writes the others, the last before it turns tracing off. Their count is the
sidecar's ``cgroup_samples``; traces/ftrace.py reads them as Op.CGROUP_SAMPLE rows.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tagcache.record.cgroup import MemoryCgroup
from tagcache.record.mappings import ExecMappings
from tagcache.record.util import parse_kv, read

PROC_VMSTAT = Path("/proc/vmstat")
PROC_MEMINFO = Path("/proc/meminfo")

MARKER_TAG = "tagcache_sample"
"""What a marker line starts with, before ``: file=...``."""

Progress = Callable[[float, int], None]
"""Called at every sample while CMD runs: (seconds since CMD started, page-cache bytes now)."""


def marker_line(file: int, anon: int, usage: int, buffers: int) -> bytes:
    """The text of one sample in the trace (bytes each): the cgroup's page cache, its
    anonymous memory, all that is charged to it, and Buffers growth since CMD started."""
    return (f"{MARKER_TAG}: file={file} anon={anon} usage={usage} buffers={buffers}\n"
            .encode())


def vmstat() -> dict[str, int]:
    try:
        return parse_kv(read(PROC_VMSTAT))
    except OSError:
        return {}


def buffers_bytes() -> int:
    """/proc/meminfo ``Buffers``: the page cache of every block device (nr_blockdev_pages())."""
    try:
        for line in read(PROC_MEMINFO).splitlines():
            if line.startswith("Buffers:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class BuffersGrowth:
    """The most block-device page cache gained since CMD started (``buffers_growth_peak``)."""

    def __init__(self) -> None:
        self.start = buffers_bytes()
        self.peak = 0

    def sample(self) -> int:
        """The growth now (bytes, >= 0)."""
        now = max(0, buffers_bytes() - self.start)
        self.peak = max(self.peak, now)
        return now


class Sampler:
    """What is sampled of one capture. Made just before CMD starts (the baselines), with the
    instance's ``trace_marker`` (kept open until :meth:`close`) where every sample goes."""

    def __init__(self, cgroup: MemoryCgroup, interval: float,
                 progress: Progress | None = None, marker: Path | None = None) -> None:
        self.cgroup, self.interval, self.progress = cgroup, interval, progress
        self.vm0 = vmstat()
        self.vm1: dict[str, int] = {}
        self.cache_peak = self.cache_now = 0
        self.buffers = BuffersGrowth()
        self.exec_seen = ExecMappings()
        self.marker_path = marker
        self._marker_fd = None if marker is None else os.open(marker, os.O_WRONLY | os.O_CLOEXEC)
        self.samples_written = 0
        """Marker lines in the trace: the sidecar's ``cgroup_samples``."""
        self.busy_samples = 0
        """Samples where Buffers had grown by more than the cgroup's whole page cache: other
        processes were reading filesystem metadata (Buffers is system-wide)."""
        self.first_marker = self.sample()
        """The sample just before CMD starts, for CMD's process to write once tracing is on
        (:meth:`started` counts it)."""
        self.t0 = time.monotonic()

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._marker_fd is not None:
            os.close(self._marker_fd)
            self._marker_fd = None

    def sample(self) -> bytes:
        """One sample of the cgroup and Buffers; its marker line."""
        stat = self.cgroup.stat()
        usage = self.cgroup.usage_bytes()
        file = self.cache_now = self.cgroup.cache_bytes(stat)
        self.cache_peak = max(self.cache_peak, file)
        buffers = self.buffers.sample()
        if buffers > file:
            self.busy_samples += 1
        return marker_line(file, self.cgroup.anon_bytes(stat), usage, buffers)

    def mark(self, line: bytes) -> None:
        """``line`` into the trace: one write(2). A failed write is not counted (and does not
        end the capture)."""
        if self._marker_fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._marker_fd, line)
            self.samples_written += 1

    def started(self) -> None:
        """CMD's process wrote :attr:`first_marker` (it runs only if it did)."""
        if self._marker_fd is not None:
            self.samples_written += 1

    def watch(self, child: subprocess.Popen[bytes]) -> tuple[int, float]:
        """Sample until ``child`` exits, then once more: (its returncode, seconds it ran)."""
        while True:
            try:
                returncode = child.wait(timeout=self.interval)
                break
            except subprocess.TimeoutExpired:
                self.mark(self.sample())
                self.exec_seen.sample(self.cgroup.pids())
                if self.progress is not None:
                    self.progress(time.monotonic() - self.t0, self.cache_now)
        seconds = time.monotonic() - self.t0
        self.mark(self.sample())
        return returncode, seconds

    def finish(self) -> None:
        """/proc/vmstat, once CMD has exited."""
        self.vm1 = vmstat()
