"""The command's plain reference counts (engine/nrt.py): freed memory is freed, the counts
are not atomic, and the command's results are the library's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = r"""
import json, sys
import numpy as np
from numba import njit
from numba.core.runtime import rtsys
from tagcache.engine.nrt import plain_refcounts_in_use, use_plain_refcounts

plain = sys.argv[1] == "plain"
if plain:
    assert use_plain_refcounts()

@njit
def churn(n):
    t = 0.0
    for i in range(n):
        a = np.empty(i % 7 + 1)      # allocated and dropped in compiled code
        a[:] = i
        t += a.sum()
    return t

churn(1)                            # compiles; the runtime with it
before = rtsys.get_allocation_stats()
churn(10_000)
after = rtsys.get_allocation_stats()
print(json.dumps({"plain": plain_refcounts_in_use(),
                  "alloc": after.alloc - before.alloc, "free": after.free - before.free,
                  "again": use_plain_refcounts()}))
"""


def _run(mode: str) -> dict:
    env = dict(os.environ, NUMBA_DISABLE_JIT="0", NUMBA_NRT_STATS="1")
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                         check=True, env=env, timeout=300)
    return json.loads(out.stdout)


def test_plain_counts_free_what_compiled_code_drops():
    """numba's own switch (_disable_atomicity) leaks every array compiled code drops; this
    one must free each: allocations and frees balance, and the runtime has no atomics."""
    got = _run("plain")
    assert got["plain"] is True
    assert got["alloc"] >= 10_000 and got["free"] == got["alloc"], got
    assert got["again"] is True      # asking twice is harmless once it is in use


def test_atomic_counts_by_default():
    got = _run("atomic")
    assert got["plain"] is False
    assert got["free"] == got["alloc"], got


def test_too_late_changes_nothing():
    """Once the runtime is compiled the switch refuses (the counts stay atomic)."""
    code = ("from numba import njit\n"
            "njit(lambda: 1)()\n"
            "from tagcache.engine.nrt import plain_refcounts_in_use, use_plain_refcounts\n"
            "print(use_plain_refcounts(), plain_refcounts_in_use())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)
    assert out.stdout.split() == ["False", "False"]
