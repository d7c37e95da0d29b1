"""The compiled ftrace scan (issue 11): it finds the event lines the reader always found, and
what its programs parse equals what the regular expressions parse, on random lines of every
event (usual, older, odd and bad forms), chunked and compiled or not (NUMBA_DISABLE_JIT=1)."""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagcache.errors import TraceError
from tagcache.traces import _common, ftrace
from tagcache.workloads.events import GFP_USER_ANON, Op

BIG = [0, 1, 4095, 4096, 2**31, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**18, 10**19 - 1,
       10**25]
num = st.one_of(st.integers(0, 9), st.integers(0, 2**22), st.integers(0, 2**40),
                st.sampled_from(BIG))
small = st.one_of(st.integers(0, 12), st.sampled_from([4095, 4096, 1 << 20, 2**63, -1]))
odd = st.sampled_from(["", " ", "  ", "\r", "\t", " x"])


def dec(v: int) -> str:
    return str(v)


@st.composite
def event(draw) -> str:
    """An event's text after ``SECONDS: ``: one of ours in its usual form, mostly, or odder."""
    maj, mn = draw(st.sampled_from([(254, 0), (8, 1), (4096, 0), (0, 1 << 20), (7, 3)]))
    ino, a, b, pfn, order = (draw(num) for _ in range(5))
    ino_hex = draw(st.sampled_from([f"{ino:x}", f"{ino:X}", f"{ino:x}"]))
    pfn_txt = draw(st.sampled_from([f"0x{pfn:x}", f"0x{pfn:x}", dec(pfn), f"0X{pfn:x}"]))
    o = draw(small)
    kind = draw(st.integers(0, 12))
    if kind == 0:
        name = draw(st.sampled_from(["mm_filemap_get_pages", "mm_filemap_map_pages"]))
        b = draw(st.one_of(st.just(a + 4095), num))
        text = f"{name}: dev={maj}:{mn} ino={ino_hex} ofs={a}-{b}"
    elif kind == 1:
        text = f"mm_filemap_fault: dev={maj}:{mn} ino={ino_hex} ofs={a}"
    elif kind in (2, 3):
        name = draw(st.sampled_from(["mm_filemap_add_to_page_cache",
                                     "mm_filemap_delete_from_page_cache"]))
        page = draw(st.sampled_from(["", " page=0000000012345678"]))
        tail = draw(st.sampled_from([f" order={o}", f" order={o}", ""]))
        text = f"{name}: dev {maj}:{mn} ino {ino_hex}{page} pfn={pfn_txt} ofs={a}{tail}"
    elif kind == 4:
        flags = draw(st.sampled_from(["GFP_HIGHUSER_MOVABLE|__GFP_ZERO", "GFP_KERNEL|__GFP_COMP",
                                      "GFP_HIGHUSER_MOVABLE", "__GFP_ZERO|GFP_HIGHUSER_MOVABLE",
                                      "", "GFP_TRANSHUGE"]))
        ptr = draw(st.sampled_from(["00000000c5c8a7d1", "(null)", ""]))
        mt = draw(st.sampled_from(["0", "1", "-1", "--1", "12345678901234567890123"]))
        text = (f"mm_page_alloc: page={ptr} pfn={pfn_txt} order={o} migratetype={mt} "
                f"gfp_flags={flags}")
    elif kind == 5:
        text = f"mm_page_free: page=00000000c5c8a7d1 pfn={pfn_txt} order={o}"
    elif kind in (6, 7):
        name = draw(st.sampled_from(["ext4_da_write_begin", "ext4_write_begin"]))
        ln = draw(st.one_of(st.integers(0, 70000), st.sampled_from(BIG)))
        text = f"{name}: dev {maj},{mn} ino {ino} pos {a} len {ln}"
    elif kind == 8:
        nlink = draw(st.sampled_from([0, 0, 1, 2, -1, 2**63]))
        text = f"ext4_evict_inode: dev {maj},{mn} ino {ino} nlink {nlink}"
    elif kind == 9:
        f, an, u, bu = (draw(num) for _ in range(4))
        text = (f"tracing_mark_write: tagcache_sample: file={f} anon={an} usage={u} "
                f"buffers={bu}")
    elif kind == 10:
        text = draw(st.sampled_from([
            "sched_switch: prev_comm=bash prev_pid=1", "tracing_mark_write: hello: file=1",
            "tracing_mark_write: tagcache_samples are ours",
            "mm_page_alloc_zone_locked: page=01 pfn=0x1 order=0 migratetype=1 percpu_refill=1",
            "mm_filemap_fault dev=1:1 ino=1 ofs=0", "mm_filemap_fault: ",
            "mm_filemap_fault: dev=1:1 ino=1 ofs=0 2.5: mm_filemap_fault: dev=1:1 ino=2 ofs=0"]))
    elif kind == 11:
        text = f"mm_filemap_fault: dev={maj}:{mn} ino={ino_hex} ofs={a}{draw(odd)}"
    else:
        text = (f"mm_filemap_get_pages: dev={maj}:{mn}  ino={ino_hex} ofs={a}-{b}"
                if draw(st.booleans()) else
                f"mm_filemap_get_pages:  dev={maj}:{mn} ino={ino_hex} ofs=-{a}-{b}")
    return text


@st.composite
def trace_text(draw) -> str:
    lines = ["# tracer: nop", "#"]
    for i in range(draw(st.integers(1, 40))):
        comm = draw(st.sampled_from(["bash-14069", "Web Content-1234", "kworker/u8:2-ev-77",
                                     "<...>-99     (   99)", "bash14069", "a-1"]))
        lines.append(f"{comm:>16}   [{i % 3:03d}] .....  {1 + i * 1e-6:.6f}: {draw(event())}")
    return "".join(ln + "\n" for ln in lines)


def columns(trace) -> tuple:
    return (trace.op.tolist(), trace.arg0.tolist(), trace.arg1.tolist(), trace.arg2.tolist(),
            trace.files.dev.tolist(), trace.files.ino.tolist(), trace.files.size_pages.tolist(),
            trace.files.span_pages.tolist(), trace.tasks, trace.skipped_lines)


def both_ways(path, monkeypatch, **kw):
    """(compiled, line by line) results of ftrace.parse: columns, or the error's text."""
    out = []
    for slow in (False, True):
        monkeypatch.setattr(ftrace, "LINE_BY_LINE", slow)
        try:
            out.append(columns(ftrace.parse(path, **kw)))
        except TraceError as e:
            out.append(str(e))
    return out


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=trace_text())
def test_compiled_programs_equal_the_regular_expressions(text, tmp_path, monkeypatch):
    """Rows, files, tasks, skipped lines and errors: the same whether the compiled programs
    parse the usual lines or every line goes through its regular expression."""
    path = tmp_path / "r.trace"
    path.write_text(text)
    for kw in ({}, {"skip_bad_lines": True}):
        fast, slow = both_ways(path, monkeypatch, **kw)
        assert fast == slow


MARKERS = [e.marker.tobytes() for e in ftrace.ORDER]


def reference_events(text: bytes) -> list[tuple[int, int, int]]:
    """(event number in ORDER, colon offset, line) of every ``DIGIT: MARKER`` in the text, as
    the numpy search the reader had found them."""
    out = []
    for m in re.finditer(rb"(?<=[0-9]): ", text):
        for e, marker in enumerate(MARKERS):
            if text.startswith(marker, m.end()):
                out.append((e, m.start(), text.count(b"\n", 0, m.start())))
                break
    return out


@settings(max_examples=300, deadline=None)
@given(text=trace_text())
def test_scan_finds_every_event_the_reader_found(text):
    data = text.encode()
    buf = np.frombuffer(bytearray(data), np.uint8)
    scratch = ftrace._scratch(len(buf))
    n, lines = ftrace._scan(buf, *scratch, *ftrace._TABLES, GFP_USER_ANON)
    ev, pos = scratch[0][:n], scratch[1][:n]
    assert lines == data.count(b"\n")
    assert list(zip(ev.tolist(), pos[:, 0].tolist(), pos[:, 1].tolist(), strict=True)) == \
        reference_events(data)
    nl = np.flatnonzero(buf == 10)
    for r in range(len(ev)):
        line = pos[r, 1]
        assert pos[r, 2] == (nl[line - 1] + 1 if line else 0) and pos[r, 3] == nl[line]
        if ftrace.ORDER[ev[r]].kmem:
            head = data[pos[r, 2]:pos[r, 0]]
            assert pos[r, 4] == (pos[r, 2] + head.rfind(b"[") if b"[" in head else -1)


def test_usual_lines_take_the_compiled_path_and_odd_ones_the_regex(tmp_path, monkeypatch):
    """19-digit numbers, an older kernel's add line and a stray blank go to the regular
    expression; the usual lines never do."""
    calls = []
    real = ftrace._Event.slow

    def spy(self, tails):
        calls.extend(tails)
        return real(self, tails)
    monkeypatch.setattr(ftrace._Event, "slow", spy)
    usual = ("a-1 [000] ..... 1.0: mm_filemap_get_pages: dev=8:1 ino=c ofs=0-4095\n"
             "a-1 [000] ..... 1.0: mm_filemap_add_to_page_cache: dev 8:1 ino c pfn=0x1f ofs=0 "
             "order=0\n"
             "a-1 [000] ..... 1.0: mm_page_alloc: page=0000 pfn=0x1f order=0 migratetype=1 "
             "gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO\n")
    odd = ("a-1 [000] ..... 1.0: mm_filemap_fault: dev=8:1 ino=c ofs=1000000000000000000\n"
           "a-1 [000] ..... 1.0: mm_filemap_add_to_page_cache: dev 8:1 ino c page=01 pfn=31 "
           "ofs=4096\n"
           "a-1 [000] ..... 1.0: mm_filemap_fault: dev=8:1 ino=c ofs=0 \n")
    path = tmp_path / "u.trace"
    path.write_text(usual + odd)
    trace = ftrace.parse(path)
    assert len(trace) == 6 and trace.tasks == [("a", 1)]
    assert trace.arg2[2] >> 8 == 0 and trace.arg2[2] & 0xFF == GFP_USER_ANON
    assert [c.strip() for c in calls] == [
        b"dev=8:1 ino=c ofs=1000000000000000000", b"dev=8:1 ino=c ofs=0",
        b"dev 8:1 ino c page=01 pfn=31 ofs=4096"]


def test_a_line_with_several_events_gives_its_last_one_at_most(tmp_path, monkeypatch):
    """An event's fields reach the end of its line and hold no ``: `` where another could
    start, so only a line's last event can parse; the ones before it are bad lines."""
    text = ("a-1 [000] ..... 1.0: mm_page_free: page=0 pfn=0x2 order=0 x 2.0: mm_filemap_fault: "
            "dev=8:1 ino=c ofs=0 y 3.0: mm_filemap_get_pages: dev=8:1 ino=d ofs=0-4095\n"
            "a-1 [000] ..... 4.0: mm_filemap_fault: dev=8:1 ino=e ofs=0\n")
    path = tmp_path / "m.trace"
    path.write_text(text)
    fast, slow = both_ways(path, monkeypatch, skip_bad_lines=True)
    assert fast == slow
    ops, _a0, _a1, _a2, _dev, ino, *_rest, skipped = fast
    assert ops == [int(Op.GET_PAGES), int(Op.FAULT)] and ino == [0xD, 0xE] and skipped == 2
    with pytest.raises(TraceError, match=r"m\.trace:1: expected mm_filemap_fault"):
        ftrace.parse(path)


def test_a_line_longer_than_the_chunk(tmp_path, monkeypatch):
    """The buffer grows to hold it; lines keep their numbers."""
    real = _common.iter_line_arrays
    monkeypatch.setattr(ftrace, "iter_line_arrays",
                        lambda f, bad=None, lines=None: real(f, 64, bad, lines))
    good = "a-1 [000] ..... 1.0: mm_filemap_fault: dev=8:1 ino=c ofs=4096\n"
    path = tmp_path / "l.trace"
    path.write_text(good + "a-1 [000] ..... 1.0: sched_switch: " + "x" * 500 + "\n" + good
                    + good.replace("ofs=4096", "ofs=y"))
    with pytest.raises(TraceError, match=r"l\.trace:4: expected mm_filemap_fault"):
        ftrace.parse(path)
    assert len(ftrace.parse(path, skip_bad_lines=True)) == 2


def test_ftrace_uncompiled_gives_the_same_trace(tmp_path):
    """The scan's Python semantics (NUMBA_DISABLE_JIT=1, in a subprocess) equal the compiled
    ones on a file with every event, older forms, tasks and bad lines."""
    from test_traces_compiled_ids import uncompiled_and_compiled
    from trace_paths import KMEM

    path = tmp_path / "all.trace"
    path.write_text(KMEM + textwrap.dedent("""\
        sort-10 [000] ..... 1.1: ext4_da_write_begin: dev 254,0 ino 12345 pos 0 len 65536
        sort-10 [000] ..... 1.2: ext4_write_begin: dev 254,0 ino 12345 pos 69632 len 0
        rm-11 [000] ..... 1.3: ext4_evict_inode: dev 254,0 ino 12345 nlink 0
        rm-11 [000] ..... 1.4: ext4_evict_inode: dev 8,1 ino 7 nlink -1
        sh-3 [000] ...1. 1.5: tracing_mark_write: tagcache_sample: file=8192 anon=4096 usage=4096 buffers=4095
        a-1 [000] ..... 1.6: mm_filemap_fault: dev=8:1 ino=c ofs=x
        a-1 [000] ..... 1.7: mm_filemap_delete_from_page_cache: dev 254:0 ino 52db4 pfn=0x10a070 ofs=921600 order=2
        a-1 [000] ..... 1.8: mm_filemap_get_pages: dev=8:1 ino=c ofs=4096-8191
    """))  # noqa: E501
    slow, fast = uncompiled_and_compiled(tmp_path, [(str(path), "ftrace")])
    assert slow == fast and len(fast.split()) == 1
