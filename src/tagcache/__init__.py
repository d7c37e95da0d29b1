"""tagcache: an executable model of arm64 MTE tag storage reused as a cleancache backend.

Library use, the same path the CLI takes::

    from tagcache import load_scenario, run_scenario
    exp = run_scenario(load_scenario())          # the embedded default scenario
    exp.to_json()["results"][0]["cleancache"]

The names below are imported on first use, so that ``import tagcache.cli`` (the command's
start-up) does its heavy imports itself, where an interrupt is handled (cli.py).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Design": "tagcache.replay", "MachineConfig": "tagcache.replay",
    "RunResult": "tagcache.replay", "replay": "tagcache.replay",
    "Experiment": "tagcache.experiment", "run_scenario": "tagcache.experiment",
    "scenario_trace": "tagcache.experiment",
    "Scenario": "tagcache.scenario", "load_scenario": "tagcache.scenario",
}

__all__ = ["Design", "Experiment", "MachineConfig", "RunResult", "Scenario", "load_scenario",
           "replay", "run_scenario", "scenario_trace"]
__version__ = "0.1.0"


def _numba_cache_dir() -> None:
    """Point numba's on-disk cache (``@njit(cache=True)``) at a folder named by a hash of this
    package's sources, unless the user chose one (NUMBA_CACHE_DIR) or numba is already loaded.

    numba checks a cached function against its own file only, not the files of the compiled
    functions it calls, so after an upgrade or an edit of a callee a caller could run stale
    machine code; a folder per version of the package's compiled modules cannot. Each import
    touches the folder, so that ``python -m tagcache.engine.warm`` (run by ``make``) can remove
    the folders of versions no longer run (:func:`tagcache.engine.warm.prune_caches`).
    """
    if "NUMBA_CACHE_DIR" in os.environ or "numba" in sys.modules:
        return
    h = hashlib.blake2b(digest_size=8)
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        text = path.read_bytes()
        if b"numba" in text:          # only compiled code can go stale
            h.update(str(path.relative_to(root)).encode())
            h.update(text)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    here = base / "tagcache" / "numba" / h.hexdigest()
    os.environ["NUMBA_CACHE_DIR"] = str(here)
    try:
        os.utime(here)                # in use: engine/warm.py prunes the folders left unused
    except OSError:
        pass


_numba_cache_dir()


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tagcache' has no attribute {name!r}")
    # Bind every export at once: ``replay`` is the function, as with eager imports, even
    # though importing the submodule tagcache.replay binds the module under that name.
    for export, module in _EXPORTS.items():
        globals()[export] = getattr(importlib.import_module(module), export)
    return globals()[name]


if TYPE_CHECKING:
    from tagcache.experiment import Experiment, run_scenario, scenario_trace
    from tagcache.replay import Design, MachineConfig, RunResult, replay
    from tagcache.scenario import Scenario, load_scenario
