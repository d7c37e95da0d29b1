"""The extra sidecar fields without a capture: mincore residency, /proc/PID/maps, read_ahead_kb,
the sidecar's text, and the small capture of tests/data/captures."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import zstandard
from _capture_helpers import check_new_fields, check_runs, self_libc

import tagcache.record as capture
from tagcache.record import parse_maps, resident_runs

PAGE = capture.PAGE_SIZE
DATA = Path(__file__).parents[1] / "data" / "captures"


def test_resident_runs_of_read_file_then_dropped(tmp_path: Path) -> None:
    p = tmp_path / "f"
    size = 17 * PAGE - 100
    with open(p, "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.pread(fd, size + 1, 0)  # read all: every page resident
        assert resident_runs(fd) == [[0, 17]]
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # clean after fsync: dropped
        assert resident_runs(fd) == []
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead: just what is read
        os.pread(fd, 10, 3 * PAGE)
        os.pread(fd, 2 * PAGE, 7 * PAGE)
        assert resident_runs(fd) == [[3, 1], [7, 2]]
        assert resident_runs(fd) == [[3, 1], [7, 2]]  # mincore itself faults nothing in
    finally:
        os.close(fd)


def test_resident_runs_of_sparse_and_empty_files(tmp_path: Path) -> None:
    sparse, empty = tmp_path / "sparse", tmp_path / "empty"
    with open(sparse, "wb") as f:
        f.truncate(1 << 20)
    empty.touch()
    for p in (sparse, empty):
        fd = os.open(p, os.O_RDONLY)
        try:
            assert resident_runs(fd) == []
        finally:
            os.close(fd)


def test_parse_maps() -> None:
    text = (
        "55d0c8a00000-55d0c8a02000 r--p 00000000 fe:00 260131      /usr/bin/cat\n"
        "55d0c8a02000-55d0c8a07000 r-xp 00002000 fe:00 260131      /usr/bin/cat\n"
        "55d0ca000000-55d0ca021000 rw-p 00000000 00:00 0           [heap]\n"
        "7f0000000000-7f0000001000 r--p 00000000 00:00 0 \n"
        "7f0000001000-7f0000002000 r--s 00000000 103:0a 77          /a dir/with space.so\n"
        "7f0000002000-7f0000003000 rw-s 00000000 00:01 1234        /dev/zero (deleted)\n"
        "7f0000003000-7f0000004000 rw-s 00000000 00:0e 1056        anon_inode:[perf_event]\n"
        "7fff00000000-7fff00002000 r-xp 00000000 00:00 0           [vdso]\n")
    assert list(parse_maps(text)) == [
        (254, 0, 260131, "/usr/bin/cat", 0x55d0c8a00000, 0x55d0c8a02000),
        (254, 0, 260131, "/usr/bin/cat", 0x55d0c8a02000, 0x55d0c8a07000),
        (259, 10, 77, "/a dir/with space.so", 0x7f0000001000, 0x7f0000002000),
    ]


def test_resident_at_start_has_own_libc() -> None:
    """Without dropping caches: this process's libc is mapped, so resident, so listed."""
    res = capture.resident_at_start()
    key, path = self_libc()
    st = os.stat(path)
    assert key == f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}:{st.st_ino:x}"
    assert key in res
    check_runs(res[key], -(-st.st_size // PAGE))
    assert list(res) == sorted(res, key=lambda k: tuple(int(x, 16 if i == 2 else 10)
                                                        for i, x in enumerate(k.split(":"))))


def test_resident_at_start_bounds(tmp_path: Path) -> None:
    key, _ = self_libc()
    assert key not in capture.resident_at_start(max_file_bytes=4096)
    assert len(capture.resident_at_start(max_files=3)) <= 3


def test_bdi_read_ahead_kb(tmp_path: Path) -> None:
    for name, kb in (("254:0", "8192\n"), ("7:0", "128\n"), ("btrfs-1", "4096\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "read_ahead_kb").write_text(kb)
    (tmp_path / "8:0").mkdir()  # no read_ahead_kb: left out
    assert capture.bdi_read_ahead_kb(tmp_path) == {"7:0": 128, "254:0": 8192}
    assert list(capture.bdi_read_ahead_kb(tmp_path)) == ["7:0", "254:0"]
    assert capture.bdi_read_ahead_kb(tmp_path / "nope") == {}


def test_sidecar_json_keeps_the_old_layout() -> None:
    old = {"name": "x", "limit_mib": 16, "seconds": 0.5, "command": "sh -c 'a \"b\"'",
           "kernel": {"cache": 1, "cache_peak": 2}, "empty": {}}
    assert capture.sidecar_json(old) == json.dumps(old, indent=1) + "\n"
    new = dict(old, read_ahead_kb={"254:0": 8192},
               resident_at_start={"254:0:52db4": [[0, 471], [500, 3]]})
    text = capture.sidecar_json(new)
    assert json.loads(text) == new
    assert '\n  "254:0:52db4": [[0, 471], [500, 3]]\n' in text


def test_small_capture_of_the_test_data() -> None:
    """tests/data/captures/mini-grep: small, well-formed, with re-insertions."""
    trace, side_path = DATA / "mini-grep.trace.zst", DATA / "mini-grep.json"
    assert trace.stat().st_size + side_path.stat().st_size < 60_000
    side = json.loads(side_path.read_text())
    assert {"name", "limit_mib", "seconds", "trace_overrun_events", "command", "exit_code",
            "kernel", "read_ahead_kb", "resident_at_start"} <= set(side)
    assert side["trace_overrun_events"] == 0 and side["exit_code"] == 0
    check_new_fields(side)
    with open(trace, "rb") as f:
        text = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f)).read()
    adds = re.findall(r": mm_filemap_add_to_page_cache: dev (\d+:\d+) ino ([0-9a-f]+) "
                      r"pfn=0x[0-9a-f]+ ofs=(\d+) order=(\d+)", text)
    accessed = set(re.findall(r": mm_filemap_(?:get_pages|map_pages|fault): dev=(\d+:\d+) "
                              r"ino=([0-9a-f]+) ", text))
    pages = [(d, i, int(o) // PAGE + k) for d, i, o, order in adds if (d, i) in accessed
             for k in range(1 << int(order))]
    assert len(pages) > len(set(pages))  # re-insertions: the second pass missed
    devs = {d for d, _ in accessed}
    assert devs <= set(side["read_ahead_kb"])  # every accessed device has its bdi
    assert any(k.rsplit(":", 1)[0] in devs for k in side["resident_at_start"])


def test_small_capture_sidecar_loads() -> None:
    from tagcache.sidecar import load_sidecar

    side = load_sidecar(DATA / "mini-grep.json")
    assert side["kernel"]["cache_peak"] > 0


def test_exec_maps_lists_executable_file_mappings_in_file_pages() -> None:
    text = (
        "55d0c8a00000-55d0c8a02000 r--p 00000000 fe:00 260131      /usr/bin/cat\n"
        "55d0c8a02000-55d0c8a07000 r-xp 00002000 fe:00 260131      /usr/bin/cat\n"
        "7f0000000000-7f0000010000 r-xp 0001e000 103:0a 77          /a dir/lib.so\n"
        "7f0000010000-7f0000011000 rwxp 00000000 00:00 0           [heap]\n"
        "7fff00000000-7fff00002000 r-xp 00000000 00:00 0           [vdso]\n")
    assert list(capture.exec_maps(text)) == [("254:0:3f823", 2, 5), ("259:10:4d", 30, 16)]


def test_exec_mappings_merge_samples_per_file(tmp_path: Path) -> None:
    """Samples of several processes: one entry per file, runs sorted and merged, pids that
    exited meanwhile skipped."""
    def maps(pid: int, *lines: str) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "maps").write_text("".join(ln + "\n" for ln in lines))

    maps(10, "1000-3000 r-xp 00004000 fe:00 255 /bin/a",
         "7000-8000 r-xp 00000000 fe:00 4096 /lib/b.so")
    maps(11, "1000-2000 r-xp 00006000 fe:00 255 /bin/a",          # adjacent to 4..5: merged
         "5000-6000 r-xp 00009000 fe:00 255 /bin/a")               # a second run
    em = capture.ExecMappings(tmp_path)
    em.sample([10, 11, 12])                                        # 12 has exited
    em.sample([11])
    assert em.runs() == {"254:0:ff": [[4, 3], [9, 1]], "254:0:1000": [[0, 1]]}
    assert list(em.runs()) == ["254:0:ff", "254:0:1000"]
