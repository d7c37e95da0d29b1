"""Small helpers of the recorder: reading and writing kernel pseudo-files, /proc/self/mounts,
removing a busy directory, whether a process lives. One write(2) per value, as ``echo`` does,
because tracefs, cgroup and sysfs files act on each write."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from pathlib import Path

MIB = 1 << 20
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PREFIX = "tagcache-record-"
"""Name prefix of the recorder's tracefs instances and cgroups: ``tagcache-record-PID-XXXXXX``."""

PROC = Path("/proc")
PROC_MOUNTS = Path("/proc/self/mounts")


def read(path: Path | str) -> str:
    with open(path) as f:
        return f.read()


def write(path: Path | str, data: str, *, truncate: bool = False) -> None:
    """One write(2) of ``data``, as ``echo data > path`` does; OSError as the kernel says."""
    flags = os.O_WRONLY | (os.O_TRUNC if truncate else 0)
    fd = os.open(path, flags)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def parse_kv(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, /proc/vmstat) as ints; other lines skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                out[parts[0]] = int(parts[1])
    return out


def mounts(text: str | None = None) -> list[tuple[str, Path, set[str]]]:
    """(fstype, mount point, options) of every mount; octal escapes in paths decoded."""
    if text is None:
        text = read(PROC_MOUNTS)
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 4:
            continue
        where = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), f[1])
        out.append((f[2], Path(where), set(f[3].split(","))))
    return out


def rmdir_retry(path: Path, seconds: float = 3.0) -> None:
    """rmdir, retried while the kernel says EBUSY (a cgroup whose last task is exiting, an
    instance whose buffer is still being read); a missing directory is fine."""
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


def start_time(pid: int, proc: Path = PROC) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks after boot when the process started), which
    tells a process from a later one given the same pid; None when there is no such process
    or it has exited (a zombie waiting for its parent: it can undo nothing any more)."""
    try:
        text = read(proc / str(pid) / "stat")
    except OSError:
        return None
    try:  # the comm field (2) may hold spaces and parentheses: count from the last ')'
        fields = text[text.rindex(")") + 2:].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (ValueError, IndexError):
        return None


def boot_id() -> str:
    """This boot's random id: a state file written before a reboot names nothing alive."""
    try:
        return read("/proc/sys/kernel/random/boot_id").strip()
    except OSError:
        return ""
