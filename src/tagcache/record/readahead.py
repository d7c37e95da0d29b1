"""read_ahead_kb of every backing device: read for the sidecar (it sets the kernel's readahead
windows, and a machine's value can be far from the default 128 KiB), and with ``--read-ahead``
set for the capture and put back on exit. The old values go to the state file before the first
one is changed; a value is put back only where it is still the one the recorder set, on the
same device, so that restoring never undoes somebody else's change."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagcache.errors import CaptureError
from tagcache.record.util import read, write

if TYPE_CHECKING:
    from tagcache.record.state import StateFile

SYSFS_BDI = Path("/sys/class/bdi")
SYSFS_DEV_BLOCK = Path("/sys/dev/block")
STATE_KEY = "read_ahead_kb"
"""Key of the state file: ``{"M:m": {"device": name, "old": KiB, "set": KiB}}``."""


def bdi_read_ahead_kb(sysfs: Path | None = None) -> dict[str, int]:
    """``{"M:m": read_ahead_kb}`` of every backing device named by its device number."""
    sysfs = SYSFS_BDI if sysfs is None else sysfs
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for d in sysfs.iterdir():
            if not re.fullmatch(r"\d+:\d+", d.name):
                continue
            with contextlib.suppress(OSError, ValueError):
                out[d.name] = int(read(d / "read_ahead_kb"))
    return {d: out[d] for d in sorted(out, key=dev_order)}


def dev_order(dev: str) -> tuple[int, ...]:
    return tuple(int(x) for x in dev.split(":"))


def device_name(dev: str, dev_block: Path | None = None) -> str:
    """The block device's kernel name (``vda``) of ``M:m``; ``M:m`` itself if it is none."""
    dev_block = SYSFS_DEV_BLOCK if dev_block is None else dev_block
    try:
        return os.path.basename(os.readlink(dev_block / dev))
    except OSError:
        return dev


def restore(entries: dict[str, Any], sysfs: Path | None = None,
            dev_block: Path | None = None) -> tuple[list[str], dict[str, Any], list[str]]:
    """Put back the ``old`` value of each entry (state-file form) where the device still
    exists under the same name and still has the value the recorder ``set``.

    Returns (what was done, one phrase per restored value group; the entries that could not
    be written, to keep; failures, one phrase each). A device that is gone, renamed, already
    back at its old value or changed by someone else is left as it is.
    """
    sysfs = SYSFS_BDI if sysfs is None else sysfs
    dev_block = SYSFS_DEV_BLOCK if dev_block is None else dev_block
    restored: dict[int, list[str]] = {}
    kept: dict[str, Any] = {}
    failures: list[str] = []
    for dev, e in entries.items():
        if not (re.fullmatch(r"\d+:\d+", dev) and isinstance(e, dict)
                and type(e.get("old")) is int and type(e.get("set")) is int):
            continue  # not something this module wrote: touch nothing
        path = sysfs / dev / "read_ahead_kb"
        name = str(e.get("device") or dev)
        if not path.exists() or device_name(dev, dev_block) != name:
            continue
        try:
            now = int(read(path))
        except (OSError, ValueError):
            continue
        if now == e["old"] or now != e["set"]:
            continue
        try:
            write(path, str(e["old"]))
        except OSError as err:
            kept[dev] = e
            failures.append(f"could not restore {path} to {e['old']}: {err.strerror}")
            continue
        restored.setdefault(e["old"], []).append(name)
    done = [f"read_ahead_kb of {' '.join(names)} restored to {old}"
            for old, names in restored.items()]
    return done, kept, failures


class ReadAhead:
    """Every backing device's read_ahead_kb set to ``kb`` while the capture runs."""

    def __init__(self, kb: int, state: StateFile, sysfs: Path | None = None) -> None:
        self.kb, self.state = kb, state
        self.sysfs = SYSFS_BDI if sysfs is None else sysfs
        self.saved: dict[str, Any] = {}

    def __enter__(self) -> ReadAhead:
        with self.state.lock():
            other = self.state.live_owner_of(STATE_KEY)
            if other is not None:
                raise CaptureError(f"--read-ahead: another tagcache record (pid {other}) is "
                                   f"running with read_ahead_kb changed; wait until it ends")
            self.saved = {dev: {"device": device_name(dev), "old": old, "set": self.kb}
                          for dev, old in bdi_read_ahead_kb(self.sysfs).items()}
            self.state.set(STATE_KEY, self.saved)
        for dev in self.saved:
            path = self.sysfs / dev / "read_ahead_kb"
            try:
                write(path, str(self.kb))
            except OSError as e:
                self.__exit__()
                raise CaptureError(f"cannot set {path} to {self.kb}: {e.strerror}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        _, kept, failures = restore(self.saved, self.sysfs)
        for f in failures:
            self.state.failed(f)
        if kept:
            self.state.set(STATE_KEY, kept)
        else:
            self.state.drop(STATE_KEY)
        self.saved = {}
