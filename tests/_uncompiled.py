"""Tests that break the engine on purpose: a test that replaces an engine step function
(monkeypatch) only reaches it in the uncompiled engine, where every step function is the Python
function it is compiled from and calls the others through its module's globals
(engine/flat.py); such tests are marked :func:`uncompiled` and run, from the file's own
``test_broken_engine_uncompiled``, by :func:`run_uncompiled` in a subprocess with
NUMBA_DISABLE_JIT=1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

UNCOMPILED = os.environ.get("NUMBA_DISABLE_JIT") == "1"
"""The engine runs as plain Python (engine/flat.py): a test may replace a step function."""

_SKIP_COMPILED = pytest.mark.skipif(
    not UNCOMPILED, reason="breaks a step function: runs under NUMBA_DISABLE_JIT=1, "
    "from the file's test_broken_engine_uncompiled")


UNCOMPILED_MARKS = (pytest.mark.uncompiled, _SKIP_COMPILED)
"""The marks of :func:`uncompiled`, for one case of a parametrized test (pytest.param)."""


def uncompiled(test):
    """Mark a test that replaces an engine step function (monkeypatch), which only the
    uncompiled engine calls through its module's globals; :func:`run_uncompiled` runs it."""
    return pytest.mark.uncompiled(_SKIP_COMPILED(test))


def run_uncompiled(test_file: str, expect: int) -> None:
    """Run the tests of ``test_file`` marked :data:`uncompiled` in a subprocess with
    NUMBA_DISABLE_JIT=1; every one of the ``expect`` tests must pass."""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    res = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p",
                          "no:cacheprovider", "-m", "uncompiled", str(test_file)],
                         env=env, cwd=Path(test_file).parent.parent, capture_output=True,
                         text=True, timeout=900)
    tail = res.stdout[-4000:] + res.stderr[-2000:]
    assert res.returncode == 0, tail
    assert f"{expect} passed" in res.stdout, tail
