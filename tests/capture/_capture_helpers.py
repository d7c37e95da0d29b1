"""Helpers of the capture tests (root, tracefs and a memory cgroup needed; else skipped)."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import tagcache.record as capture
from tagcache.errors import CaptureError
from tagcache.record import cgroup, readahead, tracefs

TRACEFS = Path("/sys/kernel/tracing")
KEY = re.compile(r"^\d+:\d+:[0-9a-f]+$")


def _kernel_has_tracefs() -> bool:
    try:
        return "tracefs" in Path("/proc/filesystems").read_text()
    except OSError:
        return False


def why_no_capture() -> str | None:
    """Why real captures cannot run here, or None."""
    if os.geteuid() != 0:
        return "capture tests need root (tracefs, memory cgroup, drop_caches)"
    if not _kernel_has_tracefs():
        return "capture tests need a kernel with tracefs"
    try:
        capture.find_memory_cgroup()
    except CaptureError as e:
        return f"capture tests need a memory cgroup: {e}"
    return None


needs_capture = pytest.mark.skipif(why_no_capture() is not None, reason=str(why_no_capture()))


SRC = Path(capture.__file__).parents[2]
WAIT = 120.0
"""Seconds a test waits for a recorder subprocess: generous, so a loaded machine passes."""


@dataclass
class Machine:
    """What a test may leave behind: it lists here every process it starts (recorders and
    their CMDs), whose instances, cgroups and state files the teardown then removes."""

    tracefs: Path
    pids: list[int] = field(default_factory=list)

    @property
    def owners(self) -> set[int]:
        return {os.getpid(), *self.pids}


def owner_pid(name: str) -> int | None:
    """The pid in a ``tagcache-record-PID-XXXXXX`` name, else None."""
    if not name.startswith(capture.PREFIX):
        return None
    pid = name[len(capture.PREFIX):].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def tracing_state(tracefs: Path) -> dict[str, str]:
    """Everything of the top-level tracing state a capture could conceivably change; the
    recorders' instances are left out (machine_state() lists the tests' own)."""
    files = ["tracing_on", "set_event", "buffer_size_kb", "buffer_total_size_kb",
             "current_tracer", "set_event_pid", "set_event_notrace_pid", "trace_options",
             "options/event-fork", "trace_clock"]
    for system, events in (("filemap", capture.FILEMAP_EVENTS), ("kmem", capture.KMEM_EVENTS)):
        for e in events:
            files += [f"events/{system}/{e}/enable", f"events/{system}/{e}/filter"]
    state = {f: (tracefs / f).read_text() for f in files}
    state["instances"] = " ".join(sorted(p.name for p in (tracefs / "instances").iterdir()
                                         if owner_pid(p.name) is None))
    return state


def instances(tracefs: Path, owners: set[int]) -> list[Path]:
    """Recorder instances of the processes ``owners``."""
    return sorted(p for p in (tracefs / "instances").iterdir() if owner_pid(p.name) in owners)


def leftover_cgroups(owners: set[int] | None = None) -> list[Path]:
    """Memory cgroups named like ours (of the processes ``owners`` if given)."""
    _, root = capture.find_memory_cgroup()
    return sorted(p for p in root.iterdir() if owner_pid(p.name) is not None
                  and (owners is None or owner_pid(p.name) in owners))


def state_files(owners: set[int]) -> list[Path]:
    """State files of the processes ``owners``."""
    return sorted(p for p in capture.STATE_DIR.glob("record-*.json")
                  if int(p.name.split("-")[1]) in owners)


def machine_state(tracefs: Path, owners: set[int]) -> dict[str, object]:
    """What a capture changes: the top-level tracing state, the owners' instances, cgroups
    and state files, and every device's read_ahead_kb."""
    return {"tracing": tracing_state(tracefs), "instances": instances(tracefs, owners),
            "cgroups": leftover_cgroups(owners), "state files": state_files(owners),
            "read_ahead_kb": capture.bdi_read_ahead_kb()}


def other_recorder_changed_read_ahead(owners: set[int]) -> bool:
    """A recorder not of this test runs with read_ahead_kb changed (leave it alone)."""
    for p in capture.STATE_DIR.glob("record-*.json"):
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if data.get("pid") not in owners and "read_ahead_kb" in data \
                and data.get("pid") in capture.live_recorders():
            return True
    return False


def undo_leftovers(tracefs_dir: Path, owners: set[int],
                   read_ahead_before: dict[str, int]) -> list[str]:
    """Remove whatever the processes ``owners`` (dead by now, or this one) left: state files
    (recovered), instances, cgroups; put read_ahead_kb back. What was found, one line each."""
    found: list[str] = []
    try:
        capture.recover(lambda line: found.extend(
            [line] if any(f"(pid {pid})" in line for pid in owners) else []))
    except CaptureError as e:  # go on with the rest, then say so
        found.append(str(e))
    for p in state_files(owners):  # this process's own: alive, so not recovered above
        found.append(f"state file {p}")
        p.unlink(missing_ok=True)
    for p in instances(tracefs_dir, owners):
        found.append(f"instance {p.name}")
        try:
            tracefs.remove_instance(p)
        except OSError as e:
            found.append(f"could not remove {p}: {e}")
    _, root = capture.find_memory_cgroup()
    for p in leftover_cgroups(owners):
        found.append(f"cgroup {p}")
        try:
            cgroup.remove_cgroup(p, root)
        except OSError as e:
            found.append(f"could not remove {p}: {e}")
    if not other_recorder_changed_read_ahead(owners):
        for dev, kb in read_ahead_before.items():
            path = readahead.SYSFS_BDI / dev / "read_ahead_kb"
            try:
                if int(path.read_text()) != kb:
                    found.append(f"read_ahead_kb of {dev}")
                    path.write_text(str(kb))
            except OSError:
                continue
    return found


def no_core_dumps() -> None:
    """preexec_fn of a recorder subprocess: CMD killed by SIGQUIT dumps no core here, and
    SIGINT and SIGQUIT start at their defaults, as from a terminal (a background job of a
    script, such as a CI run, inherits them ignored, and an ignored signal stays ignored)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def recorder_argv(name: str, out: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "tagcache.cli", "record", name, "--limit", "16MiB",
            "--no-drop-caches", "--buffer-size", "4MiB", "--out-dir", str(out), *options]


def run_cli(*args: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    """``tagcache ARGS`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "tagcache.cli", *args], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(SRC)), timeout=timeout,
                          preexec_fn=no_core_dumps)


def start_recorder(argv: list[str], track: list[int]) -> tuple[subprocess.Popen[str], int]:
    """Run a recorder subprocess; return it and CMD's pid once CMD is in the cgroup with
    tracing on (its last step before exec: every resource is set up). Both pids go to
    ``track`` for the teardown."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    rec = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env, preexec_fn=no_core_dumps)
    track.append(rec.pid)
    _, root = capture.find_memory_cgroup()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for cg in root.glob(f"{capture.PREFIX}{rec.pid}-*"):
            try:
                pids = [int(p) for p in (cg / "cgroup.procs").read_text().split()]
                on = (TRACEFS / "instances" / cg.name / "tracing_on").read_text().strip()
            except OSError:
                continue
            if pids and pids[0] not in track:
                track.append(pids[0])
            if pids and on == "1":
                return rec, pids[0]
        if rec.poll() is not None:
            break
        time.sleep(0.02)
    rec.kill()
    _, err = rec.communicate()
    raise AssertionError(f"recorder did not start CMD: rc={rec.returncode} {err}")


def kill_all(pids: list[int]) -> None:
    """SIGKILL each process of ``pids`` still alive (each one the test started), and wait until
    it is gone (a zombie child of this process is reaped)."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + WAIT
    for pid in pids:
        while alive(pid) and time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:  # not our child: init reaps it
                pass
            time.sleep(0.01)


def python_files(min_bytes: int) -> list[str]:
    """Sorted .py files of /usr/lib/python3*/ adding up to at least ``min_bytes``."""
    out, total = [], 0
    for p in sorted(Path("/usr/lib").glob("python3*/**/*.py")):
        if not p.is_file() or "/test/" in str(p):
            continue
        out.append(str(p))
        total += p.stat().st_size
        if total >= min_bytes:
            break
    return out


def alive(pid: int) -> bool:
    """A process (not a zombie) of that pid exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def self_libc() -> tuple[str, str]:
    """('M:m:inohex', path) of the libc this process maps, from /proc/self/maps."""
    for major, minor, ino, path, _, _ in capture.parse_maps(Path("/proc/self/maps").read_text()):
        if re.search(r"/libc[.-][^/]*so", path):
            return f"{major}:{minor}:{ino:x}", path
    raise AssertionError("this process maps no libc")


def check_runs(runs: object, npages: int | None = None) -> None:
    """Well-formed runs: [[first, n], ...] of ints, n > 0, sorted, disjoint, not adjacent."""
    assert isinstance(runs, list) and runs
    end = -1
    for run in runs:
        assert isinstance(run, list) and len(run) == 2
        first, n = run
        assert type(first) is int and type(n) is int and first >= 0 and n > 0
        assert first > end
        end = first + n
    if npages is not None:
        assert end <= npages


def check_new_fields(side: dict) -> None:
    """read_ahead_kb and resident_at_start are there and well-formed; so are exec_mappings,
    buffers_growth_peak and folio_orders where the recorder wrote them (older captures lack
    them)."""
    ra = side["read_ahead_kb"]
    assert isinstance(ra, dict)
    for dev, kb in ra.items():
        assert re.fullmatch(r"\d+:\d+", dev) and type(kb) is int and kb >= 0, (dev, kb)
    res = side["resident_at_start"]
    assert isinstance(res, dict) and res
    for key, runs in res.items():
        assert KEY.match(key), key
        check_runs(runs)
    for key, runs in side.get("exec_mappings", {}).items():
        assert KEY.match(key), key
        check_runs(runs)
    growth = side.get("buffers_growth_peak", 0)
    assert type(growth) is int and growth >= 0, growth
    for key, path in side.get("paths", {}).items():
        assert KEY.match(key) and path.startswith("/"), (key, path)
    for order, pages in side.get("folio_orders", {}).items():
        assert order.isdigit() and int(order) <= 9 and type(pages) is int and pages > 0, \
            (order, pages)


def elf_segments(path: str) -> list[tuple[int, int, int, int, int]]:
    """(p_type, p_flags, p_offset, p_vaddr, p_filesz, p_memsz) of each program header of the
    64-bit little-endian ELF ``path``, read with the layout of elf(5)."""
    import struct

    with open(path, "rb") as f:
        data = f.read(1 << 16)
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, path
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    out = []
    for i in range(phnum):
        p_type, p_flags, p_offset, p_vaddr, _pa, p_filesz, p_memsz, _al = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize)
        out.append((p_type, p_flags, p_offset, p_vaddr, p_filesz, p_memsz))
    return out


def elf_exec_pages(path: str) -> tuple[int, int]:
    """(first page, pages) of the file that the executable PT_LOAD segment of the 64-bit
    little-endian ELF ``path`` maps: what /proc/PID/maps shows for its r-x mapping."""
    for p_type, p_flags, p_offset, p_vaddr, _fsz, p_memsz in elf_segments(path):
        if p_type == 1 and p_flags & 1:                       # PT_LOAD, PF_X
            start = p_vaddr & ~(capture.PAGE_SIZE - 1)
            end = -(-(p_vaddr + p_memsz) // capture.PAGE_SIZE) * capture.PAGE_SIZE
            return p_offset // capture.PAGE_SIZE, (end - start) // capture.PAGE_SIZE
    raise AssertionError(f"{path}: no executable PT_LOAD segment")


def elf_writable_file_pages(path: str) -> list[list[int]]:
    """[first page, pages] of the file bytes of each writable PT_LOAD segment of ``path``."""
    ps = capture.PAGE_SIZE
    return [[off // ps, -(-(off + fsz) // ps) - off // ps]
            for p_type, flags, off, _va, fsz, _msz in elf_segments(path)
            if p_type == 1 and flags & 2 and fsz]
