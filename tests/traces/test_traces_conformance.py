"""The same requests written in every format read back as the same events (libCacheSim's
reader tests do the same with one trace in each of its formats)."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
import zstandard
from trace_paths import DATA

from tagcache.traces import READERS, detect_format, read_trace
from tagcache.workloads.events import Op

SEQ_PAGES = [0, 1, 2, 0, 5, 1, 7, 3, 0, 2, 9, 4, 5, 5, 8, 1, 6, 0, 3, 7]
SEQ = {"seq.blkparse": "blkparse", "seq-msr.csv": "msr", "seq.csv": "csv", "seq.txt": "txt",
       "seq.oracleGeneral": "oracleGeneral"}
# (op, first page, pages) of tests/data/traces/make_fixtures.py's MIXED requests
MIXED_EVENTS = [(Op.READ, 0, 1), (Op.WRITE, 3, 3), (Op.READ, 0, 2), (Op.WRITE, 10, 16),
                (Op.READ, 3, 1), (Op.READ, 256, 3), (Op.WRITE, 511, 2), (Op.READ, 0, 1)]
MIXED = {"mixed.blkparse": "blkparse", "mixed-msr.csv": "msr",
         "mixed-cloudphysics.csv": "csv"}


def rows(trace):
    return list(zip(trace.op.tolist(), trace.arg0.tolist(), trace.arg1.tolist(),
                    trace.arg2.tolist(), strict=True))


def test_every_format_has_a_seq_fixture():
    assert set(SEQ.values()) | {"ftrace"} == set(READERS)


@pytest.mark.parametrize("name", SEQ)
def test_seq_is_the_same_in_every_format(name):
    trace = read_trace(DATA / name, use_cache=False)
    assert len(trace) == len(SEQ_PAGES)
    assert rows(trace)[:5] == [(Op.READ, 0, p, 1) for p in SEQ_PAGES[:5]]
    assert rows(trace) == [(Op.READ, 0, p, 1) for p in SEQ_PAGES]
    assert len(trace.files) == 1
    assert trace.files.size_pages.tolist() == trace.files.span_pages.tolist() == [10]
    assert not trace.files.large_folios.any()
    assert trace.skipped_lines == 0
    assert trace.op.dtype == np.uint8 and trace.arg1.dtype == np.int64


@pytest.mark.parametrize("name", SEQ)
def test_seq_formats_are_detected(name):
    assert detect_format(DATA / name) == SEQ[name]


@pytest.mark.parametrize("name", MIXED)
def test_mixed_sizes_and_writes_agree(name):
    trace = read_trace(DATA / name, use_cache=False)
    assert detect_format(DATA / name) == MIXED[name]
    assert rows(trace) == [(int(op), 0, first, pages) for op, first, pages in MIXED_EVENTS]
    assert trace.files.span_pages.tolist() == [513]


def test_blkparse_and_msr_name_their_device():
    blk = read_trace(DATA / "mixed.blkparse", use_cache=False)
    msr = read_trace(DATA / "mixed-msr.csv", use_cache=False)
    assert blk.files.dev.tolist() == [(8 << 20) | 0] and blk.files.ino.tolist() == [0]
    assert msr.files.dev.tolist() == [0] and msr.files.ino.tolist() == [1]


@pytest.mark.parametrize("compress", ["zst", "gz"])
@pytest.mark.parametrize("name", SEQ)
def test_compressed_copies_read_the_same(tmp_path, name, compress):
    data = (DATA / name).read_bytes()
    packed = zstandard.ZstdCompressor().compress(data) if compress == "zst" \
        else gzip.compress(data)
    # named without the compression suffix: recognised by its magic bytes
    target = tmp_path / name
    target.write_bytes(packed)
    assert detect_format(target) == SEQ[name]
    assert rows(read_trace(target, use_cache=False)) == rows(read_trace(DATA / name,
                                                                         use_cache=False))


def test_explicit_format_overrides_detection(tmp_path):
    odd = tmp_path / "requests.data"
    shutil.copy(DATA / "seq.txt", odd)
    assert len(read_trace(odd, "txt", use_cache=False)) == len(SEQ_PAGES)
    assert len(read_trace(odd, "TXT", use_cache=False)) == len(SEQ_PAGES)
