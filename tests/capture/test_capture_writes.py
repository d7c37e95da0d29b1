"""A real capture of a command that writes a file on ext4, reads it back and deletes it: its
ext4 write and eviction events are in the trace (the recorder enables them where the kernel
has them, record/tracefs.py), read as Op.WRITE and Op.UNLINK rows of the same file id as the
filemap events of that file. The machine is left as found (fixture ``clean_machine``)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import zstandard
from _capture_helpers import Machine, needs_capture

from tagcache.record import record
from tagcache.record.machine import mount_filesystems
from tagcache.record.tracefs import EXT4_EVENTS
from tagcache.traces import read_trace
from tagcache.workloads.events import Op

pytestmark = needs_capture

MIB = 1 << 20
SCRIPT = 'dd if=/dev/zero of="$TMP/f" bs=64k count=16 2>/dev/null; cat "$TMP/f" > /dev/null; ' \
         'rm "$TMP/f"'


def test_capture_has_the_commands_writes_and_its_deletion(tmp_path: Path, tracefs: Path,
                                                          clean_machine: Machine,
                                                          monkeypatch) -> None:
    missing = [e for e in EXT4_EVENTS if not (tracefs / "events" / "ext4" / e).is_dir()]
    if missing:
        pytest.skip(f"this kernel has no ext4 tracepoints {missing}")
    work = tmp_path / "work"
    work.mkdir()
    st = os.stat(work)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    if mount_filesystems().get(dev) != "ext4":
        pytest.skip(f"pytest's tmp dir {work} is not on ext4 (device {dev}: "
                    f"{mount_filesystems().get(dev)})")
    monkeypatch.setenv("TMP", str(work))
    monkeypatch.setenv("TAGCACHE_CACHE_DIR", str(tmp_path / "cache"))
    res = record("writes", 64 * MIB, ["sh", "-c", SCRIPT], out_dir=tmp_path, buffer_bytes=8 * MIB)
    assert res.exit_code == 0 and res.lost_events == 0, res.warnings
    assert not (work / "f").exists()
    for e in EXT4_EVENTS:
        assert e in res.events
    with open(res.trace_path, "rb") as f:
        text = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f)).read()
    # the kernel's lines: dev with a comma, the inode in decimal; the filemap events name it
    # in hex
    writes = [ln for ln in text.splitlines() if "_write_begin: " in ln]
    assert writes and all(f" dev {dev.replace(':', ',')} ino " in ln for ln in writes)
    ino = int(writes[0].split(" ino ")[1].split()[0])
    assert f"dev={dev} ino={ino:x} " in text           # cat's reads of the same file

    trace = read_trace(res.trace_path, use_cache=False)
    assert trace.skipped_lines == 0
    (fid,) = np.flatnonzero((trace.files.ino == ino)
                            & (trace.files.dev == (os.major(st.st_dev) << 20
                                                   | os.minor(st.st_dev))))
    op, a0 = trace.op, trace.arg0
    w = (op == Op.WRITE) & (a0 == fid)
    # dd wrote 16 x 64 KiB: 256 pages, each once, in order from page 0
    assert int(trace.arg2[w].sum()) == 256
    assert int(w.sum()) >= 16 and trace.files.size_pages[fid] == 256
    got = (op == Op.GET_PAGES) & (a0 == fid)
    assert got.any()                                     # cat read it back
    un = np.flatnonzero((op == Op.UNLINK) & (a0 == fid))
    assert len(un) == 1                                  # rm deleted it: evicted with nlink 0
    # in order: the writes, then cat's reads, then the deletion
    assert np.flatnonzero(w).max() < np.flatnonzero(got).min() < un[0]
    # and the pages written went into the page cache as the kernel's insertions
    adds = (op == Op.KERNEL_ADD) & (a0 == fid)
    assert int((1 << trace.arg2[adds]).sum()) == 256
