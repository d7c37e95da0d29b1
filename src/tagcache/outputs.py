"""Writing output files without destroying anything.

A path a user names may be a regular file, nothing yet, a symlink, a character device
(``/dev/null``), a FIFO or ``/dev/stdout``. What happens to each:

    path is                      written how
    missing, or a regular file   atomically: a temporary file in the same directory, renamed
                                 over the path only when complete (a reader never sees half)
    a symlink                    followed: its target is treated as above (dangling: the
                                 target is created)
    a device, FIFO or socket,    opened and written in place: renaming over it would replace
    /dev/stdout, /proc/self/fd/N the node itself (or, for an open file, leave the writer on
    (or a link to one)           an unlinked inode)
    a directory, ""              refused

:func:`check_output` says before a long run whether the path can be written at all (one line,
:class:`OutputError`), by creating and removing a probe file in the directory, which is the
only test that also holds for root on read-only or pseudo file systems (/proc, /sys).
:class:`Output` writes one file; several written together are committed together by their
caller (the recorder renames its trace and sidecar only when both are complete).
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tagcache.errors import TagcacheError


class OutputError(TagcacheError):
    """An output path cannot be written: names the option or file and why."""


def _through_fd(path: Path) -> bool:
    """Does ``path`` name an open file descriptor (/dev/stdout, /dev/fd/N, /proc/PID/fd/N,
    or a symlink chain through one)? Such a file is written in place, whatever it is."""
    p = os.path.abspath(path)
    for _ in range(40):
        parts = Path(p).parts
        if (len(parts) >= 4 and parts[1] == "proc" and parts[3] == "fd") or \
                p.startswith("/dev/fd/") or p in ("/dev/stdout", "/dev/stderr"):
            return True
        if not os.path.islink(p):
            return False
        p = os.path.join(os.path.dirname(p), os.readlink(p))
        p = os.path.abspath(p)
    return False


def _target(path: Path) -> tuple[Path, os.stat_result | None]:
    """Where writing ``path`` lands (symlinks resolved), and its stat, None if missing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Path(os.path.realpath(path)), None
    if stat.S_ISREG(st.st_mode) and not _through_fd(path):
        return Path(os.path.realpath(path)), st
    return path, st


def _in_place(path: Path, st: os.stat_result | None) -> bool:
    return st is not None and (not stat.S_ISREG(st.st_mode) or _through_fd(path))


def writes_in_place(path: str | os.PathLike) -> bool:
    """True when ``path`` is a device, FIFO or socket (or a link to one): written directly."""
    p = Path(path)
    _, st = _target(p)
    return _in_place(p, st) and not stat.S_ISDIR(st.st_mode)


def check_output(path: str | os.PathLike | None, what: str) -> None:
    """Refuse, before any work, an output ``path`` that cannot be written; ``what`` names it
    in the message (``--json``, ``--out-dir``...). None and "-" (standard output) pass."""
    if path is None or str(path) == "-":
        return
    if str(path) == "":
        raise OutputError(f"{what}: empty path")
    p = Path(path)
    real, st = _target(p)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{what} {p}: is a directory")
    if _in_place(p, st):
        if not os.access(p, os.W_OK):
            raise OutputError(f"{what} {p}: not writable")
        return
    parent = real.parent
    if not parent.is_dir():
        raise OutputError(f"{what} {p}: directory {parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".probe", dir=parent)
    except OSError as e:
        raise OutputError(f"{what} {p}: cannot write in {parent}: {e.strerror}") from None
    os.close(fd)
    os.unlink(probe)


class Output:
    """One output file: :attr:`path` to write, :meth:`commit` when complete, :meth:`abort`
    on failure. A regular or missing target is written under a temporary name and renamed
    by commit(); anything else is written in place (commit does nothing)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.requested = Path(path)
        real, st = _target(self.requested)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{self.requested}: is a directory")
        self.in_place = _in_place(self.requested, st)
        self.final = self.requested if self.in_place else real
        self._mode = None if st is None else stat.S_IMODE(st.st_mode)
        if self.in_place:
            self.path = self.final
        else:
            fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
            os.close(fd)
            self.path = Path(tmp)

    def commit(self) -> None:
        if self.in_place:
            return
        if self._mode is not None:
            mode = self._mode                  # an existing file keeps its permissions
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask              # as open() would have made it
        os.chmod(self.path, mode)
        os.replace(self.path, self.final)

    def abort(self) -> None:
        if not self.in_place:
            self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def open_output(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open ``path`` for writing as the table above says ("-" is standard output); the file
    appears complete or not at all, unless it is written in place."""
    if str(path) == "-":
        yield sys.stdout.buffer if "b" in mode else sys.stdout
        return
    out = Output(path)
    if out.in_place:          # appended: /dev/stdout may be a file already holding output
        mode = mode.replace("w", "a")
    try:
        with open(out.path, mode) as fh:
            yield fh
        out.commit()
    except BaseException:
        out.abort()
        raise
