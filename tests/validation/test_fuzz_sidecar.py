"""Fuzzing the capture sidecar loader (issue 9, part 2): documents built from the sidecar's own
keys with mutated values, and damaged text, are loaded and used, or refused with a TraceError
naming the file; never another exception."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagcache.errors import TraceError
from tagcache.sidecar import (
    KERNEL_FIELDS,
    capture_facts,
    load_sidecar,
    metadata_pages,
    read_ahead_pages,
    sidecar_large_folios,
)
from tagcache.validate import validate_trace
from tagcache.workloads.events import FileTable, Op, TraceBuilder

ROOT = Path(__file__).resolve().parents[2]
FULL = json.loads((ROOT / "tests" / "data" / "captures" / "mini-grep.json").read_text())
# the committed sidecar with every object field cut to three entries: small documents
BASE = {k: dict(list(v.items())[:3]) if isinstance(v, dict) and k != "kernel" else v
        for k, v in FULL.items()}
FUZZ = settings(max_examples=2000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _trace():
    """A tiny trace whose files are the ones BASE's page runs name."""
    keys = sorted({k for f in ("resident_at_start", "exec_mappings", "cow_mappings")
                   for k in BASE[f]})
    dev = [int(k.split(":")[0]) << 20 | int(k.split(":")[1]) for k in keys]
    ino = [int(k.split(":")[2], 16) for k in keys]
    b = TraceBuilder()
    for f in range(len(keys)):
        b.add(Op.GET_PAGES, f, 0, 4)
        b.add(Op.FAULT, f, 2, 0)
        b.add(Op.KERNEL_ADD, f, 0, 2)
    return b.build(FileTable.build(dev, ino, [8] * len(keys), [64] * len(keys)))


TRACE = _trace()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8)
page_runs = st.lists(st.lists(st.integers(-3, 2**52), min_size=0, max_size=3), max_size=3)


def _paths(doc) -> list[tuple[str, ...]]:
    """Every key path of the document (objects only)."""
    out = []
    for k, v in doc.items():
        out.append((k,))
        if isinstance(v, dict):
            out += [(k, *p) for p in _paths(v)]
    return out


@st.composite
def sidecar_documents(draw) -> bytes:
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(0, 4))):
        paths = _paths(doc)
        kind = draw(st.sampled_from(["value", "value", "runs", "delete", "add"]))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        if kind == "value":
            parent[path[-1]] = draw(json_values)
        elif kind == "runs":
            parent[path[-1]] = draw(page_runs)
        elif kind == "delete":
            del parent[path[-1]]
        else:
            key = draw(st.sampled_from([*BASE, *KERNEL_FIELDS, "paths", "254:0",
                                        "254:0:77", "9", "x"]))
            parent[key] = draw(json_values | page_runs)
    text = json.dumps(doc).encode()
    damage = draw(st.sampled_from(["none", "none", "none", "cut", "byte", "nan", "latin1"]))
    if damage == "cut":
        text = text[:draw(st.integers(0, len(text)))]
    elif damage == "byte":
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + bytes([draw(st.integers(0, 255))]) + text[at + 1:]
    elif damage == "nan":
        text = text.replace(b"0", b"NaN", 1)
    elif damage == "latin1":
        text = text.replace(b"grep", b"gr\xe9p", 1)
    return text


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("sidecar-fuzz")


def test_sidecars_are_used_or_refused(workdir):
    path = workdir / "fuzz.json"

    @FUZZ
    @given(sidecar_documents(), st.booleans())
    def run(text, minus_metadata):
        path.write_bytes(text)
        try:
            meta = load_sidecar(path)
        except TraceError as e:
            assert "\n" not in str(e) and str(path) in str(e), str(e)
            return
        try:
            read_ahead_pages(TRACE, meta)
            sidecar_large_folios(meta)
            if minus_metadata:
                metadata_pages(meta)
            capture_facts(TRACE, meta, mappings=True, minus_metadata=minus_metadata)
            validate_trace(TRACE, 16, meta=meta, mappings=True, minus_metadata=minus_metadata)
        except TraceError as e:
            assert "\n" not in str(e) and "buffers_growth_peak" in str(e), str(e)

    run()
