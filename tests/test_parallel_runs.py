"""Runs side by side and runs shared: the worker processes of workers.py, the twin policies of
replay.py (a design whose twin took the same steps is not replayed again), and the results of
a scenario or a trace replay the same whatever ``jobs`` is."""

from __future__ import annotations

import json
import os
import signal
import threading
import tomllib

import pytest
from expected_counts import TRACE_CAPACITY, TRACE_SCENARIO, TRACES

from tagcache import Design, load_scenario, replay
from tagcache.errors import TraceError
from tagcache.experiment import run_scenario, run_trace, scenario_trace
from tagcache.scenario import parse_scenario
from tagcache.traces import read_trace
from tagcache.workers import run_units


def _strip(x):
    """A result's JSON without what depends on the run rather than the model."""
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in ("perf", "wall_s")}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


# -- worker processes ---------------------------------------------------------------------------

def _square(i, tell):
    tell(i)
    return i * i


def test_units_come_back_in_order_with_their_progress():
    seen = []
    assert run_units(_square, 7, 3, seen.append) == [i * i for i in range(7)]
    assert sorted(seen) == list(range(7))
    assert run_units(_square, 7, 1, seen.append) == [i * i for i in range(7)]


def _fails_at_3(i, tell):
    if i == 3:
        raise TraceError("line 3: bad")
    return i


def test_a_workers_exception_is_raised_here_with_its_traceback():
    with pytest.raises(TraceError, match="line 3: bad") as info:
        run_units(_fails_at_3, 6, 2)
    assert any("in a worker process" in n for n in info.value.__notes__)


def _dies_at_2(i, tell):
    if i == 2:
        os._exit(9)
    return i


def test_a_worker_that_dies_is_an_error_and_nothing_is_left_running():
    before = set(os.listdir("/proc"))
    with pytest.raises(RuntimeError, match="died"):
        run_units(_dies_at_2, 5, 2)
    children = [p for p in set(os.listdir("/proc")) - before if p.isdigit()
                and _parent(p) == os.getpid()]
    assert not children


_INTERRUPT_AT_FORK = [False]


def _interrupt_self() -> None:
    if _INTERRUPT_AT_FORK[0]:
        _INTERRUPT_AT_FORK[0] = False
        os.kill(os.getpid(), signal.SIGINT)


os.register_at_fork(after_in_parent=_interrupt_self)


@pytest.mark.parametrize("other_thread", [False, True])
def test_an_interrupt_during_a_fork_stops_the_run_and_its_workers(other_thread):
    # An interrupt that arrives while the interpreter runs its fork hooks must not be
    # swallowed there ("Exception ignored in ...", the run then finishing with status 0),
    # also when another thread is running (a progress bar's), which the kernel may hand the
    # signal to. Python's own handler, as at a terminal: a CI job may start with SIGINT
    # ignored.
    before = set(os.listdir("/proc"))
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    stop = threading.Event()
    th = threading.Thread(target=stop.wait, daemon=True)
    if other_thread:
        th.start()
    _INTERRUPT_AT_FORK[0] = True
    try:
        with pytest.raises(KeyboardInterrupt):
            run_units(_square, 5, 2)
    finally:
        _INTERRUPT_AT_FORK[0] = False
        signal.signal(signal.SIGINT, old)
        stop.set()
    children = [p for p in set(os.listdir("/proc")) - before if p.isdigit()
                and _parent(p) == os.getpid()]
    assert not children


def _parent(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


# -- twin policies --------------------------------------------------------------------------------

@pytest.mark.parametrize("share", [0.0, 0.3])
def test_a_twin_run_is_the_run_it_stands_for(share):
    """At 0% no claim drops anything, so "split" takes "whole"'s steps and is not replayed;
    at 30% claims drop pages of folios with other pages stored (the default scenario's
    "whole" counts collateral there), so "split" must be replayed, and its result is its
    own. Either way the memo's result equals a fresh replay."""
    scn = load_scenario()
    tr = scenario_trace(scn, share)
    memo: dict = {}
    whole = replay(scn.machine, Design("cleancache", "whole"), tr, tagged_share=share,
                   memo=memo)
    split = replay(scn.machine, Design("cleancache", "split"), tr, tagged_share=share,
                   memo=memo)
    fresh = replay(scn.machine, Design("cleancache", "split"), tr, tagged_share=share)
    assert _strip(split.to_json()) == _strip(fresh.to_json())
    ticks: list[int] = []                # a progress bar hears of a shared run's events too
    replay(scn.machine, Design("cleancache", "split"), tr, tagged_share=share, memo=memo,
           progress=ticks.append)
    assert sum(ticks) == fresh.perf["events"]
    assert split.policy["large_folio"] == "split"
    if share == 0.0:
        assert split.perf.get("same_steps_as") == "whole"
    else:
        assert "same_steps_as" not in split.perf
        assert whole.cleancache["collateral"] > 0
        assert _strip(whole.to_json())["cleancache"] != _strip(split.to_json())["cleancache"]


# -- jobs ------------------------------------------------------------------------------------------

def test_a_scenario_is_the_same_on_any_number_of_workers():
    scn = parse_scenario(tomllib.loads(TRACE_SCENARIO), "<pinned-trace>")
    one = run_scenario(scn, check=True, jobs=1).to_json()
    two = run_scenario(scn, check=True, jobs=2).to_json()
    assert _strip(one) == _strip(two)


@pytest.mark.parametrize("policy", ["kernel", "lru"])
def test_a_trace_replay_is_the_same_on_any_number_of_workers(policy):
    """Unchecked, so that the idle design's page cache runs once (before the workers fork)
    and the twin policies share runs: neither may change a count."""
    scn = parse_scenario(tomllib.loads(TRACE_SCENARIO), "<pinned-trace>")
    trace = read_trace(TRACES / "grep-head.trace.zst", "ftrace", use_cache=False)
    got = [run_trace(scn, trace, capacity_pages=TRACE_CAPACITY, policy=policy, check=False,
                     jobs=jobs).to_json() for jobs in (1, 2, 3)]
    checked = run_trace(scn, trace, capacity_pages=TRACE_CAPACITY, policy=policy,
                        check=True).to_json()
    assert _strip(got[0]) == _strip(got[1]) == _strip(got[2])
    runs = got[0]["results"] + got[0]["baselines"]
    shared = [r for r in runs if "same_steps_as" in r["perf"]]
    assert shared                          # at 0% at least, no claim drops anything
    assert got[0]["perf"]["shared_runs"] == len(shared)
    assert got[0]["perf"]["events"] == sum(r["perf"]["events"] for r in runs
                                           if "same_steps_as" not in r["perf"])
    for a, b in zip(got[0]["results"], checked["results"], strict=True):
        a, b = _strip(a), _strip(b)
        a.pop("invariants"), b.pop("invariants")
        assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_no_fork_while_the_engine_loads(tmp_path):
    """The command loads the compiled code in a thread while it parses; when the parse fails
    the thread is left to finish, and a fork made meanwhile waits for it (a child forked while
    it holds numba's compiler lock would hang)."""
    import threading

    from tagcache.cli import main
    from tagcache.workers import PRELOAD_THREAD

    bad = tmp_path / "bad.txt"
    bad.write_text("1\n2\nnot a page\n")
    assert main(["run", "--trace", str(bad), "--format", "txt", "--no-progress"]) == 2
    assert run_units(_square, 4, 2) == [0, 1, 4, 9]
    assert not [t for t in threading.enumerate() if t.name == PRELOAD_THREAD]
