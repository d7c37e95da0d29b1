"""validate's compiled loop (engine/validate.py, through machine.build()): an event it has no
step for is refused. Its fault classes, the pages the kernel added after each and the model's
counts on every capture are pinned (tests/expected_counts.py, test_expected_counts.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tagcache.sidecar import capture_facts, load_sidecar, sidecar_for
from tagcache.traces import read_trace
from tagcache.validate import accessed_files, build_model
from tagcache.workloads.events import Op

ROOT = Path(__file__).resolve().parent.parent
MINI_GREP = ROOT / "tests" / "data" / "captures" / "mini-grep.trace.zst"


def test_unkept_op_is_an_error() -> None:
    """An op the loop has no step for comes back to Python and is refused, not skipped."""
    path = MINI_GREP
    meta = load_sidecar(sidecar_for(path))
    trace = read_trace(path)
    facts = capture_facts(trace, meta)
    files = accessed_files(trace)
    fm = build_model(trace, files, facts, 4096)
    from tagcache.engine import validate as loop

    op = np.array([Op.TRUNCATE], np.uint8)
    a = np.zeros(1, np.int64)
    vc = np.zeros(loop.NR_VC, np.int64)
    kc = np.zeros(len(np.asarray(fm.pc.head)), np.int8)
    assert loop.validate_events(fm.pc, op, a, a, a, 0, 1, kc, vc) == 0
