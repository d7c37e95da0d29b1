"""Independent units of work in forked worker processes: a scenario's shares side by side.

The runs of an experiment at different tagged shares share nothing but their inputs, so
:func:`run_units` gives them to ``jobs`` worker processes forked from the caller (Linux fork:
the trace columns, the compiled code and any memo the caller has filled are shared
copy-on-write; only each unit's result travels back, pickled). Units are handed out in order,
one at a time, as workers become free, and the results come back in unit order, so the
outcome does not depend on ``jobs``.

A worker ignores SIGINT (the caller handles an interrupt and stops them), dies with its
parent (PR_SET_PDEATHSIG), and tells the caller of progress and of the first exception it
meets, which the caller raises (with the worker's traceback as a note). However the caller
leaves, every worker it started is stopped and reaped.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import pickle
import signal
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

PR_SET_PDEATHSIG = 1
PRELOAD_THREAD = "tagcache-preload"
"""The name of the thread that loads compiled code while the command parses (cli.py): a
fork waits for it, since the child of a fork made while it holds numba's compiler lock
would wait for that lock for ever."""


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def run_units(work: Callable[[int, Callable[[int], None] | None], Any], n: int, jobs: int,
              progress: Callable[[int], None] | None = None,
              meanwhile: Callable[[], None] | None = None) -> list[Any]:
    """``[work(i, progress) for i in range(n)]``, on up to ``jobs`` forked workers (in this
    process when ``jobs <= 1``, when there is one unit, or where fork is not available).
    ``meanwhile()`` runs here once the workers have started (first, without workers)."""
    jobs = min(jobs, n)
    if jobs <= 1 or "fork" not in mp.get_all_start_methods():
        if meanwhile is not None:
            meanwhile()
        return [work(i, progress) for i in range(n)]
    for th in threading.enumerate():    # no fork while a thread may hold a lock (cli.py's)
        if th.name.startswith(PRELOAD_THREAD) and th is not threading.current_thread():
            th.join()
    ctx = mp.get_context("fork")
    counter = ctx.Value("q", 0)
    procs: list[Any] = []
    conns: list[Connection] = []
    try:
        for _ in range(jobs):
            r, w = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_worker, args=(work, n, counter, w), daemon=True)
            with _sigint_deferred():     # started and recorded, or neither
                p.start()
                procs.append(p)
                conns.append(r)
            w.close()
        if meanwhile is not None:
            meanwhile()
        return _collect(procs, conns, n, progress)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()
        for c in conns:
            c.close()


def _collect(procs: Sequence[Any], conns: list[Connection], n: int,
             progress: Callable[[int], None] | None) -> list[Any]:
    """Read every worker's messages until each has said it is done."""
    results: list[Any] = [None] * n
    live = dict(zip(conns, procs, strict=True))
    while live:
        for c in wait(list(live)):
            try:
                msg = c.recv()
            except EOFError:        # the worker is gone without saying it was done
                p = live.pop(c)
                p.join()
                raise RuntimeError(f"a worker process died (exit status {p.exitcode})"
                                   ) from None
            kind = msg[0]
            if kind == "progress":
                if progress is not None:
                    progress(msg[1])
            elif kind == "result":
                results[msg[1]] = msg[2]
            elif kind == "error":
                exc = msg[1]
                exc.add_note(f"in a worker process:\n{msg[2]}")
                raise exc
            else:                    # "done"
                live.pop(c)
    return results


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """An interrupt during a fork is taken when the fork is done. One that arrives while the
    interpreter runs its fork hooks (logging's, multiprocessing's) would be raised inside a
    hook, where it is swallowed as an "Exception ignored" message and the command carries
    on. So for the span of the fork the SIGINT handler only notes the signal, and it is raised
    again afterwards (to the handler that was there), where the caller's ``finally`` stops
    and reaps the workers. A handler, not a signal mask: the kernel delivers a signal the
    calling thread blocks to any other thread, and Python then runs the handler in the main
    thread all the same. Where SIGINT is ignored, or this is not the main thread (which alone
    may set handlers), nothing changes."""
    prev = signal.getsignal(signal.SIGINT)
    if (threading.current_thread() is not threading.main_thread()
            or prev in (signal.SIG_IGN, None)):
        yield
        return
    noted: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _frame: noted.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, prev)
        if noted:
            signal.raise_signal(signal.SIGINT)


def _worker(work: Callable, n: int, counter: Any, out: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()

    def tell(k: int) -> None:
        out.send(("progress", k))

    try:
        while True:
            with counter.get_lock():
                i = counter.value
                counter.value += 1
            if i >= n:
                break
            out.send(("result", i, work(i, tell)))
    except BaseException as e:       # noqa: BLE001 - every failure goes to the caller
        out.send(("error", _portable(e), traceback.format_exc()))
    else:
        out.send(("done",))
    finally:
        out.close()


def _portable(e: BaseException) -> BaseException:
    """``e`` if it survives pickling, else a RuntimeError carrying its text."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:                # noqa: BLE001
        return RuntimeError(f"{type(e).__name__}: {e}")


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:            # the parent died before the request took effect
        os._exit(1)
