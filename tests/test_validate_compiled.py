"""validate's compiled loop (engine/validate.py, through machine.build()) against the object
model's loop it replaced, kept here as the reference: the fault classes, the pages the kernel
added after each class, and the model's counts and final page cache, on a few captures (no
samples; kmem events; many faults; mappings and large folios)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tagcache.capacity import follow_room
from tagcache.cleancache.frontend import Cleancache
from tagcache.engine.pagecache import file_counts, folio_arrays
from tagcache.mm.filemap import PageCache
from tagcache.sidecar import (
    capture_facts,
    load_sidecar,
    read_ahead_pages,
    sidecar_for,
)
from tagcache.traces import read_trace
from tagcache.units import PAGE_SIZE
from tagcache.validate import (
    FAULT_OUTCOMES,
    accessed_files,
    build_model,
    kept_ops,
    model_files,
    replay_capture,
)
from tagcache.workloads.events import Op, Trace

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = [ROOT / "tests" / "data" / "captures" / "mini-grep.trace.zst",
            ROOT / "captures" / "corpus" / "sort-heap-1.trace.zst",
            ROOT / "captures" / "corpus" / "gcc-build-1.trace.zst",
            ROOT / "captures" / "corpus" / "sqlite-mmap-1.trace.zst"]


def object_replay(trace: Trace, files: np.ndarray, facts, capacity_pages: int):
    """validate_trace()'s loop before the compiled engine, verbatim: the object PageCache,
    handlers per op, the room followed event by event, each fault classified in Python."""
    room = facts.room(trace, capacity_pages)
    ft = model_files(trace, files, facts.file_large_folios(trace.files))
    pc = PageCache(ft, Cleancache(None), lambda: room.pages, **facts.page_cache_kwargs())
    facts.preload(pc)
    kernel_cached = pc.head >= 0
    handlers = {Op.GET_PAGES: pc.get_pages, Op.READ: pc.read, Op.MAP_PAGES: pc.map_pages,
                Op.FAULT: lambda f, i, _n: pc.fault(f, i), Op.WRITE: pc.write,
                Op.UNLINK: lambda f, _a, _b: pc.unlink(f) if pc.span[f] else None}
    faults = dict.fromkeys(FAULT_OUTCOMES, 0)
    fault_pages = dict.fromkeys(FAULT_OUTCOMES, 0)
    outcome, fault_file = "", -1
    keep = np.isin(trace.op, np.array(kept_ops(room), np.uint8))
    span, base = pc.span, pc.base
    for op, a0, a1, a2 in zip(trace.op[keep].tolist(), trace.arg0[keep].tolist(),
                              trace.arg1[keep].tolist(), trace.arg2[keep].tolist(), strict=True):
        if op >= Op.KERNEL_ADD:
            if op == Op.KERNEL_ADD or op == Op.KERNEL_DELETE:
                if span[a0]:
                    s = int(base[a0]) + a1
                    kernel_cached[s:s + (1 << a2)] = op == Op.KERNEL_ADD
                    if op == Op.KERNEL_ADD and a0 == fault_file:
                        fault_pages[outcome] += 1 << a2
                continue
            follow_room(room, pc, op, a0, a1, a2)
            continue
        fault_file = -1
        if op == Op.FAULT and a1 < span[a0]:
            s = int(base[a0]) + a1
            k, m = bool(kernel_cached[s]), bool(pc.head[s] >= 0)
            outcome = FAULT_OUTCOMES[(0 if m else 3) if k == m else (1 if m else 2)]
            faults[outcome] += 1
            fault_file = a0
        handlers[op](a0, a1, a2)
    return pc, room, faults, fault_pages


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name.removesuffix(".trace.zst"))
def test_compiled_loop_equals_object_loop(path: Path) -> None:
    meta = load_sidecar(sidecar_for(path))
    trace = read_trace(path, use_cache=False)
    ra, _ = read_ahead_pages(trace, meta)
    capacity = meta["kernel"]["cache_peak"] // PAGE_SIZE
    facts = capture_facts(trace, meta, ra_pages=ra)
    files = accessed_files(trace)

    ref, ref_room, ref_faults, ref_pages = object_replay(trace, files, facts, capacity)
    fm = build_model(trace, files, facts, capacity)
    faults, pages = replay_capture(fm, trace)

    assert faults == ref_faults
    assert pages == ref_pages
    assert sum(faults.values()) > 0
    ins, reins, orders = file_counts(fm.pc)
    assert np.array_equal(ins, ref.file_insertions)
    assert np.array_equal(reins, ref.file_reinsertions)
    assert np.array_equal(orders, ref.file_orders)
    state = folio_arrays(fm.pc)
    assert np.array_equal(state["head"], ref.head)
    assert np.array_equal(state["flags"], ref.flags)
    assert np.array_equal(np.asarray(fm.pc.isize), ref.isize)
    assert (fm.room.lowest, fm.room.samples, fm.room.pages) == (
        ref_room.lowest, ref_room.samples, ref_room.pages)


def test_unkept_op_is_an_error() -> None:
    """An op the loop has no step for comes back to Python and is refused, not skipped."""
    path = CAPTURES[0]
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
