"""Compile the engine ahead of its first real use: ``python -m tagcache.engine.warm``.

numba compiles each step function on its first call and keeps the machine code on disk
(``@njit(cache=True)``, in the folder tagcache/__init__.py names), so the first run after an
install or an upgrade pays the compile once (tens of seconds). ``make`` runs this after
installing, so that ``make demo`` and ``make test`` start with the cache filled. It replays
a tiny machine through every path a run, a like-for-like experiment and the checker take,
with the argument types they use; it prints the seconds it took, then removes the
compiled-code folders of other versions that no import has touched for a month
(:func:`prune_caches`; each version's folder takes 100-250 MB).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np


def warm() -> float:
    """Run every compiled path once on a tiny machine; the seconds it took."""
    from dataclasses import replace

    from tagcache.backends import NAMES
    from tagcache.experiment import run_scenario, run_trace

    t0 = time.perf_counter()
    scn, reader = _tiny()
    for check in (False, True):
        run_scenario(scn, check=check)
    every = replace(scn, designs=scn.designs_of(list(NAMES), compare=True))
    run_scenario(every, check=True)
    for policy in ("lru", "kernel"):
        run_trace(scn, reader, capacity_pages=32, policy=policy, check=False)
    return time.perf_counter() - t0


def _tiny(designs: list | None = None):
    """A tiny scenario (and its reader trace) that takes the paths of a real one."""
    from dataclasses import replace

    from tagcache.experiment import scenario_trace
    from tagcache.scenario import parse_scenario
    from tagcache.workloads.events import Op

    scn = parse_scenario({
        "name": "warm", "seed": 1,
        "machine": {"memory": "64MiB", "anon": "48MiB", "min_free": "1MiB"},
        "page_cache": {"max_folio_order": 2},
        "tagged": {"shares": [0.1], "process_size": "4MiB", "churn_events": 8},
        "files": {"count": 4, "mean_size": "1MiB"},
        "workload": {"events": 64, "read_size": "16KiB"},
    }, "warm.toml")
    if designs is not None:
        scn = replace(scn, designs=list(designs))
    tr = scenario_trace(scn, 0.0)
    keep = np.isin(tr.op, [Op.READ, Op.WRITE])
    return scn, replace(tr, op=tr.op[keep], arg0=tr.arg0[keep], arg1=tr.arg1[keep],
                        arg2=tr.arg2[keep])


def preload(designs: list, policy: str, check: bool) -> None:
    """Load the compiled code a trace replay of ``designs`` with the ``policy`` page cache
    calls (from numba's cache: no compiling), by replaying a tiny trace the same way.

    The command runs this in a thread while it parses the real trace: numba's cached code
    loads mostly in LLVM (ctypes calls release the GIL) and the parsers' loops release it too,
    so the two overlap, and the workers forked afterwards start with the code loaded instead
    of each loading it (0.2 s each for the kernel model)."""
    from tagcache.experiment import run_trace

    scn, reader = _tiny(designs)
    run_trace(scn, reader, capacity_pages=32, policy=policy, check=check)


UNUSED_DAYS = 30
"""A compiled-code folder of another version not imported for this long is removed."""


def prune_caches(current: Path, days: float = UNUSED_DAYS) -> list[tuple[Path, int]]:
    """Remove the sibling folders of ``current`` (numba's cache folder of this version,
    named by tagcache/__init__.py as ``.../tagcache/numba/<hash>``) whose time stamp (each
    import of that version touches it) is older than ``days``; return each removed folder
    with its size in bytes. Nothing is removed outside a ``tagcache/numba`` folder (a cache
    folder the user chose with NUMBA_CACHE_DIR is theirs), nor any entry that is not a plain
    folder named by a hash."""
    root = current.parent
    if (root.name, root.parent.name) != ("numba", "tagcache") or not root.is_dir():
        return []
    limit = time.time() - days * 86400
    removed = []
    for d in root.iterdir():
        if (d == current or d.is_symlink() or not d.is_dir() or len(d.name) != 16
                or any(c not in "0123456789abcdef" for c in d.name)):
            continue
        try:
            if d.stat().st_mtime >= limit:
                continue
            size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
            shutil.rmtree(d)
        except OSError:
            continue
        removed.append((d, size))
    return removed


def main() -> None:
    print(f"tagcache: engine compiled in {warm():.1f} s")
    current = Path(os.environ.get("NUMBA_CACHE_DIR", ""))
    if current.name:
        removed = prune_caches(current)
        if removed:
            mib = sum(n for _, n in removed) / 2**20
            print(f"tagcache: removed {len(removed)} compiled-code folder(s) of other "
                  f"versions unused for {UNUSED_DAYS} days ({mib:.0f} MiB)")


if __name__ == "__main__":
    main()
