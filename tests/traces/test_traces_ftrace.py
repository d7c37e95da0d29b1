"""The tracefs reader: real captures, a line-by-line reference parser, kmem events, bad lines."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
import zstandard
from trace_paths import DATA, KMEM, shared_trace

from tagcache.errors import TraceError
from tagcache.traces import detect_format, ftrace, read_trace
from tagcache.workloads.events import GFP_USER_ANON, Op

EVENT_OPS = {"mm_filemap_get_pages": Op.GET_PAGES, "mm_filemap_map_pages": Op.MAP_PAGES,
             "mm_filemap_fault": Op.FAULT, "mm_filemap_add_to_page_cache": Op.KERNEL_ADD,
             "mm_filemap_delete_from_page_cache": Op.KERNEL_DELETE}


def text_of(path) -> str:
    return zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes()).decode()


def reference(text: str):
    """A slow, obvious parser of the filemap events: the reader must agree with it exactly."""
    rx = re.compile(r"^\s*(.*)-(\d+)\s+\[\d+\].*?\s\d+\.\d+: (mm_filemap_\w+): (.*)$")
    files: dict[tuple[int, int], int] = {}
    size: dict[int, int] = {}
    span: dict[int, int] = {}
    out = []
    for line in text.splitlines():
        m = rx.match(line)
        if not m or m.group(3) not in EVENT_OPS:
            continue
        op, f = EVENT_OPS[m.group(3)], m.group(4)
        nums = re.findall(r"[0-9a-fx]+", f.replace("dev", "").replace("ino", "").replace(
            "pfn", "").replace("ofs", "").replace("order", ""))
        major, minor, ino = int(nums[0]), int(nums[1]), int(nums[2], 16)
        fid = files.setdefault(((major << 20) | minor, ino), len(files))
        if op in (Op.GET_PAGES, Op.MAP_PAGES):
            a, b = int(nums[3]), int(nums[4])
            row, end = (fid, a >> 12, ((b + 1) >> 12) - (a >> 12)), (b + 1) >> 12
        elif op == Op.FAULT:
            row, end = (fid, int(nums[3]) >> 12, 0), (int(nums[3]) >> 12) + 1
        else:
            page, order = int(nums[4]) >> 12, int(nums[5])
            row, end = (fid, page, order), page + (1 << order)
            if op == Op.KERNEL_ADD:
                size[fid] = max(size.get(fid, 0), end)
        span[fid] = max(span.get(fid, 0), end)
        out.append((int(op), *row))
    n = len(files)
    return (out, list(files), [size.get(i, 0) for i in range(n)],
            [max(span[i], size.get(i, 0)) for i in range(n)])


def check_against_reference(trace, text):
    """The reader's rows are the reference's, once the reference's page offsets go through the
    trace's extent map (files are compacted in 2 MiB extents)."""
    rows, files, size, span = reference(text)

    def page(f, p):
        (first, nr), = trace.extents.runs(f, p, 1)
        return first

    rows = [(op, f, page(f, p), a2) for op, f, p, a2 in rows]
    got = list(zip(trace.op.tolist(), trace.arg0.tolist(), trace.arg1.tolist(),
                   trace.arg2.tolist(), strict=True))
    assert got == rows
    assert list(zip(trace.files.dev.tolist(), trace.files.ino.tolist(), strict=True)) == files
    assert trace.files.size_pages.tolist() == [page(f, s - 1) + 1 if s else 0
                                               for f, s in enumerate(size)]
    assert trace.files.span_pages.tolist() == [page(f, s - 1) + 1 for f, s in enumerate(span)]


def test_real_sample_counts_match_its_event_lines():
    path = shared_trace("dev-sample-grep.trace.zst")
    text = text_of(path)
    lines = Counter(m.group(1) for m in re.finditer(r"\d: (mm_filemap_\w+): ", text))
    assert dict(lines) == {"mm_filemap_get_pages": 2377, "mm_filemap_map_pages": 2235,
                           "mm_filemap_fault": 215, "mm_filemap_add_to_page_cache": 12932,
                           "mm_filemap_delete_from_page_cache": 8928}
    trace = read_trace(path, use_cache=False)
    got = Counter(Op(o).name for o in trace.op.tolist())
    assert got == {"GET_PAGES": 2377, "MAP_PAGES": 2235, "FAULT": 215, "KERNEL_ADD": 12932,
                   "KERNEL_DELETE": 8928}
    assert trace.name == "dev-sample-grep"
    assert trace.skipped_lines == 0
    assert trace.files.large_folios.all()
    check_against_reference(trace, text)


def test_real_sample_parses_well_under_a_second():
    import time

    path = shared_trace("dev-sample-grep.trace.zst")
    ftrace.parse(path)
    start = time.perf_counter()
    ftrace.parse(path)
    assert time.perf_counter() - start < 0.5


def test_committed_head_of_the_capture():
    path = DATA / "grep-head.trace.zst"
    assert detect_format(path) == "ftrace"
    trace = read_trace(path, use_cache=False)
    assert Counter(Op(o).name for o in trace.op.tolist()) == {
        "GET_PAGES": 191, "MAP_PAGES": 557, "FAULT": 59, "KERNEL_ADD": 1181}
    check_against_reference(trace, text_of(path))
    # the first lines of the capture, by hand
    assert trace.files.dev[0] == (254 << 20) and trace.files.ino[0] == 0x510080
    assert (trace.op[0], trace.arg1[0], trace.arg2[0]) == (Op.GET_PAGES, 0, 1)
    assert trace.files.ino[trace.arg0[1]] == 0x52DB4
    assert (trace.op[1], trace.arg1[1], trace.arg2[1]) == (Op.MAP_PAGES, 847872 >> 12, 16)


def test_line_by_line_path_gives_the_same_rows(monkeypatch):
    path = DATA / "grep-head.trace.zst"
    fast = ftrace.parse(path)
    monkeypatch.setattr(ftrace, "LINE_BY_LINE", True)
    slow = ftrace.parse(path)
    for col in ("op", "arg0", "arg1", "arg2"):
        assert np.array_equal(getattr(fast, col), getattr(slow, col))
    assert np.array_equal(fast.files.span_pages, slow.files.span_pages)
    assert np.array_equal(fast.files.size_pages, slow.files.size_pages)




def test_kmem_events_tasks_and_older_formats(tmp_path):
    path = tmp_path / "kmem.trace"
    path.write_text(KMEM)
    assert detect_format(path) == "ftrace"
    trace = ftrace.parse(path, large_folios=False)
    assert trace.tasks == [("Web Content", 1234), ("kworker/u8:2-ev", 77), ("<...>", 99)]
    rows = list(zip(trace.op.tolist(), trace.arg0.tolist(), trace.arg1.tolist(),
                    trace.arg2.tolist(), strict=True))
    assert rows == [
        (Op.MAP_PAGES, 0, 207, 16),
        (Op.PAGE_ALLOC, 0x10A06E, 0, (0 << 8) | GFP_USER_ANON),
        (Op.PAGE_ALLOC, 0x10A070, 2, 1 << 8),
        (Op.PAGE_FREE, 0x10A06E, 0, 0 << 8),
        # the failed THP allocation (NULL page), sched_switch, zone_locked and the marker
        # write are not events; the add without order (older kernels) is order 0
        (Op.KERNEL_ADD, 0, 917504 >> 12, 0),
        (Op.KERNEL_ADD, 0, 921600 >> 12, 2),
        (Op.PAGE_FREE, 0x10A070, 2, 2 << 8),
        (Op.FAULT, 0, 1261568 >> 12, 0),
    ]
    assert trace.files.size_pages.tolist() == [(921600 >> 12) + 4]
    assert trace.files.span_pages.tolist() == [(1261568 >> 12) + 1]
    assert not trace.files.large_folios.any()


def bad_capture(tmp_path):
    lines = KMEM.splitlines()
    lines.insert(4, "            bash-14069   [001] .....  2390.829146: mm_filemap_get_pages: "
                    "dev=254:0 ino=52dzz ofs=0-4095")
    lines.append("            bash-14069   [001] .....  2390.829147: mm_filemap_fault: "
                 "dev=254:0 ino=52db4")
    lines.append("            bash14069   [001] .....  2390.829148: mm_page_free: "
                 "page=0 pfn=0x1 order=0")
    path = tmp_path / "bad.trace"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_malformed_line_names_file_and_line(tmp_path):
    path = bad_capture(tmp_path)
    with pytest.raises(TraceError) as err:
        read_trace(path, use_cache=False)
    msg = str(err.value)
    assert msg.startswith(f"{path}:5: expected mm_filemap_get_pages: 'dev=M:m ino=HEX ofs=A-B'")
    assert "52dzz" in msg and "\n" not in msg


def test_skip_bad_lines_counts_them(tmp_path):
    path = bad_capture(tmp_path)
    trace = read_trace(path, skip_bad_lines=True, use_cache=False)
    assert trace.skipped_lines == 3
    assert len(trace) == 8


EXPECTED_GET_PAGES = "expected mm_filemap_get_pages"


@pytest.mark.parametrize("tail, message", [
    ("dev=254:0 ino=52db4 ofs=8192-4094", "the range 8192-4094 ends before it starts"),
    ("dev=254:0 ino=52db4 ofs=0-4095 extra=1", EXPECTED_GET_PAGES),
    ("dev=254:0 ino=52db4", EXPECTED_GET_PAGES),
    ("dev=254 ino=52db4 ofs=0-4095", EXPECTED_GET_PAGES),
    ("dev=254:0 ino= ofs=0-4095", EXPECTED_GET_PAGES),
    ("dev=254:0 ino=52db4 ofs=99999999999999999999-4095", "a number does not fit 64 bits"),
    # issue 9: a negative offset was read as positive
    ("dev=254:0 ino=52db4 ofs=-585728-651263", EXPECTED_GET_PAGES),
    ("dev=254:0 ino=52db4 ofs=585728--651263", EXPECTED_GET_PAGES),
    ("dev=254:0 ino=52db4 ofs=0-4095-8191", EXPECTED_GET_PAGES),
    ("dev=254:0 ino=52db4 ofs=0-1099511627775",
     "the range 0-1099511627775 is more than one request can move"),
    ("dev=4096:0 ino=52db4 ofs=0-4095", "dev 4096:0 is not a device number"),
])
def test_bad_fields(tmp_path, tail, message):
    path = tmp_path / "one.trace"
    path.write_text(f"            bash-1   [001] .....  1.000001: mm_filemap_get_pages: {tail}\n"
                    "            bash-1   [001] .....  1.000002: mm_filemap_fault: "
                    "dev=254:0 ino=52db4 ofs=0\n")
    with pytest.raises(TraceError, match=rf"one\.trace:1: {re.escape(message)}") as e:
        ftrace.parse(path)
    assert "\n" not in str(e.value) and tail[-10:] in str(e.value)


def test_negative_offsets_among_good_lines_are_refused(tmp_path):
    """The vectorised path sees the whole chunk: one line of '-A-B' among good ones is not
    read as A-B (issue 9)."""
    good = ("            bash-1   [001] .....  1.000001: mm_filemap_get_pages: "
            "dev=254:0 ino=52db4 ofs=0-4095\n")
    path = tmp_path / "neg.trace"
    path.write_text(good * 3 + good.replace("ofs=0-4095", "ofs=-585728-651263") + good)
    with pytest.raises(TraceError, match=r"neg\.trace:4: expected mm_filemap_get_pages"):
        ftrace.parse(path)
    trace = ftrace.parse(path, skip_bad_lines=True)
    assert len(trace) == 4 and trace.skipped_lines == 1 and (trace.arg1 >= 0).all()


@pytest.mark.parametrize("tail", [
    "dev 254:0 ino 52db4 pfn=0x1 ofs=12e3 order=0",
    "dev 254:0 ino 52db4 pfn=0x1 ofs=4096 order=1 2",
    "dev 254:0 ino 52db4 pfn=0x1 ofs=-4096 order=0",
    "dev 254:0 ino 52db4 pfn=0x1 ofs=4096 order=32",
])
def test_bad_cache_lines_among_good_ones(tmp_path, tail):
    """Fields are counted per line: a line with a number too many next to one with a number
    too few is not read as two good lines."""
    good = ("            bash-1   [001] .....  1.000001: mm_filemap_add_to_page_cache: "
            "dev 254:0 ino 52db4 pfn=0x1 ofs=4096 order=0\n")
    path = tmp_path / "cache.trace"
    path.write_text(good + good.replace("dev 254:0 ino 52db4 pfn=0x1 ofs=4096 order=0", tail)
                    + good)
    with pytest.raises(TraceError, match=r"cache\.trace:2: "):
        ftrace.parse(path)


def test_no_events_is_an_error(tmp_path):
    path = tmp_path / "empty.trace"
    path.write_text("# tracer: nop\n#\n")
    with pytest.raises(TraceError, match="no mm_filemap"):
        ftrace.parse(path)


def test_chunks_keep_line_numbers(tmp_path, monkeypatch):
    """Errors name the line even when the file is parsed in several chunks."""
    from tagcache.traces import _common

    good = ("            bash-1   [001] .....  1.000001: mm_filemap_fault: "
            "dev=254:0 ino=52db4 ofs=4096\n")
    path = tmp_path / "long.trace"
    path.write_text(good * 500 + good.replace("ofs=4096", "ofs=x") + good * 10)
    real = _common.iter_line_arrays
    monkeypatch.setattr(ftrace, "iter_line_arrays",
                        lambda f, bad=None, lines=None: real(f, 1000, bad, lines))
    with pytest.raises(TraceError, match=r"long\.trace:501: "):
        ftrace.parse(path)
    trace = ftrace.parse(path, skip_bad_lines=True)
    assert len(trace) == 510 and trace.skipped_lines == 1
    assert trace.files.span_pages.tolist() == [2]
