"""NAME.trace.zst and NAME.json, which appear together or not at all: checked before anything
is changed (an output directory that is missing or cannot be written, an output that is a
directory: refused before CMD runs), written under temporary names (tagcache.outputs.Output;
listed in the state file, so the next recorder removes them if this one is killed) and renamed
one after the other only when both are complete."""

from __future__ import annotations

from pathlib import Path

from tagcache.errors import CaptureError
from tagcache.outputs import Output, check_output
from tagcache.record.state import StateFile

STATE_KEY = "temporaries"
"""Key of the state file: the temporary files being written."""


def check_outputs(out_dir: Path, paths: tuple[Path, ...]) -> None:
    """CaptureError or OutputError (one line) if an output cannot be written."""
    if not out_dir.is_dir():
        what = "is not a directory" if out_dir.exists() else "does not exist"
        raise CaptureError(f"output directory {out_dir} {what}")
    for p in paths:
        check_output(p, "--out-dir")


class CaptureFiles:
    """The two outputs of a capture: write :attr:`trace` ``.path`` and :attr:`sidecar`
    ``.path``, then :meth:`commit`; on exit without commit both temporaries are removed."""

    def __init__(self, trace_path: Path, sidecar_path: Path, state: StateFile) -> None:
        self.trace_path, self.sidecar_path, self.state = trace_path, sidecar_path, state
        self.outputs: list[Output] = []
        self.committed = False

    def __enter__(self) -> CaptureFiles:
        try:
            for p in (self.trace_path, self.sidecar_path):
                self.outputs.append(Output(p))
                self.state.set(STATE_KEY, [str(o.path) for o in self.outputs if not o.in_place])
        except BaseException:
            self.__exit__()
            raise
        return self

    @property
    def trace(self) -> Output:
        return self.outputs[0]

    @property
    def sidecar(self) -> Output:
        return self.outputs[1]

    def commit(self) -> None:
        done: list[Output] = []
        try:
            for o in self.outputs:
                o.commit()
                done.append(o)
        except BaseException:  # the second rename failed: take the first back, not half
            for o in done:
                if not o.in_place:
                    o.final.unlink(missing_ok=True)
            raise
        self.committed = True

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            for o in self.outputs:
                o.abort()
        self.state.drop(STATE_KEY)
