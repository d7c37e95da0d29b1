"""The recorder's state file: what it is about to change on the machine, written before each
change, so that a recorder killed by SIGKILL (or a crash, or the OOM killer) can be undone by
the next one (recover.py).

One file per recorder, ``/run/tagcache/record-PID-START.json`` (the directory made 0700, the
file replaced atomically at every change): ::

    {"format": 1,
     "pid": 1234, "start_time": 56789,      # /proc/PID/stat field 22: tells pid reuse apart
     "boot_id": "...",                      # /proc/sys/kernel/random/boot_id
     "name": "NAME",                        # the capture's name
     "cgroup": {"path": "/sys/fs/cgroup/memory/tagcache-record-1234-0a1b2c",
                "root": "/sys/fs/cgroup/memory"},
     "tracefs_instance": "/sys/kernel/tracing/instances/tagcache-record-1234-0a1b2c",
     "read_ahead_kb": {"254:0": {"device": "vda", "old": 8192, "set": 128}},
     "temporaries": ["/out/.NAME.json.k2j4.tmp", ...]}

A key is added just before its resource is set up and dropped once it is undone; the file is
removed when everything is. Its owner is alive while a process of that pid and start time
exists in the same boot; a live owner's file is never touched by anyone else.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tagcache.errors import CaptureError
from tagcache.record.util import boot_id, start_time

STATE_DIR = Path("/run/tagcache")
FORMAT = 1


def ensure_dir(directory: Path) -> None:
    """``directory`` exists, is a real directory of this user, mode 0700."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise CaptureError(f"cannot create the state directory {directory}: {e.strerror}") \
            from None
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise CaptureError(f"{directory} is not a directory owned by uid {os.geteuid()}; "
                           f"remove it (tagcache record keeps its state files there)")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(directory, 0o700)


@contextlib.contextmanager
def lock(directory: Path | None = None) -> Iterator[None]:
    """Exclusive lock (flock) of the state directory itself: recovery, and changes that must
    not race another recorder's (read_ahead_kb)."""
    directory = STATE_DIR if directory is None else directory
    ensure_dir(directory)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    """The whole of ``data`` as ``path``: a temporary file renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def owner_alive(data: dict[str, Any]) -> bool:
    """The recorder that wrote ``data`` still runs (same boot, pid and start time)."""
    return data.get("boot_id") == boot_id() and start_time(data["pid"]) == data["start_time"]


def problem(data: Any) -> str | None:
    """What makes ``data`` no state file of ours, or None."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return f"not a tagcache record state file of format {FORMAT}"
    for key in ("pid", "start_time"):
        if type(data.get(key)) is not int:
            return f"{key} is not a whole number"
    return None


def state_files(directory: Path | None = None) -> Iterator[tuple[Path, dict[str, Any] | str]]:
    """(path, contents) of every state file in ``directory``; contents is a string saying
    what is wrong when the file cannot be read as one."""
    directory = STATE_DIR if directory is None else directory
    try:
        paths = sorted(directory.glob("record-*.json"))
    except OSError:
        return
    for path in paths:
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:  # removed by its owner meanwhile
            continue
        except (OSError, ValueError) as e:
            yield path, f"unreadable ({e})"
            continue
        bad = problem(data)
        yield path, data if bad is None else bad


def remove_dead_temporaries(directory: Path | None = None) -> None:
    """Remove the half-written ``.record-PID-START.json.tmp`` of recorders no longer alive."""
    directory = STATE_DIR if directory is None else directory
    with contextlib.suppress(OSError):
        for p in directory.glob(".record-*-*.json.tmp"):
            pid, _, started = p.name[len(".record-"):-len(".json.tmp")].partition("-")
            if pid.isdigit() and started.isdigit() and start_time(int(pid)) != int(started):
                p.unlink(missing_ok=True)


class StateFile:
    """This recorder's state file, created on enter and removed on exit once everything it
    lists has been undone. Resources call :meth:`set` before a change, :meth:`drop` once
    undone, :meth:`failed` when they could not undo it: then the file stays (the next
    recorder retries) and exit raises CaptureError naming every failure."""

    def __init__(self, name: str, directory: Path | None = None) -> None:
        self.directory = STATE_DIR if directory is None else directory
        pid = os.getpid()
        started = start_time(pid)
        if started is None:
            raise CaptureError(f"cannot read /proc/{pid}/stat")
        self.path = self.directory / f"record-{pid}-{started}.json"
        self.data: dict[str, Any] = {"format": FORMAT, "pid": pid, "start_time": started,
                                     "boot_id": boot_id(), "name": name}
        self.failures: list[str] = []
        self._fixed = set(self.data)

    def __enter__(self) -> StateFile:
        ensure_dir(self.directory)
        write_atomic(self.path, self.data)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.failures:
            write_atomic(self.path, self.data)
            raise CaptureError("; ".join(self.failures) + f" (what is left is listed in "
                                                          f"{self.path})")
        if set(self.data) == self._fixed:
            self.path.unlink(missing_ok=True)

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return lock(self.directory)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        write_atomic(self.path, self.data)

    def drop(self, key: str) -> None:
        if self.data.pop(key, None) is not None:
            write_atomic(self.path, self.data)

    def failed(self, message: str) -> None:
        self.failures.append(message)

    def live_owner_of(self, key: str) -> int | None:
        """Pid of another running recorder whose state file has ``key``, else None."""
        for path, data in state_files(self.directory):
            if path != self.path and isinstance(data, dict) and key in data \
                    and owner_alive(data):
                return int(data["pid"])
        return None
