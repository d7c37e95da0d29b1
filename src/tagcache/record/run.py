"""One capture from start to end: the checks, then every resource entered in order on one
ExitStack, which undoes them in reverse on any way out (the package docstring draws it)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagcache.errors import CaptureError
from tagcache.record.cgroup import MemoryCgroup, find_memory_cgroup
from tagcache.record.command import Command
from tagcache.record.files import CaptureFiles, check_outputs
from tagcache.record.machine import kernel_release, mount_filesystems
from tagcache.record.readahead import SYSFS_BDI, ReadAhead, bdi_read_ahead_kb, dev_order
from tagcache.record.recover import recover
from tagcache.record.residency import resident_at_start
from tagcache.record.sampling import Progress, Sampler
from tagcache.record.schema import exit_code, kernel_fields, sidecar_json
from tagcache.record.signals import Signalled, Signals
from tagcache.record.state import StateFile
from tagcache.record.tracefs import TraceInstance, capture_events, find_tracefs
from tagcache.record.util import MIB, PREFIX, read, write

DROP_CACHES = Path("/proc/sys/vm/drop_caches")
DEFAULT_BUFFER_BYTES = 128 * MIB
"""Trace buffer of a capture, all CPUs together (split evenly into per-CPU buffers)."""


@dataclass
class CaptureResult:
    """What one capture wrote and saw. ``sidecar`` is exactly the NAME.json written."""

    name: str
    trace_path: Path
    sidecar_path: Path
    sidecar: dict[str, Any]
    events: dict[str, int]
    """Lines captured per event name (``mm_filemap_get_pages``: 2127, ...)."""
    cgroup_version: int
    interrupted: int | None = None
    """Signal number if a signal was forwarded to CMD, else None."""
    leftover_pids: list[int] = field(default_factory=list)
    """Processes still in the cgroup when CMD exited, moved to the root cgroup (not killed)."""
    warnings: list[str] = field(default_factory=list)

    @property
    def lost_events(self) -> int:
        return int(self.sidecar["trace_overrun_events"])

    @property
    def exit_code(self) -> int:
        return int(self.sidecar["exit_code"])

    @property
    def seconds(self) -> float:
        return float(self.sidecar["seconds"])

    @property
    def cache_peak(self) -> int:
        return int(self.sidecar["kernel"]["cache_peak"])


def _check_inputs(name: str, limit_bytes: int, cmd: list[str], buffer_bytes: int,
                  sample_interval: float, read_ahead_kb: int | None) -> str:
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise CaptureError(f"bad capture name {name!r}: a file name without '/' is expected "
                           f"(NAME.trace.zst and NAME.json are written in the output directory)")
    if not cmd:
        raise CaptureError("no command to record: give it after '--', e.g. "
                           "tagcache record NAME --limit 16MiB -- grep -r x /usr/lib")
    if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int) or limit_bytes < MIB:
        raise CaptureError(f"memory limit {limit_bytes!r} bytes is too small: at least 1 MiB")
    if buffer_bytes < 64 * 1024:
        raise CaptureError(f"trace buffer of {buffer_bytes} bytes is too small: at least 64 KiB")
    if not sample_interval > 0:
        raise CaptureError(f"sample interval must be > 0 seconds, got {sample_interval!r}")
    if read_ahead_kb is not None and (isinstance(read_ahead_kb, bool)
                                      or not isinstance(read_ahead_kb, int) or read_ahead_kb < 0):
        raise CaptureError(f"read_ahead_kb {read_ahead_kb!r}: expected a whole number of KiB >= 0")
    exe = shutil.which(cmd[0])
    if exe is None:
        hint = " (options of tagcache record go before '--')" if cmd[0].startswith("-") else ""
        raise CaptureError(f"command not found: {cmd[0]}{hint}")
    return exe


def check_root() -> None:
    if os.geteuid() != 0:
        raise CaptureError("tagcache record must run as root (it uses tracefs, a memory cgroup "
                           "and drop_caches)")


def compression_level(entries: int) -> int:
    """zstd level by trace size: small captures as small as possible, big ones in seconds."""
    if entries <= 300_000:
        return 19
    if entries <= 3_000_000:
        return 12
    return 6


def drop_caches() -> None:
    os.sync()
    try:
        write(DROP_CACHES, "3")
    except OSError as e:
        raise CaptureError(f"cannot drop caches ({DROP_CACHES}: {e.strerror})") from None


@dataclass
class _Job:
    name: str
    limit_bytes: int
    cmd: list[str]
    exe: str
    events: list[tuple[str, str]]
    tracefs: Path
    cgroup_version: int
    cgroup_root: Path
    unique: str
    trace_path: Path
    sidecar_path: Path
    drop_caches: bool
    sample_interval: float
    progress: Progress | None
    buffer_bytes: int
    compression_level: int | None
    read_ahead_kb: int | None
    notify: Callable[[str], None]
    state_dir: Path | None


def record(name: str, limit_bytes: int, cmd: list[str], *, with_alloc: bool = False,
           out_dir: Path = Path("."), drop_caches: bool = True, sample_interval: float = 0.01,
           progress: Progress | None = None, buffer_bytes: int = DEFAULT_BUFFER_BYTES,
           compression_level: int | None = None, read_ahead_kb: int | None = None,
           notify: Callable[[str], None] | None = None,
           state_dir: Path | None = None) -> CaptureResult:
    """Run ``cmd`` under a ``limit_bytes`` memory cgroup and capture the page cache's events.

    Writes ``out_dir/NAME.trace.zst`` and ``out_dir/NAME.json`` (DESIGN.md section 5) and
    returns what was written. ``buffer_bytes`` is the trace buffer of all CPUs together;
    ``compression_level`` is zstd's (default: 19 for small traces, lower for big ones).
    ``read_ahead_kb`` sets every backing device's read_ahead_kb for the capture (CMD's and
    every other process's I/O alike) and puts the old values back afterwards.
    First undoes what recorders that died left changed (recover.py), telling ``notify`` in
    one line each; ``state_dir`` is where state files live (default /run/tagcache).
    CaptureError (or OutputError) when the capture cannot be made here (not root, no tracefs,
    no memory cgroup, bad name, size, command or output); nothing is changed then. A non-zero
    exit of CMD is not an error: it is recorded in ``exit_code`` (128 + N when killed by
    signal N). SIGINT, SIGTERM, SIGHUP or SIGQUIT while CMD runs are forwarded to it and the
    capture is written as usual (``interrupted`` says which signal); at any other time they
    abandon the capture, undo everything, and are delivered again once the caller's handlers
    are back.
    """
    out_dir = Path(out_dir)
    cmd = [str(c) for c in cmd]
    exe = _check_inputs(name, limit_bytes, cmd, buffer_bytes, sample_interval, read_ahead_kb)
    trace_path, sidecar_path = out_dir / f"{name}.trace.zst", out_dir / f"{name}.json"
    check_outputs(out_dir, (trace_path, sidecar_path))
    check_root()
    tracefs = find_tracefs()
    events = capture_events(tracefs, with_alloc)
    version, cg_root = find_memory_cgroup()
    job = _Job(name=name, limit_bytes=limit_bytes, cmd=cmd, exe=exe, events=events,
               tracefs=tracefs, cgroup_version=version, cgroup_root=cg_root,
               unique=f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}",
               trace_path=trace_path, sidecar_path=sidecar_path, drop_caches=drop_caches,
               sample_interval=sample_interval, progress=progress, buffer_bytes=buffer_bytes,
               compression_level=compression_level, read_ahead_kb=read_ahead_kb,
               notify=notify or (lambda line: None), state_dir=state_dir)
    sigs = Signals()
    try:
        return _run(job, sigs)
    except Signalled as s:
        abandoned = s.signum
    finally:
        if sigs.pending is not None:  # for the caller's handlers, now back
            os.kill(os.getpid(), sigs.pending)
            time.sleep(0.01)
    raise CaptureError(f"capture {name} abandoned on {signal.Signals(abandoned).name}")


def _run(job: _Job, sigs: Signals) -> CaptureResult:
    with contextlib.ExitStack() as stack:
        stack.enter_context(sigs)
        recover(job.notify, job.state_dir)
        sigs.check()
        state = stack.enter_context(StateFile(job.name, job.state_dir))
        cgroup = stack.enter_context(MemoryCgroup(job.cgroup_version, job.cgroup_root,
                                                  job.unique, job.limit_bytes, state))
        sigs.check()
        inst = stack.enter_context(TraceInstance(job.tracefs, job.unique, job.events,
                                                 job.buffer_bytes, state))
        sigs.check()
        if job.read_ahead_kb is not None:
            stack.enter_context(ReadAhead(job.read_ahead_kb, state))
            sigs.check()
        if job.drop_caches:
            drop_caches()
            sigs.check()
        read_ahead = bdi_read_ahead_kb()
        resident = resident_at_start()
        sigs.check()
        inst.clear()
        sampler = stack.enter_context(Sampler(cgroup, job.sample_interval, job.progress,
                                              inst.marker_file))
        event_pid, tracing_on = inst.child_files()
        with Command(job.cmd, job.exe, cgroup.procs_file, event_pid, tracing_on, cgroup.path,
                     sigs, (str(inst.marker_file), sampler.first_marker)) as child:
            sampler.started()
            returncode, seconds = sampler.watch(child)
        inst.stop()
        sampler.close()
        stat = cgroup.stat()
        sampler.finish()
        orders = cgroup.folio_orders()
        leftover = cgroup.pids()
        tstats = inst.stats()
        lost = tstats["overrun"] + tstats["dropped events"]
        level = job.compression_level
        if level is None:
            level = compression_level(tstats["entries"])
        devices: set[str] = set()
        out = stack.enter_context(CaptureFiles(job.trace_path, job.sidecar_path, state))
        counts = inst.write_trace(out.trace.path, level, sigs.check, devices)
        for dev in devices - read_ahead.keys():  # a device that appeared while CMD ran
            with contextlib.suppress(OSError, ValueError):
                read_ahead[dev] = int(read(SYSFS_BDI / dev / "read_ahead_kb"))
        limit = job.limit_bytes
        sidecar = {
            "name": job.name,
            "limit_mib": limit // MIB if limit % MIB == 0 else limit / MIB,
            "seconds": seconds,
            "trace_overrun_events": int(lost),
            "command": shlex.join(job.cmd),
            "exit_code": exit_code(returncode),
            "kernel": kernel_fields(job.cgroup_version, stat, sampler.vm0, sampler.vm1,
                                    sampler.cache_peak),
            "read_ahead_kb": {d: read_ahead[d] for d in sorted(devices & read_ahead.keys(),
                                                               key=dev_order)},
            "resident_at_start": resident,
            "exec_mappings": sampler.exec_seen.runs(),
            "cow_mappings": sampler.exec_seen.cow_runs(),
            "paths": sampler.exec_seen.sorted_paths(),
            "buffers_growth_peak": int(sampler.buffers.peak),
            "cgroup_samples": sampler.samples_written,
            "kernel_release": kernel_release(),
            "filesystems": {d: fs for d, fs in sorted(mount_filesystems().items(),
                                                      key=lambda x: dev_order(x[0]))
                            if d in devices},
        }
        if orders is not None:
            sidecar["folio_orders"] = {str(k): v for k, v in orders.items()}
        with open(out.sidecar.path, "w") as f:
            f.write(sidecar_json(sidecar))
        sigs.check()
        out.commit()
        warnings = []
        if lost:
            warnings.append(f"{lost} events were lost; raise --buffer-size")
        if sampler.busy_samples:
            warnings.append(f"at {sampler.busy_samples} of {sampler.samples_written} samples "
                            "/proc/meminfo Buffers had grown by more than the cgroup's whole "
                            "page cache: other processes were reading filesystem metadata, so "
                            "the metadata series overstates the capture's (record on an idle "
                            "machine)")
        if leftover:
            warnings.append(f"{len(leftover)} processes of the command were still running when "
                            f"it exited; moved to the root cgroup (not killed): "
                            f"{' '.join(map(str, leftover))}")
        return CaptureResult(name=job.name, trace_path=job.trace_path,
                             sidecar_path=job.sidecar_path, sidecar=sidecar, events=counts,
                             cgroup_version=job.cgroup_version,
                             interrupted=sigs.forwarded[0] if sigs.forwarded else None,
                             leftover_pids=leftover, warnings=warnings)
