"""Undoing what a recorder that died left changed, from its state file (state.py): run first
by every ``tagcache record``, and alone by ``tagcache record --recover``.

Restoring never makes things worse: only the instance and cgroup the file names are removed,
only if they still exist and carry the recorder's name prefix; a read_ahead_kb value is written
back only to a device that still exists under the same name and still has the value the
recorder set; a temporary output is removed only if it is still a regular file. A live
recorder's file is left alone; a file from an earlier boot names nothing that still exists
and is just removed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tagcache.errors import CaptureError
from tagcache.record import cgroup, readahead, state, tracefs
from tagcache.record.util import PREFIX, boot_id


def _undo(data: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Undo everything ``data`` lists; (what was done, what failed). ``data`` keeps only what
    is still to do."""
    done: list[str] = []
    failures: list[str] = []
    if isinstance(ra := data.get(readahead.STATE_KEY), dict):
        did, kept, failed = readahead.restore(ra)
        done += did
        failures += failed
        data[readahead.STATE_KEY] = kept
    if isinstance(inst := data.get(tracefs.STATE_KEY), str):
        path = Path(inst)
        if path.parent.name == "instances" and path.name.startswith(PREFIX) and path.is_dir() \
                and (path.parent.parent / "events").is_dir():            # a tracefs instance
            try:
                tracefs.remove_instance(path)
                done.append(f"tracefs instance {path.name} removed")
                data.pop(tracefs.STATE_KEY)
            except OSError as e:
                failures.append(f"could not remove tracefs instance {path}: {e.strerror}")
    if isinstance(cg := data.get(cgroup.STATE_KEY), dict):
        path, root = Path(str(cg.get("path"))), Path(str(cg.get("root")))
        if path.parent == root and path.name.startswith(PREFIX) and path.is_dir() \
                and (root / "cgroup.procs").exists():                    # a cgroup's root
            try:
                moved = cgroup.remove_cgroup(path, root)
                more = (f" ({len(moved)} processes left in it moved to the root cgroup: "
                        f"{' '.join(map(str, moved))})") if moved else ""
                done.append(f"cgroup {path} removed{more}")
                data.pop(cgroup.STATE_KEY)
            except OSError as e:
                failures.append(f"could not remove cgroup {path}: {e.strerror}")
    for tmp in data.get("temporaries") or []:
        p = Path(str(tmp))
        try:
            if p.name.startswith(".") and p.name.endswith(".tmp") \
                    and stat.S_ISREG(os.lstat(p).st_mode):
                p.unlink()
                done.append(f"temporary file {p} removed")
        except OSError:
            pass
    data.pop("temporaries", None)
    for key in (readahead.STATE_KEY, tracefs.STATE_KEY, cgroup.STATE_KEY):
        if key in data and not data[key]:
            data.pop(key)
    return done, failures


def recover(notify: Callable[[str], None], directory: Path | None = None) -> int:
    """Restore the machine from every state file whose owner is dead; ``notify`` gets one line
    per such recorder (``recovered from a recorder that died (pid N): ...``) and per file
    that is no state file. Returns how many recorders were recovered. CaptureError naming
    what could not be undone (that file is kept, so the next run tries again)."""
    failures: list[str] = []
    n = 0
    with state.lock(directory):
        for path, data in state.state_files(directory):
            if isinstance(data, str):
                notify(f"{path}: {data}; left alone")
                continue
            if state.owner_alive(data):
                continue
            pid = data["pid"]
            if data.get("boot_id") != boot_id():
                path.unlink(missing_ok=True)
                notify(f"removed the state file of a recorder (pid {pid}) of an earlier boot")
                n += 1
                continue
            done, failed = _undo(data)
            if failed:
                state.write_atomic(path, data)
                failures.append(f"a recorder that died (pid {pid}) left changes that could not "
                                f"be undone: {'; '.join(failed)} (still listed in {path})")
            else:
                path.unlink(missing_ok=True)
            what = ", ".join(done) if done else "nothing was left changed"
            notify(f"recovered from a recorder that died (pid {pid}): {what}")
            n += 1
        state.remove_dead_temporaries(directory)
    if failures:
        raise CaptureError("; ".join(failures))
    return n


def live_recorders(directory: Path | None = None) -> list[int]:
    """Pids of the recorders running now, by their state files."""
    return [int(d["pid"]) for _, d in state.state_files(directory)
            if isinstance(d, dict) and state.owner_alive(d)]
