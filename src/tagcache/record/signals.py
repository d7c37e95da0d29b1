"""SIGINT, SIGTERM, SIGHUP and SIGQUIT during a capture. The handler never raises, so no step of
setting up or undoing is cut in half; whatever the signal, the machine is put back.

While CMD runs, the first signal is forwarded to CMD and the next ones become SIGKILL; the
capture is then written as usual. At any other time the signal is held: :meth:`Signals.check`
(called between setup steps and while the trace is written) abandons the capture by raising
:class:`Signalled`, everything is undone, and ``record()`` delivers the signal again with the
caller's handlers back (KeyboardInterrupt for SIGINT, by default; death by the signal for the
others). A signal the caller ignores (``nohup``: SIGHUP) stays ignored.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


class Signalled(BaseException):
    """A held signal abandons the capture (a BaseException: nothing on the way catches it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Signals:
    """The handlers of :data:`SIGNALS` for the duration of a capture."""

    def __init__(self) -> None:
        self.running = False
        self.child: subprocess.Popen[bytes] | None = None
        self.forwarded: list[int] = []
        self.pending: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        for sig in SIGNALS:
            old = signal.getsignal(sig)
            if old in (signal.SIG_IGN, None):
                continue
            try:
                signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay the caller's business
                break
            self._old[sig] = old
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def check(self) -> None:
        if self.pending is not None:
            raise Signalled(self.pending)

    def start(self, child: subprocess.Popen[bytes]) -> None:
        """CMD runs: forward from now on (a signal held meanwhile goes to it at once)."""
        self.child, self.running = child, True
        if self.pending is not None:
            sig, self.pending = self.pending, None
            self._forward(sig)

    def stop(self) -> None:
        self.running = False

    def _forward(self, signum: int) -> None:
        self.forwarded.append(signum)
        sig = signum if len(self.forwarded) == 1 else signal.SIGKILL
        if self.child is not None and self.child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child.pid, sig)

    def _handle(self, signum: int, frame: object) -> None:
        if self.running:
            self._forward(signum)
        elif self.pending is None:
            self.pending = signum
