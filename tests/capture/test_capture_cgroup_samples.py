"""A real capture's samples of its cgroup: ``tagcache_sample:`` lines the recorder writes into
its instance's trace_marker (set_event_pid filters events, not markers), read back as
Op.CGROUP_SAMPLE rows. The machine is left as found (fixture ``clean_machine``)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import zstandard
from _capture_helpers import Machine, needs_capture

from tagcache.record import record
from tagcache.traces import read_trace
from tagcache.workloads.events import Op

pytestmark = needs_capture

MIB = 1 << 20
LIMIT = 32 * MIB
ANON = 8 * MIB
PROGRAM = f"""
import time
data = b"x" * {ANON}        # anonymous memory, touched
for p in ("/etc/passwd", "/etc/group", "/etc/services"):
    try:
        open(p, "rb").read()
    except OSError:
        pass
time.sleep(0.15)
"""


def test_capture_samples_the_cgroup_into_the_trace(tmp_path: Path, clean_machine: Machine,
                                                    monkeypatch) -> None:
    monkeypatch.setenv("TAGCACHE_CACHE_DIR", str(tmp_path / "cache"))
    res = record("samples", LIMIT, [sys.executable, "-c", PROGRAM], out_dir=tmp_path,
                 drop_caches=False, buffer_bytes=4 * MIB)
    assert res.exit_code == 0 and res.lost_events == 0
    side = res.sidecar
    with open(res.trace_path, "rb") as f:
        text = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f)).read()
    marks = [ln for ln in text.splitlines() if ": tracing_mark_write: " in ln]
    assert all(": tracing_mark_write: tagcache_sample: file=" in ln for ln in marks), marks[:3]

    trace = read_trace(res.trace_path, use_cache=False)
    s = trace.op == Op.CGROUP_SAMPLE
    n = int(s.sum())
    # one before CMD, one every 10 ms of its >= 150 ms, one after: all of them in the trace
    assert n == side["cgroup_samples"] == len(marks)
    assert n >= 2 + 5, n
    # the first is CMD's own, written before exec: the cgroup was still empty, nothing
    # traced yet; the last is written after CMD exited, so after every event
    assert s[0] and s[-1]
    assert (trace.arg0[0], trace.arg2[0]) == (0, 0)
    assert np.flatnonzero(~s).size and np.flatnonzero(~s)[0] > 0
    file, other, buffers = trace.arg0[s], trace.arg1[s], trace.arg2[s]
    assert ((file >= 0) & (file <= LIMIT // 4096)).all(), file
    assert (other >= 0).all() and (buffers >= 0).all()
    assert buffers.max() * 4096 <= side["buffers_growth_peak"]
    assert file.max() * 4096 <= side["kernel"]["cache_peak"]
    # the touched anonymous memory is charged besides the page cache while CMD sleeps
    assert other.max() >= ANON // 4096, other.max()
    # the last sample and the sidecar's memory.stat read just after it agree (nothing of
    # the cgroup runs between them)
    assert abs(int(file[-1]) - side["kernel"]["cache"] // 4096) <= 8, \
        (int(file[-1]), side["kernel"]["cache"] // 4096)
