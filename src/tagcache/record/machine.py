"""Facts of the machine a capture ran on: the kernel release and each device's filesystem.

Whether a file's mapping supports large folios is decided by its filesystem when the inode is
set up (mapping_set_folio_order_range(): ext4 since 6.16, xfs since 5.18), so a model needs the
filesystem of every traced device and the kernel release (sidecar.large_folio_devices())."""

from __future__ import annotations

import os
from pathlib import Path

PROC_MOUNTINFO = Path("/proc/self/mountinfo")


def kernel_release() -> str:
    """``uname -r``."""
    return os.uname().release


def mount_filesystems(mountinfo: str | None = None) -> dict[str, str]:
    """{'M:m': filesystem type} of every mounted device, from /proc/self/mountinfo (field 3
    is the device, the field after ' - ' the type; the first mount of a device wins)."""
    if mountinfo is None:
        try:
            mountinfo = PROC_MOUNTINFO.read_text()
        except OSError:
            return {}
    out: dict[str, str] = {}
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 3 or not right.split():
            continue
        out.setdefault(fields[2], right.split()[0])
    return out
