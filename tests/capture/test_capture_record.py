"""Real captures on this machine: tagcache record runs a small program under a memory cgroup.

Every test checks that the machine is as it was (fixture ``clean_machine``): the top-level
tracing state, no instance, cgroup or state file of its recorders left, every read_ahead_kb;
its teardown removes whatever a failed test left.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import zstandard
from _capture_helpers import (
    WAIT,
    Machine,
    alive,
    check_new_fields,
    check_runs,
    elf_exec_pages,
    elf_writable_file_pages,
    kill_all,
    machine_state,
    needs_capture,
    python_files,
    recorder_argv,
    run_cli,
    self_libc,
    start_recorder,
)

import tagcache.record as capture
from tagcache.errors import CaptureError
from tagcache.outputs import Output
from tagcache.record import record, run
from tagcache.record.tracefs import TraceInstance

pytestmark = needs_capture

MIB = 1 << 20
LIMIT = 16 * MIB
SIDECAR = {"name", "limit_mib", "seconds", "trace_overrun_events", "command", "exit_code",
           "kernel", "read_ahead_kb", "resident_at_start", "exec_mappings", "cow_mappings",
           "buffers_growth_peak", "paths", "cgroup_samples", "kernel_release", "filesystems"}
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
    out = tmp_path_factory.mktemp("cap")
    before = machine_state(tracefs, {os.getpid()})
    files = python_files(24 * MIB)
    cmd = ["sh", "-c", 'cat "$@" > /dev/null', "sh", *files]
    samples: list[tuple[float, int]] = []
    t0 = time.monotonic()
    res = record("pysrc", LIMIT, cmd, out_dir=out, buffer_bytes=32 * MIB,
                 progress=lambda t, c: samples.append((t, c)))
    wall = time.monotonic() - t0
    return {"res": res, "out": out, "files": files, "samples": samples, "wall": wall,
            "state_before": before, "state_after": machine_state(tracefs, {os.getpid()})}


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
    # (the recorder's own lines are its samples, trace_marker writes)
    comms = {ln.split()[0].rsplit("-", 1)[0] for ln in text.splitlines()
             if not ln.startswith("#") and ": tracing_mark_write: " not in ln}
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
        if op in (Op.KERNEL_ADD, Op.KERNEL_DELETE) and other[f]:  # arg0 is a file
            nr += (1 << order) if op == Op.KERNEL_ADD else -(1 << order)
            peak = max(peak, nr)
    return peak


def test_capture_buffers_growth_is_the_metadata_the_command_read(grep_like: dict) -> None:
    """cat of a thousand files read after drop_caches needs their inode-table and directory
    blocks: /proc/meminfo Buffers rises by what the trace's block-device adds show (it is
    system-wide, so other activity may add some: every process rereads its metadata after
    drop_caches, and on a loaded machine the capture lasts longer, so up to 1.6 times the
    command's own was seen; sampled every 10 ms, it can miss a short peak)."""
    res = grep_like["res"]
    events_peak = _metadata_peak(res.trace_path)
    growth = res.sidecar["buffers_growth_peak"] // 4096
    assert events_peak > 0
    assert 0.75 * events_peak <= growth <= 2 * events_peak + 128, (growth, events_peak)


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


def test_record_sets_read_ahead_and_puts_it_back(tmp_path: Path, clean_machine: Machine) -> None:
    """--read-ahead: the sidecar says the value CMD ran with; afterwards every backing
    device has its old read_ahead_kb again, also when CMD fails."""
    before = capture.bdi_read_ahead_kb()
    files = python_files(2 * MIB)
    try:
        res = record("ra", LIMIT, ["sh", "-c", 'cat "$@" > /dev/null; exit 3', "sh", *files],
                     out_dir=tmp_path, read_ahead_kb=64, buffer_bytes=4 * MIB)
    except CaptureError as e:
        if "another tagcache record" in str(e):
            pytest.skip(f"a recorder outside this test changes read_ahead_kb now: {e}")
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
    assert grep_like["state_after"]["cgroups"] == grep_like["state_after"]["instances"] == []


def test_failing_command_still_recorded(tmp_path: Path, clean_machine: Machine) -> None:
    res = record("fails", LIMIT, ["sh", "-c", "cat /usr/lib/python3*/os.py > /dev/null; exit 3"],
                 out_dir=tmp_path, drop_caches=False, buffer_bytes=4 * MIB)
    side, text = check_outputs(tmp_path, "fails")
    assert side["exit_code"] == 3 == res.exit_code
    assert event_lines(text, "mm_filemap_get_pages")


def test_with_alloc_records_kmem_events(tmp_path: Path, clean_machine: Machine) -> None:
    res = record("alloc", LIMIT, ["sh", "-c", "head -c 4000000 /dev/zero | cat > /dev/null"],
                 out_dir=tmp_path, drop_caches=False, with_alloc=True, buffer_bytes=8 * MIB)
    _, text = check_outputs(tmp_path, "alloc")
    assert event_lines(text, "mm_page_alloc") and event_lines(text, "mm_page_free")
    assert res.events["mm_page_alloc"] == len(event_lines(text, "mm_page_alloc"))


def test_children_are_followed(tmp_path: Path, clean_machine: Machine) -> None:
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


def test_leftover_processes_moved_out(tmp_path: Path, clean_machine: Machine) -> None:
    res = record("bg", LIMIT, ["sh", "-c", "sleep 30 & echo started"], out_dir=tmp_path,
                 drop_caches=False, buffer_bytes=4 * MIB)
    clean_machine.pids += res.leftover_pids  # killed by the teardown
    assert len(res.leftover_pids) == 1
    assert any("moved to the root cgroup" in w for w in res.warnings)
    assert res.exit_code == 0


def test_exception_while_cmd_runs_stops_it_and_cleans_up(tmp_path: Path,
                                                         clean_machine: Machine) -> None:
    seen: list[int] = []

    def boom(t: float, cache: int) -> None:
        seen.append(1)
        raise RuntimeError("progress failed")

    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="progress failed"):
        record("boom", LIMIT, ["sleep", "30"], out_dir=tmp_path, drop_caches=False,
               buffer_bytes=4 * MIB, progress=boom)
    assert seen and time.monotonic() - t0 < 25  # sleep was stopped, not waited for
    assert list(tmp_path.iterdir()) == []




# --------------------------------------------------------------------------- signals

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT])
def test_signal_before_cmd_abandons_capture(tmp_path: Path, clean_machine: Machine,
                                            monkeypatch: pytest.MonkeyPatch,
                                            sig: signal.Signals) -> None:
    """A signal during setup (here: while caches are dropped, with read_ahead_kb changed):
    everything undone, no output, then the signal goes to the caller's handler (SIGINT's
    default: KeyboardInterrupt)."""
    monkeypatch.setattr(run, "drop_caches", lambda: os.kill(os.getpid(), sig))
    got: list[int] = []
    before = signal.getsignal(sig)
    if sig != signal.SIGINT:
        signal.signal(sig, lambda signum, frame: got.append(signum))
    else:                         # as Python sets it up unless started with SIGINT ignored
        signal.signal(sig, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt if sig == signal.SIGINT else CaptureError):
            record("abandon", LIMIT, ["touch", str(tmp_path / "ran")], out_dir=tmp_path,
                   drop_caches=True, buffer_bytes=4 * MIB, read_ahead_kb=256)
        assert list(tmp_path.iterdir()) == []
        assert got == ([] if sig == signal.SIGINT else [sig])
        assert signal.getsignal(sig) is (signal.default_int_handler if sig == signal.SIGINT
                                         else signal.getsignal(sig))
    finally:
        signal.signal(sig, before)


def _recorder_read_ahead(read_ahead: dict[str, int]) -> str:
    """A --read-ahead value that every device's read_ahead_kb differs from."""
    kb = 256
    while kb in read_ahead.values():
        kb += 4
    return f"{kb}KiB"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT])
def test_interrupted_recorder_forwards_and_cleans_up(tmp_path: Path, clean_machine: Machine,
                                                     sig: signal.Signals) -> None:
    """Each of the four signals while CMD runs: forwarded to CMD, the capture written up to
    its exit, and everything put back: instance, cgroup, state file, read_ahead_kb."""
    before = capture.bdi_read_ahead_kb()
    ra = _recorder_read_ahead(before)
    rec, child = start_recorder(recorder_argv("intr", tmp_path, "--read-ahead", ra, "--",
                                              "sleep", "30"), clean_machine.pids)
    assert capture.bdi_read_ahead_kb() != before  # set while CMD runs
    rec.send_signal(sig)
    out, err = rec.communicate(timeout=WAIT)
    assert rec.returncode == 128 + sig, err
    assert "interrupted" in err
    side, _ = check_outputs(tmp_path, "intr")
    assert side["exit_code"] == 128 + sig  # sleep died of the forwarded signal
    assert set(side["read_ahead_kb"].values()) <= {int(ra.removesuffix("KiB"))}
    assert not alive(child)
    assert capture.bdi_read_ahead_kb() == before


def test_cmd_ignoring_signal_is_killed_on_second(tmp_path: Path, clean_machine: Machine) -> None:
    ready = tmp_path / "ready"
    cmd = [sys.executable, "-c",
           "import pathlib, signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
           "pathlib.Path(sys.argv[1]).touch(); time.sleep(30)", str(ready)]
    out = tmp_path / "out"
    out.mkdir()
    rec, child = start_recorder(recorder_argv("stubborn", out, "--", *cmd), clean_machine.pids)
    deadline = time.monotonic() + WAIT
    while not ready.exists() and time.monotonic() < deadline:  # python ignores SIGINT now
        time.sleep(0.02)
    rec.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert rec.poll() is None and alive(child)  # forwarded, ignored
    rec.send_signal(signal.SIGINT)
    _, err = rec.communicate(timeout=WAIT)
    assert rec.returncode == 130, err
    side, _ = check_outputs(out, "stubborn")
    assert side["exit_code"] == 128 + signal.SIGKILL


def test_cli_summary_and_outputs(tmp_path: Path, clean_machine: Machine) -> None:
    r = run_cli("record", "cli", "--limit", "16MiB", "--no-drop-caches", "--buffer-size", "4MiB",
                "--out-dir", str(tmp_path), "--", "sh", "-c",
                "cat /usr/lib/python3*/os.py > /dev/null")
    assert r.returncode == 0, r.stderr
    assert "get_pages" in r.stdout and "exit code 0" in r.stdout and "cache peak" in r.stdout
    assert str(tmp_path / "cli.trace.zst") in r.stdout and str(tmp_path / "cli.json") in r.stdout
    check_outputs(tmp_path, "cli")


# --------------------------------------------------------------------------- SIGKILL, recovery

RECOVERED = re.compile(r"^tagcache: recovered from a recorder that died \(pid (\d+)\): (.*)$",
                       re.M)


def _killed_recorder(tmp_path: Path, machine: Machine) -> dict:
    """A recorder with --read-ahead killed by SIGKILL while CMD (sleep 30) runs, and CMD
    killed too: what it left behind, checked to be there."""
    before = capture.bdi_read_ahead_kb()
    ra = _recorder_read_ahead(before)
    rec, child = start_recorder(recorder_argv("killed", tmp_path, "--read-ahead", ra, "--",
                                              "sleep", "30"), machine.pids)
    states = list(capture.STATE_DIR.glob(f"record-{rec.pid}-*.json"))
    assert len(states) == 1
    state = json.loads(states[0].read_text())
    assert state["pid"] == rec.pid and state["name"] == "killed"
    inst, cg = Path(state["tracefs_instance"]), Path(state["cgroup"]["path"])
    assert inst.is_dir() and cg.is_dir()
    rec.kill()
    rec.wait(timeout=WAIT)
    kill_all([child])  # it holds the recorder's stdout and stderr open
    rec.communicate(timeout=WAIT)
    # all of it left behind: the instance (tracing on), the cgroup, read_ahead_kb, the file
    assert inst.is_dir() and (inst / "tracing_on").read_text() == "1\n" and cg.is_dir()
    changed = capture.bdi_read_ahead_kb()
    assert changed != before and set(changed.values()) == {int(ra.removesuffix("KiB"))}
    assert states[0].exists()
    return {"pid": rec.pid, "before": before, "instance": inst, "cgroup": cg,
            "state": states[0]}


def _check_recovered(left: dict, stderr: str) -> None:
    lines = [m for m in RECOVERED.finditer(stderr) if int(m.group(1)) == left["pid"]]
    assert len(lines) == 1, stderr
    said = lines[0].group(2)
    assert f"tracefs instance {left['instance'].name} removed" in said
    assert f"cgroup {left['cgroup']} removed" in said
    assert said.startswith("read_ahead_kb of ") and " restored to " in said
    for old in set(left["before"].values()):
        assert f"restored to {old}" in said
    assert capture.bdi_read_ahead_kb() == left["before"]
    assert not left["instance"].exists() and not left["cgroup"].exists()
    assert not left["state"].exists()


def test_sigkill_then_recover_restores_everything(tmp_path: Path,
                                                  clean_machine: Machine) -> None:
    left = _killed_recorder(tmp_path, clean_machine)
    r = run_cli("record", "--recover")
    assert r.returncode == 0, r.stderr
    _check_recovered(left, r.stderr)
    assert list(tmp_path.iterdir()) == []  # no output, no temporary of the killed one
    again = run_cli("record", "--recover")
    assert again.returncode == 0 and "nothing to recover" in again.stderr


def test_sigkill_then_next_record_restores_first(tmp_path: Path,
                                                 clean_machine: Machine) -> None:
    """The next capture undoes the dead one's changes before its own, so its sidecar has the
    machine's read_ahead_kb, not the dead recorder's."""
    left = _killed_recorder(tmp_path, clean_machine)
    out = tmp_path / "next"
    out.mkdir()
    r = run_cli("record", "next", "--limit", "16MiB", "--no-drop-caches", "--buffer-size",
                "4MiB", "--out-dir", str(out), "--", "sh", "-c",
                "cat /usr/lib/python3*/os.py > /dev/null")
    assert r.returncode == 0, r.stderr
    _check_recovered(left, r.stderr)
    side, _ = check_outputs(out, "next")
    for dev, kb in side["read_ahead_kb"].items():
        assert kb == left["before"][dev]


def test_recover_leaves_a_live_recorder_alone(tmp_path: Path, clean_machine: Machine) -> None:
    """A running recorder's state file, instance and cgroup are not touched by --recover; a
    second --read-ahead capture is refused meanwhile. Then it ends normally."""
    ra = _recorder_read_ahead(capture.bdi_read_ahead_kb())
    rec, _ = start_recorder(recorder_argv("live", tmp_path, "--read-ahead", ra, "--", "sleep",
                                          "30"), clean_machine.pids)
    state, = capture.STATE_DIR.glob(f"record-{rec.pid}-*.json")
    data = json.loads(state.read_text())
    r = run_cli("record", "--recover")
    assert r.returncode == 0 and f"(pid {rec.pid})" not in r.stderr, r.stderr
    assert state.exists() and Path(data["tracefs_instance"]).is_dir()
    assert Path(data["cgroup"]["path"]).is_dir()
    with pytest.raises(CaptureError, match=f"another tagcache record \\(pid {rec.pid}\\)"):
        record("second", LIMIT, ["true"], out_dir=tmp_path, drop_caches=False,
               buffer_bytes=4 * MIB, read_ahead_kb=4)
    rec.send_signal(signal.SIGTERM)
    _, err = rec.communicate(timeout=WAIT)
    assert rec.returncode == 128 + signal.SIGTERM, err
    assert not state.exists() and not Path(data["tracefs_instance"]).exists()


# --------------------------------------------------------------------------- both outputs or none

def _only(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def test_error_after_cmd_leaves_no_output(tmp_path: Path, clean_machine: Machine,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An error while the sidecar is made, after the trace is written: neither output, no
    temporary; the outputs of an earlier capture of that name are kept as they were."""
    (tmp_path / "x.json").write_text("old sidecar")
    (tmp_path / "x.trace.zst").write_bytes(b"old trace")

    def fail(*a: object, **k: object) -> None:
        raise RuntimeError("sidecar failed")

    monkeypatch.setattr(run, "kernel_fields", fail)
    with pytest.raises(RuntimeError, match="sidecar failed"):
        record("x", LIMIT, ["true"], out_dir=tmp_path, drop_caches=False, buffer_bytes=4 * MIB)
    assert _only(tmp_path) == ["x.json", "x.trace.zst"]
    assert (tmp_path / "x.json").read_text() == "old sidecar"
    assert (tmp_path / "x.trace.zst").read_bytes() == b"old trace"


def test_signal_while_writing_leaves_no_output(tmp_path: Path, clean_machine: Machine,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM after CMD exited, while the trace is written: the capture is abandoned, no
    half output and no temporary, then the signal reaches the caller's handler."""
    write_trace = TraceInstance.write_trace

    def write_and_signal(self: TraceInstance, *a: object, **k: object) -> dict[str, int]:
        os.kill(os.getpid(), signal.SIGTERM)
        return write_trace(self, *a, **k)

    monkeypatch.setattr(TraceInstance, "write_trace", write_and_signal)
    got: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        with pytest.raises(CaptureError, match="abandoned on SIGTERM"):
            record("t", LIMIT, ["true"], out_dir=tmp_path, drop_caches=False,
                   buffer_bytes=4 * MIB)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert got == [signal.SIGTERM]
    assert _only(tmp_path) == []


def test_second_rename_failing_takes_the_first_back(tmp_path: Path, clean_machine: Machine,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    commit = Output.commit

    def commit_trace_only(self: Output) -> None:
        if self.final.name.endswith(".json"):
            raise OSError(28, "No space left on device")
        commit(self)

    monkeypatch.setattr(Output, "commit", commit_trace_only)
    with pytest.raises(OSError, match="No space"):
        record("r", LIMIT, ["true"], out_dir=tmp_path, drop_caches=False, buffer_bytes=4 * MIB)
    assert _only(tmp_path) == []


def test_sigterm_mid_run_writes_both(tmp_path: Path, clean_machine: Machine) -> None:
    """SIGTERM while CMD runs: both outputs, complete, and nothing else in the directory."""
    rec, _ = start_recorder(recorder_argv("both", tmp_path, "--", "sleep", "30"),
                            clean_machine.pids)
    rec.send_signal(signal.SIGTERM)
    rec.communicate(timeout=WAIT)
    assert _only(tmp_path) == ["both.json", "both.trace.zst"]
    check_outputs(tmp_path, "both")
