"""Bad traces (issue 9, parts 2 and 3): one line naming the file, the line and the value, exit
status 2; never a traceback, never a silent misread."""

from __future__ import annotations

import struct

import pytest
from trace_paths import DATA

from tagcache.cli import main
from tagcache.errors import TraceError
from tagcache.traces import detect, detect_format, read_trace

TIB = 1 << 40


def write(tmp_path, name, data):
    path = tmp_path / name
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    return path


def one_line_error(path, fmt=None, **kw) -> str:
    with pytest.raises(TraceError) as e:
        read_trace(path, fmt, use_cache=False, **kw)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    return msg


# --------------------------------------------------------------------------- cut files

CUT = {
    "seq.txt": ("txt", "20"),
    "seq.csv": ("csv", "21"),
    "seq-msr.csv": ("msr", "20"),
    "seq.blkparse": ("blkparse", None),
}


@pytest.mark.parametrize("name", CUT)
def test_text_cut_in_its_last_line_is_an_error(tmp_path, name):
    """A plain-text trace cut in the middle of its last line (no final newline) was accepted
    with a partial last record."""
    fmt, lineno = CUT[name]
    data = (DATA / name).read_bytes()
    if fmt == "blkparse":                       # cut inside the last Q line, summary dropped
        lines = data.split(b"\n")
        last_q = max(i for i, ln in enumerate(lines) if b" Q " in ln)
        data, lineno = b"\n".join(lines[:last_q + 1])[:-12], str(last_q + 1)
    else:
        data = data[:-1] if fmt == "txt" else data[:-3]
    path = write(tmp_path, name, data)
    msg = one_line_error(path, fmt)
    assert f":{lineno}: the file ends in the middle of this line" in msg
    trace = read_trace(path, fmt, skip_bad_lines=True, use_cache=False)
    assert trace.skipped_lines == 1


def test_ftrace_cut_in_its_last_line(tmp_path):
    line = ("            bash-1   [001] .....  1.000001: mm_filemap_get_pages: "
            "dev=254:0 ino=52db4 ofs=0-4095\n")
    path = write(tmp_path, "cut.trace", line * 3 + line[:-20])
    assert ":4: the file ends in the middle of this line" in one_line_error(path)


def test_trailing_blanks_are_not_a_cut_line(tmp_path):
    path = write(tmp_path, "t.txt", "1\n2\n  ")
    assert len(read_trace(path, "txt", use_cache=False)) == 2


# --------------------------------------------------------------------------- NUL bytes

def test_nul_byte_in_a_csv_is_not_oracle_general(tmp_path):
    """Any NUL byte made a .csv detected as oracleGeneral; now it is the csv's bad line."""
    text = (DATA / "seq.csv").read_bytes().replace(b"\n5,5,", b"\n5,5\0,", 1)
    path = write(tmp_path, "nul.csv", text)
    assert detect_format(path) == "csv"
    msg = one_line_error(path)
    assert ":6: " in msg and "\\x00" in msg and "read as csv" in msg


def test_nul_byte_in_a_txt_is_not_oracle_general(tmp_path):
    path = write(tmp_path, "nul.txt", b"1\n2\x00\n3\n" * 10)
    msg = one_line_error(path)
    assert "cannot tell the trace format" in msg
    assert "txt: line 2 is not one integer: '2\\x00'" in msg
    assert "oracleGeneral: record 1's next_access_vtime" in msg
    assert ":2: expected one obj id per line" in one_line_error(path, "txt")


def test_oracle_general_is_detected_by_its_records(tmp_path):
    recs = b"".join(struct.pack("<IQIq", i, 2**64 - 1 - i, 4096, i + 3 if i % 2 else -1)
                    for i in range(8))
    path = write(tmp_path, "hashed.bin", recs)
    assert detect(path) == ("oracleGeneral", "binary records with plausible next_access_vtime")
    assert len(read_trace(path, use_cache=False)) == 8


def test_detection_failure_names_every_objection(tmp_path):
    path = write(tmp_path, "prose", "hello world\nthis is prose\n")
    msg = one_line_error(path)
    for fmt in ("ftrace: no '# tracer:' header", "blkparse: the first line 'hello world'",
                "msr: the first data line", "csv: the first line 'hello world' is not a header",
                "txt: line 1 is not one integer", "oracleGeneral: no '.oracleGeneral' in the name"):
        assert fmt in msg
    assert "empty" in one_line_error(write(tmp_path, "empty", ""))


def test_a_detected_format_that_fails_says_what_it_was_read_as(tmp_path):
    path = write(tmp_path, "x.csv", "time,obj_id,obj_size\n1,5,4096\n2,x,4096\n")
    msg = one_line_error(path)
    assert ":3: expected 3+ fields" in msg
    assert "(read as csv, detected by a header naming an obj id column" in msg


# --------------------------------------------------------------------------- header only

def test_csv_with_a_header_only(tmp_path):
    path = write(tmp_path, "h.csv", "time,obj_id,obj_size\n")
    assert "no read or write requests in 1 lines" in one_line_error(path)
    path = write(tmp_path, "h2.csv", "version,time,op,size,lbn\n")
    assert "no read or write requests" in one_line_error(path)


def test_msr_with_a_header_only(tmp_path):
    path = write(tmp_path, "h-msr.csv",
                 "Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime\n")
    assert "no requests in 1 lines" in one_line_error(path, "msr")


# --------------------------------------------------------------------------- 64 bits and sizes

BLK_Q = "  8,0    1        1     0.000000000   697  Q   R {} + {} [cat]\n"


@pytest.mark.parametrize("name, fmt, text, message", [
    ("a.blkparse", "blkparse", BLK_Q.format(2**64, 8), f"sector {2**64} does not fit 64 bits"),
    ("b.blkparse", "blkparse", BLK_Q.format("92233720368547750000000", 8),
     "sector 92233720368547750000000 does not fit 64 bits"),
    ("c.blkparse", "blkparse", BLK_Q.format(0, TIB // 512),
     f"{TIB // 512} sectors is more than one request can move"),
    ("d.blkparse", "blkparse", BLK_Q.format(2**64 - 4, 8),
     f"sector {2**64 - 4} + 8 passes the last 64-bit sector"),
    ("e.blkparse", "blkparse", BLK_Q.format(0, 8).replace("8,0", "8,1048576"),
     "device 8,1048576 is not a device number"),
    ("a-msr.csv", "msr", "1,hm,1,Read,99999999999999999999999,4096,5\n",
     "Offset 99999999999999999999999 does not fit 64 bits"),
    ("b-msr.csv", "msr", f"1,hm,1,Read,0,{TIB},5\n",
     f"Size {TIB} is more than one request can move"),
    ("c-msr.csv", "msr", f"1,hm,1,Write,{2**64 - 4096},8192,5\n",
     f"the request at {2**64 - 4096} of 8192 bytes passes the end of 64-bit addresses"),
    ("d-msr.csv", "msr", f"1,hm,1,Read,0,{2**64},5\n", f"Size {2**64} does not fit 64 bits"),
    ("a.txt", "txt", f"1\n{2**64}\n", f"obj id {2**64} does not fit 64 bits"),
    ("a.csv", "csv", f"obj_id,obj_size\n1,1\n{2**64},1\n", f"obj id {2**64} does not fit"),
    ("b.csv", "csv", f"version,time,op,size,lbn\n1,1,28,{TIB},0\n",
     f"obj size {TIB} is more than one request can move"),
    ("c.csv", "csv", f"version,time,op,size,lbn\n1,1,28,512,{2**64 - 1}\n",
     f"obj id {2**64 - 1} times block-size 512 is past the end of 64-bit addresses"),
])
def test_values_beyond_64_bits_or_one_request(tmp_path, name, fmt, text, message):
    """A traceback (int64 overflow), a silent wrap or a ten-minute replay before; one line
    naming the line and the value now."""
    path = write(tmp_path, name, text)
    lineno = text.count("\n")
    msg = one_line_error(path, fmt)
    assert f"{name}:{lineno}: {message}" in msg
    trace_or_error = None
    try:
        trace_or_error = read_trace(path, fmt, skip_bad_lines=True, use_cache=False)
    except TraceError as e:                         # nothing left once the line is skipped
        assert "no " in str(e)
    if trace_or_error is not None:
        assert trace_or_error.skipped_lines == 1


def test_blkparse_action_line_cut_short_in_the_middle(tmp_path):
    """A line that starts like an action (M,m) but stops before it was skipped silently."""
    text = BLK_Q.format(0, 8) + "  8,0    1        2     0.0000\n" + BLK_Q.format(8, 8)
    path = write(tmp_path, "short.blkparse", text)
    assert ":2: expected 'M,m CPU SEQ" in one_line_error(path, "blkparse")


def test_object_traces_take_every_64_bit_id(tmp_path):
    path = write(tmp_path, "top.csv", f"obj_id,obj_size\n{2**64 - 1},{2**40}\n0,1\n")
    trace = read_trace(path, use_cache=False)          # object sizes are not requests
    assert trace.arg1.tolist() == [2, 0]


# --------------------------------------------------------------------------- the CLI

@pytest.mark.parametrize("name, text", [
    ("h.csv", "time,obj_id,obj_size\n"),
    ("m.csv", "1,hm,1,Read,99999999999999999999999,4096,5\n"),
    ("s.blkparse", BLK_Q.format("92233720368547750000000", 8)),
    ("cut.txt", "1\n2\n12"),
    ("nul.txt", "1\n2\x00\n3\n"),
    ("big.csv", f"version,time,op,size,lbn\n1,1,28,{TIB},0\n"),
])
def test_cli_exit_status_2_and_one_line(tmp_path, capsys, monkeypatch, name, text):
    monkeypatch.setenv("TAGCACHE_CACHE_DIR", str(tmp_path / "cache"))
    path = write(tmp_path, name, text)
    rc = main(["run", "--trace", str(path), "--policy", "lru", "--capacity", "100",
               "--backend", "idle", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("tagcache: error: ")
    assert str(path) in err[0] and "Traceback" not in err[0]


def test_ftrace_order_beyond_the_buddy_allocator_is_refused(tmp_path):
    """An add event of order 31 would have the model allocate 2^31 pages of a file."""
    line = ("grep-1 [000] ..... 1.000000: mm_filemap_add_to_page_cache: dev 8:1 ino 1a "
            "pfn=0x1000 ofs=0 order={order}\n")
    ok = tmp_path / "ok.trace"
    ok.write_text("# tracer: nop\n" + line.format(order=9))
    assert len(read_trace(ok, "ftrace", use_cache=False)) == 1
    bad = tmp_path / "bad.trace"
    bad.write_text("# tracer: nop\n" + line.format(order=31))
    with pytest.raises(TraceError, match="order 31 is more than 10"):
        read_trace(bad, "ftrace", use_cache=False)
