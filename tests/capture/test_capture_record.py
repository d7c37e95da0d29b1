"""Real captures on this machine: tagcache record runs a small program under a memory cgroup.

Every test checks that the top-level tracing state is the same after as before and that no
tagcache-record-* cgroup is left (fixture ``clean_machine``).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard
from _capture_helpers import (
    alive,
    check_new_fields,
    check_runs,
    elf_exec_pages,
    elf_writable_file_pages,
    needs_capture,
    python_files,
    self_libc,
)

from tagcache.errors import CaptureError
from tagcache.workloads import capture
from tagcache.workloads.capture import record

pytestmark = needs_capture

MIB = 1 << 20
LIMIT = 16 * MIB
SIDECAR = {"name", "limit_mib", "seconds", "trace_overrun_events", "command", "exit_code",
           "kernel", "read_ahead_kb", "resident_at_start", "exec_mappings", "cow_mappings",
           "buffers_growth_peak", "paths"}
OPTIONAL = {"folio_orders"}   # where /proc/kpageflags can be read (CONFIG_PROC_PAGE_MONITOR)
KERNEL = {"workingset_refault_file", "pgmajfault", "pgpgin", "pgpgout", "cache",
          "inactive_file", "active_file", "cache_peak"}


def trace_text(path: Path) -> str:
    with open(path, "rb") as f:
        return io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f)).read()


def event_lines(text: str, event: str) -> list[str]:
    return [ln for ln in text.splitlines() if f": {event}: " in ln]


def check_outputs(out: Path, name: str) -> tuple[dict, str]:
    """Both files there, no temporary left; the sidecar has exactly the schema's fields."""
    assert sorted(p.name for p in out.iterdir()) == [f"{name}.json", f"{name}.trace.zst"]
    side = json.loads((out / f"{name}.json").read_text())
    assert SIDECAR <= set(side) <= SIDECAR | OPTIONAL
    assert set(side["kernel"]) == KERNEL
    assert all(isinstance(v, int) and v >= 0 for v in side["kernel"].values())
    check_new_fields(side)
    text = trace_text(out / f"{name}.trace.zst")
    assert text.startswith("# tracer: nop\n")
    return side, text


@pytest.fixture(scope="module")
def grep_like(tmp_path_factory: pytest.TempPathFactory, tracefs: Path) -> dict:
    """One capture shared by several tests: cat over ~24 MiB of python sources, 16 MiB limit."""
    from _capture_helpers import leftover_cgroups, tracing_state

    out = tmp_path_factory.mktemp("cap")
    before, cgroups = tracing_state(tracefs), leftover_cgroups()
    files = python_files(24 * MIB)
    cmd = ["sh", "-c", 'cat "$@" > /dev/null', "sh", *files]
    samples: list[tuple[float, int]] = []
    t0 = time.monotonic()
    res = record("pysrc", LIMIT, cmd, out_dir=out, buffer_bytes=32 * MIB,
                 progress=lambda t, c: samples.append((t, c)))
    wall = time.monotonic() - t0
    return {"res": res, "out": out, "files": files, "samples": samples, "wall": wall,
            "state_before": before, "state_after": tracing_state(tracefs),
            "cgroups_before": cgroups, "cgroups_after": leftover_cgroups()}


def test_capture_writes_trace_with_filemap_events(grep_like: dict) -> None:
    res, out = grep_like["res"], grep_like["out"]
    side, text = check_outputs(out, "pysrc")
    assert res.trace_path == out / "pysrc.trace.zst" and res.sidecar_path == out / "pysrc.json"
    adds = event_lines(text, "mm_filemap_add_to_page_cache")
    gets = event_lines(text, "mm_filemap_get_pages")
    assert len(adds) > 24 * MIB // 4096 // 2  # the files were read from disk after drop_caches
    assert gets and " dev=" in gets[0] and " ino=" in gets[0] and " ofs=" in gets[0]
    assert " pfn=0x" in adds[0] and " order=" in adds[0]
    # more read than the limit holds: the cgroup reclaimed its own pages, in CMD's tasks
    assert event_lines(text, "mm_filemap_delete_from_page_cache")
    # only CMD's process tree is recorded: sh and its exec'd cat share a pid, nothing else
    comms = {ln.split()[0].rsplit("-", 1)[0] for ln in text.splitlines() if not ln.startswith("#")}
    assert comms <= {"sh", "cat"}, comms
    # counts of the summary are the trace's lines
    for event, n in res.events.items():
        assert n == len(event_lines(text, event)), event
    assert res.lost_events == 0 and res.warnings == []


def test_capture_sidecar_values(grep_like: dict) -> None:
    res, files = grep_like["res"], grep_like["files"]
    side = json.loads(res.sidecar_path.read_text())
    assert side == res.sidecar
    assert side["name"] == "pysrc" and side["limit_mib"] == 16
    assert side["exit_code"] == 0 and side["trace_overrun_events"] == 0
    assert 0 < side["seconds"] < grep_like["wall"]
    assert side["command"].startswith("sh -c 'cat \"$@\" > /dev/null' sh /usr/lib/python3")
    assert side["command"].endswith(files[-1])
    k = side["kernel"]
    assert 0 < k["cache_peak"] <= LIMIT + MIB
    assert k["cache"] <= k["cache_peak"]
    assert k["inactive_file"] + k["active_file"] <= k["cache"] + MIB
    assert k["pgpgin"] > 24 * MIB // 4096 // 2  # pages charged: the reads went through it
    assert k["pgpgout"] > 0  # and it had to reclaim under 16 MiB
    assert grep_like["samples"], "progress is called while CMD runs"
    assert max(c for _, c in grep_like["samples"]) <= k["cache_peak"]


def test_capture_read_ahead_kb_of_traced_devices(grep_like: dict) -> None:
    side, text = check_outputs(grep_like["out"], "pysrc")
    st = os.stat(grep_like["files"][0])
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    assert f" dev={dev} ino={st.st_ino:x} " in text
    bdi = Path("/sys/class/bdi") / dev / "read_ahead_kb"
    assert side["read_ahead_kb"][dev] == int(bdi.read_text())
    traced = set(re.findall(r" dev[ =](\d+:\d+) ", text))
    assert set(side["read_ahead_kb"]) == {d for d in traced
                                          if (Path("/sys/class/bdi") / d).is_dir()}


def test_capture_resident_at_start_has_recorders_libc(grep_like: dict) -> None:
    """Caches were dropped, but the recorder (this process) maps libc: its pages stayed."""
    side, _ = check_outputs(grep_like["out"], "pysrc")
    key, path = self_libc()
    assert key in side["resident_at_start"]
    check_runs(side["resident_at_start"][key], -(-os.stat(path).st_size // capture.PAGE_SIZE))
    # the files CMD reads were mapped by nobody: dropped, so not listed
    st = os.stat(grep_like["files"][0])
    assert f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}:{st.st_ino:x}" \
        not in side["resident_at_start"]


def _metadata_peak(trace_path: Path) -> int:
    """The most pages of files without access events (the block device's: filesystem
    metadata) the capture's add and delete events show cached at once."""
    import numpy as np

    from tagcache.traces import read_trace
    from tagcache.validate import accessed_files
    from tagcache.workloads.events import Op

    trace = read_trace(trace_path)
    other = np.ones(len(trace.files), bool)
    other[accessed_files(trace)] = False
    nr = 0
    peak = 0
    for op, f, order in zip(trace.op.tolist(), trace.arg0.tolist(), trace.arg2.tolist(),
                            strict=True):
        if other[f] and op in (Op.KERNEL_ADD, Op.KERNEL_DELETE):
            nr += (1 << order) if op == Op.KERNEL_ADD else -(1 << order)
            peak = max(peak, nr)
    return peak


def test_capture_buffers_growth_is_the_metadata_the_command_read(grep_like: dict) -> None:
    """cat of a thousand files read after drop_caches needs their inode-table and directory
    blocks: /proc/meminfo Buffers rises by what the trace's block-device adds show (it is
    system-wide, so other activity may add a little; sampled every 10 ms, it can miss a
    short peak)."""
    res = grep_like["res"]
    events_peak = _metadata_peak(res.trace_path)
    growth = res.sidecar["buffers_growth_peak"] // 4096
    assert events_peak > 0
    assert 0.75 * events_peak <= growth <= events_peak + max(128, events_peak // 2), \
        (growth, events_peak)


def test_capture_folio_orders_count_the_cgroups_page_cache_at_exit(grep_like: dict) -> None:
    """kpageflags at the cgroup's PFNs: as many pages as memory.stat's cache at the end
    (within the stat's per-CPU batching), and on a filesystem with large folios, such as
    this machine's ext4 (Linux 6.16+), as large as the kernel's add events made them."""
    res = grep_like["res"]
    if "folio_orders" not in res.sidecar:
        pytest.skip("/proc/kpagecgroup or /proc/kpageflags cannot be read on this machine")
    orders = {int(k): v for k, v in res.sidecar["folio_orders"].items()}
    cached = res.sidecar["kernel"]["cache"] // 4096
    assert abs(sum(orders.values()) - cached) <= max(256, cached // 10), (orders, cached)
    added = {int(m) for m in re.findall(r" order=(\d+)", trace_text(res.trace_path))}
    assert set(orders) <= added, (orders, added)
    if added != {0}:
        assert set(orders) - {0}, orders


def test_capture_paths_name_mapped_and_open_files(grep_like: dict) -> None:
    """paths: cat's binary (mapped) and files it had open at a sample, keyed as the trace
    names them; nothing outside CMD's processes (the recorder's python)."""
    side = grep_like["res"].sidecar

    def key(path: str) -> str:
        st = os.stat(path)
        return f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}:{st.st_ino:x}"

    cat = os.path.realpath(shutil.which("cat"))
    assert side["paths"][key(cat)] == cat
    read = {key(f): f for f in grep_like["files"]}
    seen = {k: p for k, p in side["paths"].items() if k in read}
    assert seen and all(os.path.samefile(p, read[k]) for k, p in seen.items())
    assert key(os.path.realpath(sys.executable)) not in side["paths"]


def test_record_sets_read_ahead_and_puts_it_back(tmp_path: Path, clean_machine: Path) -> None:
    """--read-ahead: the sidecar says the value CMD ran with; afterwards every backing
    device has its old read_ahead_kb again, also when CMD fails."""
    before = capture.bdi_read_ahead_kb()
    files = python_files(2 * MIB)
    try:
        res = record("ra", LIMIT, ["sh", "-c", 'cat "$@" > /dev/null; exit 3', "sh", *files],
                     out_dir=tmp_path, read_ahead_kb=64, buffer_bytes=4 * MIB)
    except CaptureError as e:
        if "cannot set" not in str(e):
            raise
        assert capture.bdi_read_ahead_kb() == before
        pytest.skip(f"read_ahead_kb is not writable here: {e}")
    assert res.exit_code == 3
    assert res.sidecar["read_ahead_kb"] and set(res.sidecar["read_ahead_kb"].values()) == {64}
    assert capture.bdi_read_ahead_kb() == before
    with pytest.raises(CaptureError, match="read_ahead_kb"):
        record("ra2", LIMIT, ["true"], out_dir=tmp_path, read_ahead_kb=-1)
    assert capture.bdi_read_ahead_kb() == before


def test_capture_exec_mappings_name_the_commands_program_text(grep_like: dict) -> None:
    """cat ran for many samples: its text segment, as the ELF file says, is listed."""
    side, _ = check_outputs(grep_like["out"], "pysrc")
    cat = os.path.realpath(shutil.which("cat"))
    st = os.stat(cat)
    key = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}:{st.st_ino:x}"
    assert side["exec_mappings"][key] == [list(elf_exec_pages(cat))]
    assert side["cow_mappings"][key] == elf_writable_file_pages(cat)
    assert set(side["cow_mappings"]) <= set(side["exec_mappings"])
    # the files cat reads are not mapped executable, nor is anything of the recorder
    st = os.stat(grep_like["files"][0])
    assert f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}:{st.st_ino:x}" \
        not in side["exec_mappings"]
    py = os.stat(os.path.realpath(sys.executable))
    assert f"{os.major(py.st_dev)}:{os.minor(py.st_dev)}:{py.st_ino:x}" \
        not in side["exec_mappings"]


def test_capture_leaves_tracing_and_cgroups_as_found(grep_like: dict) -> None:
    assert grep_like["state_after"] == grep_like["state_before"]
    assert grep_like["cgroups_after"] == grep_like["cgroups_before"] == []


def test_failing_command_still_recorded(tmp_path: Path, clean_machine: Path) -> None:
    res = record("fails", LIMIT, ["sh", "-c", "cat /usr/lib/python3*/os.py > /dev/null; exit 3"],
                 out_dir=tmp_path, drop_caches=False, buffer_bytes=4 * MIB)
    side, text = check_outputs(tmp_path, "fails")
    assert side["exit_code"] == 3 == res.exit_code
    assert event_lines(text, "mm_filemap_get_pages")


def test_with_alloc_records_kmem_events(tmp_path: Path, clean_machine: Path) -> None:
    res = record("alloc", LIMIT, ["sh", "-c", "head -c 4000000 /dev/zero | cat > /dev/null"],
                 out_dir=tmp_path, drop_caches=False, with_alloc=True, buffer_bytes=8 * MIB)
    _, text = check_outputs(tmp_path, "alloc")
    assert event_lines(text, "mm_page_alloc") and event_lines(text, "mm_page_free")
    assert res.events["mm_page_alloc"] == len(event_lines(text, "mm_page_alloc"))


def test_children_are_followed(tmp_path: Path, clean_machine: Path) -> None:
    """event-fork: pages read by grandchildren (a subshell's python) are in the trace."""
    script = "import sys; open(sys.argv[1], 'rb').read()"
    target = python_files(1)[0]
    cmd = ["sh", "-c", f'( "{sys.executable}" -c "{script}" {target} ); true']
    res = record("kids", LIMIT, cmd, out_dir=tmp_path, drop_caches=False, buffer_bytes=8 * MIB)
    _, text = check_outputs(tmp_path, "kids")
    tasks = {ln.split()[0] for ln in text.splitlines() if not ln.startswith("#")}
    assert len({t.rsplit("-", 1)[1] for t in tasks}) >= 2  # sh and the subshell at least
    assert any(t.startswith("python") for t in tasks), tasks  # the grandchild's reads
    assert res.exit_code == 0


def test_leftover_processes_moved_out(tmp_path: Path, clean_machine: Path) -> None:
    res = record("bg", LIMIT, ["sh", "-c", "sleep 30 & echo started"], out_dir=tmp_path,
                 drop_caches=False, buffer_bytes=4 * MIB)
    try:
        assert len(res.leftover_pids) == 1
        assert any("moved to the root cgroup" in w for w in res.warnings)
        assert res.exit_code == 0
    finally:
        for pid in res.leftover_pids:
            os.kill(pid, signal.SIGKILL)


def test_exception_while_cmd_runs_stops_it_and_cleans_up(tmp_path: Path,
                                                         clean_machine: Path) -> None:
    seen: list[int] = []

    def boom(t: float, cache: int) -> None:
        seen.append(1)
        raise RuntimeError("progress failed")

    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="progress failed"):
        record("boom", LIMIT, ["sleep", "30"], out_dir=tmp_path, drop_caches=False,
               buffer_bytes=4 * MIB, progress=boom)
    assert seen and time.monotonic() - t0 < 10
    assert list(tmp_path.iterdir()) == []


def test_signal_before_cmd_abandons_capture(tmp_path: Path, clean_machine: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT during setup: everything undone, then KeyboardInterrupt as usual."""
    monkeypatch.setattr(capture, "_drop_caches", lambda: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        record("abandon", LIMIT, ["true"], out_dir=tmp_path, drop_caches=True,
               buffer_bytes=4 * MIB)
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _start_recorder(tmp_path: Path, name: str, cmd: list[str]) -> tuple[subprocess.Popen, int]:
    """Run ``tagcache record`` in a subprocess; return it and CMD's pid once CMD is running."""
    env = dict(os.environ, PYTHONPATH=str(Path(capture.__file__).parents[2]))
    rec = subprocess.Popen([sys.executable, "-m", "tagcache.cli", "record", name,
                            "--limit", "16MiB", "--no-drop-caches", "--buffer-size", "4MiB",
                            "--out-dir", str(tmp_path), "--", *cmd],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _, root = capture.find_memory_cgroup()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for cg in root.glob(f"{capture.PREFIX}{rec.pid}-*"):
            try:
                pids = [int(p) for p in (cg / "cgroup.procs").read_text().split()]
            except OSError:
                continue
            if pids:
                return rec, pids[0]
        if rec.poll() is not None:
            break
        time.sleep(0.02)
    rec.kill()
    out, err = rec.communicate()
    raise AssertionError(f"recorder did not start CMD: rc={rec.returncode} {err}")


def _reap(rec: subprocess.Popen, child: int) -> None:
    """Whatever a test left running: kill the recorder and CMD."""
    if rec.poll() is None:
        rec.kill()
        rec.wait()
    if alive(child):
        os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_recorder_forwards_and_cleans_up(tmp_path: Path, clean_machine: Path,
                                                     sig: signal.Signals) -> None:
    rec, child = _start_recorder(tmp_path, "intr", ["sleep", "30"])
    try:
        time.sleep(0.2)  # CMD has exec'd sleep
        rec.send_signal(sig)
        out, err = rec.communicate(timeout=20)
    finally:
        _reap(rec, child)
    assert rec.returncode == 128 + sig, err
    assert "interrupted" in err
    side, _ = check_outputs(tmp_path, "intr")
    assert side["exit_code"] == 128 + sig  # sleep died of the forwarded signal
    assert not alive(child)


def test_cmd_ignoring_signal_is_killed_on_second(tmp_path: Path, clean_machine: Path) -> None:
    cmd = [sys.executable, "-c",
           "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
           "print('ready', flush=True); time.sleep(30)"]
    rec, child = _start_recorder(tmp_path, "stubborn", cmd)
    try:
        time.sleep(0.5)  # python started and ignores SIGINT
        rec.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert rec.poll() is None and alive(child)  # forwarded, ignored
        rec.send_signal(signal.SIGINT)
        out, err = rec.communicate(timeout=20)
    finally:
        _reap(rec, child)
    assert rec.returncode == 130, err
    side, _ = check_outputs(tmp_path, "stubborn")
    assert side["exit_code"] == 128 + signal.SIGKILL


def test_cli_summary_and_outputs(tmp_path: Path, clean_machine: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(capture.__file__).parents[2]))
    r = subprocess.run([sys.executable, "-m", "tagcache.cli", "record", "cli", "--limit", "16MiB",
                        "--no-drop-caches", "--buffer-size", "4MiB", "--out-dir", str(tmp_path),
                        "--", "sh", "-c", "cat /usr/lib/python3*/os.py > /dev/null"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "get_pages" in r.stdout and "exit code 0" in r.stdout and "cache peak" in r.stdout
    assert str(tmp_path / "cli.trace.zst") in r.stdout and str(tmp_path / "cli.json") in r.stdout
    check_outputs(tmp_path, "cli")
