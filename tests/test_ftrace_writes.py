"""ext4's writes and evictions in a tracefs capture (traces/ftrace.py): ``ext4_da_write_begin``
and ``ext4_write_begin`` become Op.WRITE rows, ``ext4_evict_inode`` with nlink 0 an Op.UNLINK
row, of the same file ids as the filemap events although ext4 prints ``dev M,m`` and decimal
inodes where the filemap events print ``M:m`` and hex. Every test runs on both of the reader's
paths: the vectorised one and the line-by-line one. The recorder on a real machine:
tests/capture/test_capture_writes.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tagcache.errors import TraceError
from tagcache.traces import detect_format, ftrace, read_trace
from tagcache.workloads.events import Op

W, U = int(Op.WRITE), int(Op.UNLINK)
G, A, D, F = int(Op.GET_PAGES), int(Op.KERNEL_ADD), int(Op.KERNEL_DELETE), int(Op.FAULT)


def line(comm_pid: str, t: float, event: str, cpu: int = 0) -> str:
    return f"{comm_pid:>16} [{cpu:03d}] ..... {t:.6f}: {event}\n"


HEADER = "# tracer: nop\n#\n#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
# sort writes a temp file (ino 12345 = 0x3039), reads it back, deletes it; another file
# (0x52db4 = 339380) is read first and written later; an inode cache eviction in between
SNIPPET = HEADER + "".join([
    line("sort-10", 1.000000, "mm_filemap_get_pages: dev=254:0 ino=52db4 ofs=0-8191"),
    line("sort-10", 1.000001, "mm_filemap_add_to_page_cache: dev 254:0 ino 52db4 pfn=0x100 "
                              "ofs=0 order=1"),
    line("sort-10", 1.000100, "ext4_da_write_begin: dev 254,0 ino 12345 pos 0 len 65536"),
    line("sort-10", 1.000101, "mm_filemap_add_to_page_cache: dev 254:0 ino 3039 pfn=0x200 "
                              "ofs=0 order=4"),
    line("sort-10", 1.000200, "ext4_da_write_begin: dev 254,0 ino 12345 pos 65536 len 100"),
    line("sort-10", 1.000201, "ext4_write_begin: dev 254,0 ino 12345 pos 69632 len 0"),
    line("sort-10", 1.000300, "ext4_write_begin: dev 254,0 ino 12345 pos 77820 len 10"),
    line("sort-10", 1.000400, "ext4_evict_inode: dev 254,0 ino 339380 nlink 1"),
    line("sort-10", 1.000500, "mm_filemap_get_pages: dev=254:0 ino=3039 ofs=0-65535"),
    line("sort-10", 1.000600, "mm_filemap_fault: dev=254:0 ino=3039 ofs=4096"),
    line("sort-10", 1.000700, "ext4_da_write_begin: dev 254,0 ino 339380 pos 409600 len 4096",
         cpu=1),
    line("rm-11", 1.000800, "ext4_evict_inode: dev 254,0 ino 12345 nlink 0"),
    line("rm-11", 1.000801, "mm_filemap_delete_from_page_cache: dev 254:0 ino 3039 pfn=0x200 "
                            "ofs=0 order=4"),
    line("rm-11", 1.000900, "ext4_evict_inode: dev 8,1 ino 7 nlink -1"),
])
ROWS = [(G, 0, 0, 2),
        (A, 0, 0, 1),
        (W, 1, 0, 16),
        (A, 1, 0, 4),
        (W, 1, 16, 1),            # 100 bytes at 64 KiB
        (W, 1, 18, 2),            # 10 bytes across the boundary of pages 18 and 19
        (G, 1, 0, 16),
        (F, 1, 1, 0),
        (W, 0, 100, 1),
        (U, 1, 0, 0),
        (D, 1, 0, 4)]


def rows(trace) -> list[tuple[int, int, int, int]]:
    return list(zip(trace.op.tolist(), trace.arg0.tolist(), trace.arg1.tolist(),
                    trace.arg2.tolist(), strict=True))


def write(tmp_path: Path, text: str, name: str = "w.trace") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture(params=["fast", "slow"])
def path_kind(request, monkeypatch) -> str:
    """Each test twice: as the reader runs, and with every event parsed line by line."""
    if request.param == "slow":
        monkeypatch.setattr(ftrace, "LINE_BY_LINE", True)
    return request.param


def test_op_numbers():
    assert (Op.WRITE, Op.UNLINK) == (1, 5)


def test_writes_and_deletions_are_rows_of_the_filemap_files(tmp_path, path_kind):
    path = write(tmp_path, SNIPPET)
    trace = ftrace.parse(path)
    assert rows(trace) == ROWS
    assert trace.skipped_lines == 0
    # one file per (dev, ino): 254,0 / 12345 is 254:0 / 3039; dev 8,1 ino 7 never got a row
    assert trace.files.dev.tolist() == [254 << 20, 254 << 20]
    assert trace.files.ino.tolist() == [0x52DB4, 12345]
    # size: the highest page inserted or written (page 100 of the first file, 19 of the
    # temp file); span: the same here
    assert trace.files.size_pages.tolist() == [101, 20]
    assert trace.files.span_pages.tolist() == [101, 20]


def test_fast_path_reads_the_ext4_lines_without_the_slow_one(tmp_path, monkeypatch):
    def refuse(self, tails):
        raise AssertionError(f"{self.name!r} went line by line")
    monkeypatch.setattr(ftrace._Event, "slow", refuse)
    # the negative nlink is the slow path's (the compiled one takes no sign): leave it out
    text = "".join(ln for ln in SNIPPET.splitlines(keepends=True) if "nlink -1" not in ln)
    assert rows(ftrace.parse(write(tmp_path, text))) == ROWS


def test_same_rows_on_both_paths_over_many_lines(tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    out = [HEADER]
    for i in range(3000):
        ino = int(rng.integers(1, 40))
        kind = int(rng.integers(0, 5))
        pos = int(rng.integers(0, 1 << 24))
        t = 1 + i * 1e-6
        if kind == 0:
            out.append(line("dd-5", t, f"ext4_da_write_begin: dev 254,0 ino {ino} pos {pos} "
                                       f"len {int(rng.integers(0, 1 << 17))}"))
        elif kind == 1:
            out.append(line("dd-5", t, f"ext4_write_begin: dev 254,0 ino {ino} pos {pos} "
                                       f"len {int(rng.integers(0, 9000))}"))
        elif kind == 2:
            out.append(line("rm-6", t, f"ext4_evict_inode: dev 254,0 ino {ino} "
                                       f"nlink {int(rng.integers(0, 2))}"))
        elif kind == 3:
            out.append(line("cat-7", t, f"mm_filemap_get_pages: dev=254:0 ino={ino:x} "
                                        f"ofs={pos & ~4095}-{(pos | 4095) + 8192}"))
        else:
            out.append(line("cat-7", t, f"mm_filemap_add_to_page_cache: dev 254:0 ino {ino:x} "
                                        f"pfn=0x{i:x} ofs={pos & ~4095} order=0"))
    path = write(tmp_path, "".join(out))
    fast = ftrace.parse(path)
    monkeypatch.setattr(ftrace, "LINE_BY_LINE", True)
    slow = ftrace.parse(path)
    assert rows(fast) == rows(slow)
    assert {W, U, G, A} <= set(fast.op.tolist())
    assert len(fast.files) == len(set(fast.files.ino.tolist())) <= 39
    for col in ("dev", "ino", "size_pages", "span_pages"):
        assert np.array_equal(getattr(fast.files, col), getattr(slow.files, col))


def test_64_bit_inodes_are_the_same_file_in_hex_and_decimal(tmp_path, path_kind):
    big = (1 << 64) - 2
    text = HEADER + "".join([
        line("a-1", 1.0, f"mm_filemap_get_pages: dev=254:0 ino={big:x} ofs=0-4095"),
        line("a-1", 1.1, f"ext4_write_begin: dev 254,0 ino {big} pos 0 len 4096"),
        line("a-1", 1.2, f"ext4_evict_inode: dev 254,0 ino {big} nlink 0"),
    ])
    trace = ftrace.parse(write(tmp_path, text))
    assert rows(trace) == [(G, 0, 0, 1), (W, 0, 0, 1), (U, 0, 0, 0)]
    assert trace.files.ino.tolist() == [big - (1 << 64)]


def test_a_deleted_file_named_by_nothing_else(tmp_path, path_kind):
    """An eviction names no page: its file is in the table, with no span and no extent."""
    text = SNIPPET + line("rm-11", 2.0, "ext4_evict_inode: dev 254,0 ino 99 nlink 0")
    trace = ftrace.parse(write(tmp_path, text))
    assert rows(trace) == ROWS + [(U, 2, 0, 0)]
    assert trace.files.ino.tolist()[2] == 99
    assert (trace.files.size_pages[2], trace.files.span_pages[2]) == (0, 0)
    assert 2 not in trace.extents.file.tolist()


def test_only_ext4_lines_still_a_trace(tmp_path, path_kind):
    text = "".join(ln for ln in SNIPPET.splitlines(keepends=True) if ": mm_" not in ln)
    path = write(tmp_path, text.replace(HEADER, ""))
    assert detect_format(path) == "ftrace"
    trace = read_trace(path, "ftrace", use_cache=False)
    assert [r[0] for r in rows(trace)] == [W, W, W, W, U]
    assert trace.files.ino.tolist() == [12345, 339380]


BAD = [
    ("ext4_da_write_begin", "dev 254,0 ino 12345 pos 0"),               # a field missing
    ("ext4_da_write_begin", "dev 254,0 ino 12345 len 4096 pos 0"),      # out of order
    ("ext4_da_write_begin", "dev 254:0 ino 12345 pos 0 len 4096"),      # the filemap dev
    ("ext4_da_write_begin", "dev 254,0 ino 3039a pos 0 len 4096"),      # a hex inode
    ("ext4_write_begin", "dev 254,0 ino 12345 pos -4096 len 4096"),
    ("ext4_write_begin", "dev 254,0 ino 12345 pos 0 len 4096 flags 0"),
    ("ext4_write_begin", f"dev 254,0 ino 12345 pos 0 len {(1 << 32) + 1}"),   # > one request
    ("ext4_write_begin", f"dev 254,0 ino 12345 pos {(1 << 63) - 100} len 4096"),  # > 2**63-1
    ("ext4_write_begin", f"dev 254,0 ino {1 << 64} pos 0 len 4096"),    # > 64 bits
    ("ext4_write_begin", "dev 4096,0 ino 12345 pos 0 len 4096"),        # not a device
    ("ext4_evict_inode", "dev 254,0 ino 12345 nlink"),
    ("ext4_evict_inode", "dev 254,0 ino 12345 nlink x"),
    ("ext4_evict_inode", "dev 254,0 ino 12345"),
    ("ext4_evict_inode", "dev 254,0 ino 12345 nlink 0 mode 0100644"),
]


@pytest.mark.parametrize(("event", "fields"), BAD)
def test_a_malformed_ext4_line_is_a_bad_line(tmp_path, path_kind, event, fields):
    lines = SNIPPET.splitlines(keepends=True)
    # the line of a row: the first write of the temp file, its last, its deletion
    which, row = {"ext4_da_write_begin": ("pos 0 len 65536", (W, 1, 0, 16)),
                  "ext4_write_begin": ("pos 77820", (W, 1, 18, 2)),
                  "ext4_evict_inode": ("nlink 0", (U, 1, 0, 0))}[event]
    at = next(i for i, ln in enumerate(lines) if which in ln)
    drop = ROWS.index(row)
    lines[at] = lines[at].split(f"{event}: ")[0] + f"{event}: {fields}\n"
    path = write(tmp_path, "".join(lines))
    with pytest.raises(TraceError, match=rf"w\.trace:{at + 1}: ") as e:
        ftrace.parse(path)
    assert fields[:20] in str(e.value)
    trace = ftrace.parse(path, skip_bad_lines=True)
    assert trace.skipped_lines == 1
    assert rows(trace) == ROWS[:drop] + ROWS[drop + 1:]


def test_a_negative_nlink_is_no_row_and_no_error(tmp_path, path_kind):
    trace = ftrace.parse(write(tmp_path, SNIPPET))       # its last line: nlink -1
    assert trace.skipped_lines == 0 and rows(trace)[-1] == ROWS[-1]


def test_the_error_says_what_is_wrong(tmp_path):
    text = HEADER + line("a-1", 1.0, f"ext4_write_begin: dev 254,0 ino 5 pos {(1 << 63) - 1} "
                                     "len 4096")
    with pytest.raises(TraceError, match=r"past the largest file offset"):
        ftrace.parse(write(tmp_path, text))


# --------------------------------------------------------------------------- the recorder

def fake_tracefs(root: Path, with_ext4: bool) -> Path:
    """A directory shaped like tracefs: events/SYSTEM/EVENT/enable for the events it has."""
    from tagcache.record.tracefs import EXT4_EVENTS, FILEMAP_EVENTS, KMEM_EVENTS
    events = [("filemap", e) for e in FILEMAP_EVENTS] + [("kmem", e) for e in KMEM_EVENTS]
    if with_ext4:
        events += [("ext4", e) for e in EXT4_EVENTS] + [("ext4", "ext4_free_inode")]
    for system, event in events:
        (root / "events" / system / event).mkdir(parents=True)
        (root / "events" / system / event / "enable").write_text("0\n")
    (root / "instances").mkdir()
    return root


@pytest.mark.parametrize("with_alloc", [False, True])
def test_the_recorder_adds_ext4_events_where_the_kernel_has_them(tmp_path, with_alloc):
    from tagcache.record.tracefs import capture_events
    got = capture_events(fake_tracefs(tmp_path / "a", True), with_alloc)
    ext4 = [("ext4", "ext4_da_write_begin"), ("ext4", "ext4_write_begin"),
            ("ext4", "ext4_evict_inode")]
    assert got[-3:] == ext4 and len(got) == 5 + 2 * with_alloc + 3
    # optional: a kernel without them still records, with the filemap events only
    got = capture_events(fake_tracefs(tmp_path / "b", False), with_alloc)
    assert len(got) == 5 + 2 * with_alloc and all(s != "ext4" for s, _ in got)
