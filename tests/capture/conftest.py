"""Fixtures of the capture tests: they run the real recorder, so they need root and tracefs.

If the kernel has tracefs but it is not mounted, the session mounts it at /sys/kernel/tracing
and unmounts it at the end, leaving the machine as it was; so with /run/tagcache, made by the
recorder, if it did not exist and is empty at the end.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _capture_helpers import TRACEFS, Machine, kill_all, machine_state, undo_leftovers

from tagcache.errors import CaptureError
from tagcache.record import STATE_DIR, find_tracefs


@pytest.fixture(scope="session")
def tracefs() -> Iterator[Path]:
    """The tracefs directory, mounted for the session if the kernel has it unmounted."""
    had_state_dir = STATE_DIR.exists()
    try:
        found: Path | None = find_tracefs()
    except CaptureError:
        found = None
    if found is None:
        r = subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"tracefs is not mounted and mounting it failed: {r.stderr.strip()}")
    try:
        yield found or TRACEFS
    finally:
        if found is None:
            subprocess.run(["umount", str(TRACEFS)], check=False)
        if not had_state_dir:
            with contextlib.suppress(OSError):
                os.rmdir(STATE_DIR)


@pytest.fixture
def clean_machine(tracefs: Path) -> Iterator[Machine]:
    """Around each test: the machine as it was after, whatever the test did. The teardown
    kills the test's processes, undoes what they left (instances, cgroups, state files,
    read_ahead_kb), and then fails the test if there was anything to undo."""
    m = Machine(tracefs)
    before = machine_state(tracefs, m.owners)
    yield m
    kill_all(m.pids)
    found = undo_leftovers(tracefs, m.owners, before["read_ahead_kb"])  # type: ignore[arg-type]
    after = machine_state(tracefs, m.owners)
    assert not found, f"the test left these behind (now removed): {found}"
    assert after == before
