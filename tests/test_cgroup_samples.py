"""The cgroup's samples in a capture: ``tagcache_sample:`` trace_marker lines (written by the
recorder, record/sampling.py) read as Op.CGROUP_SAMPLE rows (traces/ftrace.py), and every
consumer of a trace coping with them. The recorder on a real machine: tests/capture/
test_capture_cgroup_samples.py."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import zstandard

from tagcache.cli import main
from tagcache.errors import TraceError
from tagcache.record.sampling import Sampler, marker_line
from tagcache.traces import detect_format, ftrace, read_trace
from tagcache.workloads.events import Op

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "data" / "captures" / "mini-grep.trace.zst"
S = int(Op.CGROUP_SAMPLE)

MARK = "tracing_mark_write: tagcache_sample:"


def line(comm_pid: str, cpu: int, t: float, event: str) -> str:
    flags = "...1." if event.startswith("tracing_mark_write") else "....."
    return f"{comm_pid:>16} [{cpu:03d}] {flags} {t:.6f}: {event}\n"


SNIPPET = "".join([
    "# tracer: nop\n#\n#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n",
    line("sh-3409", 0, 9429.397740, f"{MARK} file=0 anon=0 usage=0 buffers=0"),
    line("sh-3409", 0, 9429.397900, "mm_filemap_get_pages: dev=254:0 ino=52db4 ofs=0-8191"),
    line("sh-3409", 0, 9429.397950, "mm_filemap_add_to_page_cache: dev 254:0 ino 52db4 "
                                    "pfn=0x1234 ofs=0 order=1"),
    line("python-3406", 1, 9429.411135, f"{MARK} file=2560000 anon=229376 usage=3334144 "
                                        "buffers=1966080"),
    line("python-3406", 1, 9429.411200, "tracing_mark_write: someone else's marker: file=1"),
    line("python-3406", 1, 9429.411300, "tracing_mark_write: tagcache_samples are ours"),
    line("cat-3409", 0, 9429.420000, "mm_filemap_fault: dev=254:0 ino=52db4 ofs=4096"),
    line("cat-3409", 0, 9429.420100, "mm_filemap_map_pages: dev=254:0 ino=52db4 ofs=0-4095"),
    line("python-3406", 1, 9429.421988, f"{MARK} file=8192 anon=4096 usage=4096 buffers=4095"),
])
ROWS = [(S, 0, 0, 0),
        (int(Op.GET_PAGES), 0, 0, 2),
        (int(Op.KERNEL_ADD), 0, 0, 1),
        (S, 2560000 // 4096, (3334144 - 2560000) // 4096, 1966080 // 4096),
        (int(Op.FAULT), 0, 1, 0),
        (int(Op.MAP_PAGES), 0, 0, 1),
        (S, 2, 0, 0)]          # usage below file (read a moment later): other pages at least 0


def rows(trace) -> list[tuple[int, int, int, int]]:
    return list(zip(trace.op.tolist(), trace.arg0.tolist(), trace.arg1.tolist(),
                    trace.arg2.tolist(), strict=True))


def write(tmp_path: Path, text: str, name: str = "s.trace") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_op_number():
    assert Op.CGROUP_SAMPLE == 36 and Op(36).name == "CGROUP_SAMPLE"


def test_markers_are_rows_between_the_events(tmp_path, monkeypatch):
    path = write(tmp_path, SNIPPET)
    assert detect_format(path) == "ftrace"
    trace = ftrace.parse(path)
    assert rows(trace) == ROWS
    assert trace.skipped_lines == 0 and trace.tasks == []     # markers name no task
    assert len(trace.files) == 1 and trace.files.span_pages.tolist() == [2]
    # the line-by-line path agrees
    monkeypatch.setattr(ftrace, "LINE_BY_LINE", True)
    assert rows(ftrace.parse(path)) == ROWS


def test_the_recorders_text_is_what_the_reader_reads(tmp_path):
    line = marker_line(123 * 4096, 7 * 4096 + 5, 200 * 4096, 9 * 4096)
    assert line == (b"tagcache_sample: file=503808 anon=28677 usage=819200 "
                    b"buffers=36864\n")
    text = ("# tracer: nop\n              sh-1 [000] .....   1.000000: mm_filemap_fault: "
            "dev=8:1 ino=a ofs=0\n          python-2 [001] ...1.   1.000100: "
            "tracing_mark_write: " + line.decode())
    trace = ftrace.parse(write(tmp_path, text))
    assert rows(trace)[-1] == (S, 123, 77, 9)


def test_only_markers_still_a_trace(tmp_path):
    lines = SNIPPET.splitlines(keepends=True)
    text = "".join(ln for ln in lines if "mm_filemap" not in ln)
    trace = ftrace.parse(write(tmp_path, text))
    assert [r[0] for r in rows(trace)] == [S, S, S] and len(trace.files) == 0


@pytest.mark.parametrize("bad", [
    "tagcache_sample: file=1 anon=2 usage=3",                      # a field missing
    "tagcache_sample: file=1 anon=2 buffers=4 usage=3",            # out of order
    "tagcache_sample: file=x anon=2 usage=3 buffers=4",            # not a number
    "tagcache_sample: file=-1 anon=2 usage=3 buffers=4",
    "tagcache_sample: file=99999999999999999999 anon=2 usage=3 buffers=4",   # > 64 bits
    "tagcache_sample:file=1 anon=2 usage=3 buffers=4 extra=5",
    "tagcache_sample:",
])
def test_a_malformed_marker_is_a_bad_line(tmp_path, bad):
    lines = SNIPPET.splitlines(keepends=True)
    at = next(i for i, ln in enumerate(lines) if "file=2560000" in ln)
    lines[at] = lines[at].split("tracing_mark_write: ")[0] + "tracing_mark_write: " + bad + "\n"
    path = write(tmp_path, "".join(lines))
    with pytest.raises(TraceError, match=rf"s\.trace:{at + 1}: "):
        ftrace.parse(path)
    trace = ftrace.parse(path, skip_bad_lines=True)
    assert trace.skipped_lines == 1
    assert rows(trace) == ROWS[:3] + ROWS[4:]


def test_a_good_marker_after_a_bad_one_in_the_same_chunk_is_kept(tmp_path):
    text = SNIPPET.replace("file=0 anon=0 usage=0 buffers=0", "file=0 anon=0")
    trace = ftrace.parse(write(tmp_path, text), skip_bad_lines=True)
    assert trace.skipped_lines == 1 and rows(trace) == ROWS[1:]


def with_markers(src: Path, dest: Path, every: int) -> int:
    """``src`` (a capture) with a marker line after every ``every`` event lines, copying the
    timestamp before it, the last one at the end, and its sidecar beside; markers written."""
    text = zstandard.ZstdDecompressor().decompressobj().decompress(src.read_bytes()).decode()
    out, n, k = [], 0, 0
    stamp = re.compile(r"^(.*?\s)(\d+\.\d+): ")
    for line in text.splitlines(keepends=True):
        out.append(line)
        if line.startswith("#"):
            continue
        k += 1
        if k % every == 0:
            m = stamp.match(line)
            assert m
            out.append(f"          python-99     [001] ...1. {m.group(2)}: tracing_mark_write: "
                       f"tagcache_sample: file={n * 4096} anon=8192 usage={n * 4096 + 65536} "
                       f"buffers={4096 * (n % 3)}\n")
            n += 1
    dest.write_bytes(zstandard.ZstdCompressor().compress("".join(out).encode()))
    side = json.loads(src.with_name(src.name.replace(".trace.zst", ".json")).read_text())
    side["name"] = dest.name.replace(".trace.zst", "")
    side["cgroup_samples"] = n
    dest.with_name(dest.name.replace(".trace.zst", ".json")).write_text(json.dumps(side))
    return n


def test_consumers_of_a_capture_with_markers(tmp_path, capsys, monkeypatch):
    """A real capture with markers among its events: the reader gives the same rows as
    without them plus the samples; `tagcache run --trace` replays it (the replay ignores
    CGROUP_SAMPLE) and `tagcache validate` validates it."""
    monkeypatch.setenv("TAGCACHE_CACHE_DIR", str(tmp_path / "cache"))
    marked = tmp_path / "marked.trace.zst"
    n = with_markers(MINI, marked, 97)
    plain, got = read_trace(MINI, use_cache=False), read_trace(marked, use_cache=False)
    s = got.op == S
    assert int(s.sum()) == n > 10
    for col in ("op", "arg0", "arg1", "arg2"):
        assert np.array_equal(getattr(got, col)[~s], getattr(plain, col)), col
    assert np.array_equal(np.flatnonzero(s), 97 * np.arange(1, n + 1) + np.arange(n))
    assert got.arg1[s].tolist() == [16] * n and got.arg2[s].tolist() == [i % 3 for i in range(n)]
    assert np.array_equal(got.files.span_pages, plain.files.span_pages)

    assert main(["run", "--no-progress", "--trace", str(marked), "--tagged-share", "0.01",
                 "--backend", "idle", "--json", "-"]) == 0
    out = json.loads(capsys.readouterr().out)
    for r in out["results"]:
        assert set(r["invariants"].values()) == {0}
        assert r["page_cache"]["insertions"] > 0
    v = tmp_path / "v.json"
    assert main(["validate", str(marked), "--json", str(v)]) == 0
    capsys.readouterr()
    assert json.loads(v.read_text())["kernel"]["insertions"] > 0


class FakeCgroup:
    """What Sampler reads of a MemoryCgroup."""

    def __init__(self) -> None:
        self.file, self.anon, self.usage = 0, 0, 0

    def stat(self) -> dict[str, int]:
        return {"cache": self.file, "rss": self.anon}

    def cache_bytes(self, stat: dict[str, int]) -> int:
        return stat["cache"]

    def anon_bytes(self, stat: dict[str, int]) -> int:
        return stat["rss"]

    def usage_bytes(self) -> int:
        return self.usage

    def pids(self) -> list[int]:
        return []


def test_sampler_writes_one_line_a_sample_and_counts_them(tmp_path, monkeypatch):
    """The first sample is CMD's to write (counted once CMD started), each later one is one
    write(2) of one line to the kept-open marker file; a failed write is not counted."""
    import tagcache.record.sampling as sampling

    buffers = iter([10 << 20, 10 << 20, (10 << 20) + 8192, (10 << 20) - 4096, 0])
    monkeypatch.setattr(sampling, "buffers_bytes", lambda: next(buffers))
    writes: list[bytes] = []
    real_write = os.write
    monkeypatch.setattr(sampling.os, "write",
                        lambda fd, b: writes.append(b) or real_write(fd, b))
    marker = tmp_path / "trace_marker"
    marker.touch()
    cg = FakeCgroup()
    cg.usage = 8192
    with Sampler(cg, 0.01, marker=marker) as sampler:          # type: ignore[arg-type]
        assert sampler.first_marker == marker_line(0, 0, 8192, 0)
        assert sampler.samples_written == 0 and writes == []
        sampler.started()
        cg.file, cg.anon, cg.usage = 4096 * 5, 4096, 4096 * 9
        sampler.mark(sampler.sample())
        cg.file = 4096 * 3
        sampler.mark(sampler.sample())
        assert sampler.samples_written == 3
        assert writes == [marker_line(20480, 4096, 36864, 8192),
                          marker_line(12288, 4096, 36864, 0)]       # Buffers fell: 0
        assert sampler.cache_peak == 20480 and sampler.buffers.peak == 8192
        os.close(sampler._marker_fd)                # the next write fails: not counted
        sampler.mark(sampler.sample())
        assert sampler.samples_written == 3
        sampler._marker_fd = None
    assert marker.read_bytes() == b"".join(writes[:2])
