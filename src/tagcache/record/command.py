"""CMD itself: started inside the cgroup with tracing on, stopped on exit. CMD's process writes
its own pid into cgroup.procs and set_event_pid and turns tracing on just before exec, so no
event of CMD is missed and none of the recorder's is recorded; then it writes the sample taken
just before (sampling.py) into trace_marker, so that it is the trace's first line. If the
capture ends with CMD still running (an error, a signal before it started), CMD gets SIGTERM,
then SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from tagcache.errors import CaptureError
from tagcache.record.signals import Signals


def _enter_cgroup_and_trace(procs: str, event_pid: str, tracing_on: str,
                            marker: tuple[str, bytes] | None = None) -> Callable[[], None]:
    """The child's last steps before exec: only os.* calls (safe after fork). ``marker``:
    (trace_marker, a line) written once tracing is on."""
    def enter() -> None:
        pid = str(os.getpid()).encode()
        steps = [(procs, pid, os.O_WRONLY), (event_pid, pid, os.O_WRONLY | os.O_TRUNC),
                 (tracing_on, b"1", os.O_WRONLY)]
        if marker is not None:
            steps.append((marker[0], marker[1], os.O_WRONLY))
        for path, data, flags in steps:
            fd = os.open(path, flags)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
    return enter


def stop_child(child: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; reaps the child."""
    if child.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        child.wait()


class Command:
    """CMD running, signals forwarded to it (signals.py) until it exits or the capture ends."""

    def __init__(self, cmd: list[str], exe: str, procs: str, event_pid: str, tracing_on: str,
                 cgroup_path: Path, signals: Signals,
                 marker: tuple[str, bytes] | None = None) -> None:
        self.cmd, self.exe, self.signals = cmd, exe, signals
        self.cgroup_path = cgroup_path
        self.enter = _enter_cgroup_and_trace(procs, event_pid, tracing_on, marker)
        self.child: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> subprocess.Popen[bytes]:
        try:
            self.child = subprocess.Popen(self.cmd, executable=self.exe, preexec_fn=self.enter)
        except subprocess.SubprocessError as e:
            raise CaptureError(f"could not start {self.cmd[0]} inside cgroup {self.cgroup_path} "
                               f"with tracing on ({e})") from None
        except OSError as e:
            raise CaptureError(f"could not start {self.cmd[0]}: {e.strerror}") from None
        self.signals.start(self.child)
        return self.child

    def __exit__(self, *exc: object) -> None:
        self.signals.stop()
        if self.child is not None:
            stop_child(self.child)
