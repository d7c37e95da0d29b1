"""libCacheSim formats: csv column specs, txt, oracleGeneral."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from trace_paths import DATA, shared_trace

from tagcache.errors import TraceError
from tagcache.traces import detect_format, libcachesim, read_trace
from tagcache.traces.libcachesim import CsvSpec, default_spec, parse_spec
from tagcache.workloads.events import Op


def test_spec_like_libcachesim():
    assert parse_spec("time-col=1,obj-id-col=3,obj-size-col=4,delimiter=,,obj-id-is-num=0") == \
        CsvSpec(obj_id_col=3, time_col=1, obj_size_col=4, delimiter=",", obj_id_is_num=False)
    assert parse_spec("obj_id_col=2, delimiter=\\t, has_header=yes, block-size=512") == \
        CsvSpec(obj_id_col=2, delimiter="\t", has_header=True, block_size=512)
    assert parse_spec("obj-id-col=1,delimiter=;,header=false,ttl-col=5").delimiter == ";"
    assert parse_spec("size-col=2,obj-id-col=1").obj_size_col == 2


@pytest.mark.parametrize("spec, message", [
    ("time-col=1", "obj-id-col is required"),
    ("obj-id-col=0", "obj-id-col must be an integer from 1 to 65536"),
    ("obj-id-col=1,block-size=8589934592", "block-size must be an integer from 1 to"),
    ("obj-id-col=x", "must be an integer"),
    ("obj-id-col=1,colour=red", "unknown key 'colour'"),
    ("obj-id-col=1,has-header=maybe", "true or false"),
    ("obj-id-col=1,block-size=0", "block-size must be"),
    ("obj-id-col", "expected key=value"),
])
def test_bad_specs(spec, message):
    with pytest.raises(TraceError, match=message):
        parse_spec(spec)


def test_default_spec_for_named_headers():
    assert default_spec(b"version,time,op,size,lbn\n1,2,28,512,3\n") == \
        "obj-id-col=5,obj-size-col=4,op-col=3,time-col=2,block-size=512,has-header=true," \
        "delimiter=,"
    assert default_spec(b"1,2,3\n") is None
    assert default_spec(b"a,b,c\n") is None


def test_cloudphysics_real_trace():
    path = shared_trace("cloudPhysicsIO.csv.zst")
    assert detect_format(path) == "csv"
    trace = read_trace(path, use_cache=False)
    assert len(trace) == 113872
    assert int((trace.op == Op.READ).sum()) == 46974
    assert int((trace.op == Op.WRITE).sum()) == 66898
    # first rows: 1,5633898,2a,512,42932745 and 1,5633898,2a,6656,40409911 (4th); lbns are
    # addresses, compacted in 2 MiB extents (offsets within an extent kept)
    page0 = trace.extents.runs(0, 42932745 * 512 >> 12, 1)[0][0]
    assert (trace.op[0], trace.arg1[0], trace.arg2[0]) == (Op.WRITE, page0, 1)
    assert page0 % 512 == (42932745 * 512 >> 12) % 512
    first, last = 40409911 * 512 >> 12, (40409911 * 512 + 6656 - 1) >> 12
    assert [(trace.arg1[3], trace.arg2[3])] == trace.extents.runs(0, first, last - first + 1)
    assert trace.files.span_pages[0] == int((trace.arg1 + trace.arg2).max())
    top = int(trace.extents.hi.max() + 1) * 512                        # pages the lbns span
    assert trace.files.span_pages[0] < top // 2
    explicit = read_trace(path, csv_spec="time-col=2,op-col=3,obj-size-col=4,obj-id-col=5,"
                          "has-header=true,delimiter=,,block-size=512", use_cache=False)
    assert np.array_equal(explicit.arg1, trace.arg1) and np.array_equal(explicit.op, trace.op)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_string_ids_get_dense_ids(tmp_path):
    path = write(tmp_path, "t.csv", "ts|key|size|op\n1|a|10|get\n2|b|10|SET\n3|a|0|get\n"
                                   "4|c|5|delete\n5|b|7|get\n")
    trace = read_trace(path, csv_spec="time-col=1,obj-id-col=2,obj-size-col=3,op-col=4",
                       use_cache=False)
    # header and '|' detected; size-0 and delete rows are skipped
    assert trace.op.tolist() == [Op.READ, Op.WRITE, Op.READ]
    assert trace.arg1.tolist() == [0, 1, 1]
    assert trace.arg2.tolist() == [1, 1, 1]


def test_csv_without_header_and_hex_ids(tmp_path):
    path = write(tmp_path, "t.csv", "1,10\n2,0x20\n3,10\n")
    trace = read_trace(path, csv_spec="time-col=1,obj-id-col=2", use_cache=False)
    assert trace.arg1.tolist() == [0, 2, 0]       # ids 10 and 32: dense, a gap of one page


def test_csv_quoted_fields(tmp_path):
    path = write(tmp_path, "t.csv", 'id,name\n1,"a, b"\n2,c\n')
    trace = read_trace(path, csv_spec="obj-id-col=1,has-header=true", use_cache=False)
    assert trace.arg1.tolist() == [0, 1]


def test_csv_bad_line_and_skip(tmp_path):
    path = write(tmp_path, "t.csv", "time,obj_id,obj_size\n1,5,4096\n2,x,4096\n3,6\n4,7,4096\n")
    with pytest.raises(TraceError, match=r"t\.csv:3: expected 3\+ fields"):
        read_trace(path, use_cache=False)
    trace = read_trace(path, skip_bad_lines=True, use_cache=False)
    assert trace.arg1.tolist() == [0, 2] and trace.skipped_lines == 2


def test_csv_needs_a_spec_without_named_header(tmp_path):
    path = write(tmp_path, "t.csv", "1,2\n3,4\n")
    with pytest.raises(TraceError, match="needs a column spec"):
        read_trace(path, "csv", use_cache=False)
    with pytest.raises(TraceError, match="not csv"):
        read_trace(DATA / "seq.txt", "txt", csv_spec="obj-id-col=1", use_cache=False)


def test_txt_string_ids_and_bad_lines(tmp_path):
    trace = read_trace(write(tmp_path, "s.txt", "foo\nbar\n\nfoo\n"), "txt", use_cache=False)
    assert trace.arg1.tolist() == [0, 1, 0]
    path = write(tmp_path, "n.txt", "1\n2\n3 4\n5\n")
    with pytest.raises(TraceError, match=r"n\.txt:3: expected one obj id per line"):
        read_trace(path, "txt", use_cache=False)
    trace = read_trace(path, "txt", skip_bad_lines=True, use_cache=False)
    assert trace.arg1.tolist() == [0, 1, 3] and trace.skipped_lines == 1


def test_oracle_general_layout_and_zero_sizes(tmp_path):
    recs = [(1, 7, 4096, 2), (2, 3, 0, -1), (3, 7, 100, -1)]
    path = tmp_path / "x.oracleGeneral"
    path.write_bytes(b"".join(struct.pack("<IQIq", *r) for r in recs))
    assert libcachesim.ORACLE_GENERAL.itemsize == 24
    assert detect_format(path) == "oracleGeneral"
    trace = read_trace(path, use_cache=False)
    assert trace.arg1.tolist() == [0, 0]
    assert trace.files.span_pages.tolist() == [1]


def test_oracle_general_cut_record(tmp_path):
    path = tmp_path / "x.oracleGeneral"
    path.write_bytes((DATA / "seq.oracleGeneral").read_bytes()[:-5])
    with pytest.raises(TraceError, match=r"record 20 \(byte 456\): truncated, 19 of 24 bytes"):
        read_trace(path, use_cache=False)


def test_oracle_general_hashed_64_bit_ids(tmp_path):
    """Published oracleGeneral traces hash their ids over all 64 bits: half are >= 2**63."""
    path = tmp_path / "x.oracleGeneral"
    ids = [1, 2**63, 2**64 - 1, 2**63, 2, 1]
    path.write_bytes(b"".join(struct.pack("<IQIq", 1, i, 1, -1) for i in ids))
    trace = read_trace(path, use_cache=False)
    assert trace.arg1.tolist() == [0, 3, 5, 3, 1, 0]
    assert trace.files.span_pages.tolist() == [6]


def test_undetectable_file_names_the_formats_tried(tmp_path):
    path = write(tmp_path, "what", "hello world\nthis is prose\n")
    with pytest.raises(TraceError, match="tried ftrace, blkparse, msr, csv, txt, oracleGeneral"):
        read_trace(path)
