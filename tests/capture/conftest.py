"""Fixtures of the capture tests: they run the real recorder, so they need root and tracefs.

If the kernel has tracefs but it is not mounted, the session mounts it at /sys/kernel/tracing
and unmounts it at the end, leaving the machine as it was.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _capture_helpers import TRACEFS, leftover_cgroups, tracing_state

from tagcache.errors import CaptureError
from tagcache.workloads import capture


@pytest.fixture(scope="session")
def tracefs() -> Iterator[Path]:
    """The tracefs directory, mounted for the session if the kernel has it unmounted."""
    try:
        found: Path | None = capture.find_tracefs()
    except CaptureError:
        found = None
    if found is not None:
        yield found
        return
    r = subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"tracefs is not mounted and mounting it failed: {r.stderr.strip()}")
    try:
        yield TRACEFS
    finally:
        subprocess.run(["umount", str(TRACEFS)], check=False)


@pytest.fixture
def clean_machine(tracefs: Path) -> Iterator[Path]:
    """Tracing state before == after and no cgroup of ours left, around each test."""
    before = tracing_state(tracefs)
    assert leftover_cgroups() == []
    yield tracefs
    assert tracing_state(tracefs) == before
    assert leftover_cgroups() == []
