"""Shared fixtures: tiny machines (64 MiB of data memory) and tiny file tables."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from _engine import KIB, MIB, System, build_system
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from tagcache.hw.layout import MachineLayout, simple_layout
from tagcache.workloads.events import FileTable

_HYPOTHESIS_HOME: list[str] = []

# In CI (CI=true) every property test draws the same examples each run, so a result cannot
# depend on the luck of the draw; a developer's runs explore new examples every time.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_configure(config):
    """Keep Hypothesis's files (example database, constants cache) out of the source tree."""
    config.addinivalue_line("markers", "uncompiled: runs only under NUMBA_DISABLE_JIT=1")
    _HYPOTHESIS_HOME.append(tempfile.mkdtemp(prefix="tagcache-tests-hypothesis-"))
    set_hypothesis_home_dir(_HYPOTHESIS_HOME[-1])


def pytest_unconfigure(config):
    while _HYPOTHESIS_HOME:
        shutil.rmtree(_HYPOTHESIS_HOME.pop(), ignore_errors=True)


@pytest.fixture
def layout64() -> MachineLayout:
    """64 MiB of tagged data memory, its 2 MiB of tag storage (512 tag pages), 4 KiB blocks."""
    return simple_layout(64 * MIB)


@pytest.fixture
def layout64_8k() -> MachineLayout:
    """As layout64 with block-size 8 KiB: 256 tag blocks of 2 tag pages."""
    return simple_layout(64 * MIB, 8 * KIB)


@pytest.fixture
def tiny_files() -> FileTable:
    """Three files: 64 pages (span 96, room to grow), 32 pages with large folios, 16 pages
    on another device."""
    return FileTable.build(dev=[1, 1, 2], ino=[0x10, 0x11, 0x12], size_pages=[64, 32, 16],
                           span_pages=[96, 32, 16], large_folios=[False, True, False])


@pytest.fixture
def make_system(tiny_files):
    """Factory: ``make_system(files=None, **kw)``; see :func:`build_system`."""

    def make(files: FileTable | None = None, **kw) -> System:
        return build_system(tiny_files if files is None else files, **kw)

    return make
