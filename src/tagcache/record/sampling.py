"""Sampling /proc and the cgroup while CMD runs, every ``sample_interval``: the cgroup's page
cache (its peak is the sidecar's ``cache_peak``), /proc/meminfo ``Buffers`` (filesystem
metadata: ``buffers_growth_peak``) and the maps and open files of CMD's processes
(mappings.py); /proc/vmstat before and after for the counters memory.stat lacks."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tagcache.record.cgroup import MemoryCgroup
from tagcache.record.mappings import ExecMappings
from tagcache.record.util import parse_kv, read

PROC_VMSTAT = Path("/proc/vmstat")
PROC_MEMINFO = Path("/proc/meminfo")

Progress = Callable[[float, int], None]
"""Called at every sample while CMD runs: (seconds since CMD started, page-cache bytes now)."""


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

    def sample(self) -> None:
        self.peak = max(self.peak, buffers_bytes() - self.start)


class Sampler:
    """What is sampled of one capture. Made just before CMD starts (the baselines)."""

    def __init__(self, cgroup: MemoryCgroup, interval: float,
                 progress: Progress | None = None) -> None:
        self.cgroup, self.interval, self.progress = cgroup, interval, progress
        self.vm0 = vmstat()
        self.vm1: dict[str, int] = {}
        self.cache_peak = cgroup.cache_bytes()
        self.buffers = BuffersGrowth()
        self.exec_seen = ExecMappings()
        self.t0 = time.monotonic()

    def watch(self, child: subprocess.Popen[bytes]) -> tuple[int, float]:
        """Sample until ``child`` exits: (its returncode, seconds it ran)."""
        while True:
            try:
                returncode = child.wait(timeout=self.interval)
                break
            except subprocess.TimeoutExpired:
                now = self.cgroup.cache_bytes()
                self.cache_peak = max(self.cache_peak, now)
                self.buffers.sample()
                self.exec_seen.sample(self.cgroup.pids())
                if self.progress is not None:
                    self.progress(time.monotonic() - self.t0, now)
        return returncode, time.monotonic() - self.t0

    def finish(self) -> None:
        """The last samples, once CMD has exited."""
        self.buffers.sample()
        self.vm1 = vmstat()
