"""The ``tagcache`` command: a thin layer over the library (parse, build, run, report).

Every way out is one line on standard error: a user error (TagcacheError, a bad option)
``tagcache: error: ...``, exit 2; an interrupt ``tagcache: interrupted``, exit 130, from the
first import on; anything else ``tagcache: internal error: ...``, exit 70 (``--debug`` shows
the traceback).
"""
# ruff: noqa: E402  (the start-up interrupt handler goes before the heavy imports)

from __future__ import annotations

import os
import signal
import sys


def _interrupted_at_startup(_signum: int, _frame: object) -> None:
    """SIGINT while the command is still importing: nothing to undo yet."""
    os.write(2, b"tagcache: interrupted\n")
    os._exit(130)


_SIGINT_BEFORE = None
if signal.getsignal(signal.SIGINT) is signal.default_int_handler:   # not ignored, not taken
    try:
        _SIGINT_BEFORE = signal.signal(signal.SIGINT, _interrupted_at_startup)
    except ValueError:           # imported from another thread: not ours to handle
        pass

# numpy asks for transparent huge pages on every array of 4 MiB or more (madvise); where the
# kernel then compacts memory on the fault ("defrag" madvise, the default) and rarely finds a
# huge page, as on the VM of the README's benchmarks, first touches of a new array cost 4-5
# times as much: the 11.4M-request txt trace parsed in 0.9 s with it, 0.5 s without. The
# command's big arrays are columns read once in order; NUMPY_MADVISE_HUGEPAGE=1 restores it.
if "numpy" not in sys.modules:
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

import contextlib
import math
import re
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tagcache.engine.choices import ALLOC_POLICIES
from tagcache.engine.nrt import use_plain_refcounts
from tagcache.engine.pagemap import slots_needed
from tagcache.errors import OptionError, TagcacheError
from tagcache.experiment import (
    TAGGED_SOURCES,
    plan_size,
    run_scenario,
    run_shares,
    run_trace,
    scenario_traces,
    trace_tasks,
)
from tagcache.hw.layout import BYTES_PER_PFN, PHYS_ADDR_LIMIT, check_memory
from tagcache.outputs import check_output
from tagcache.replay import BACKEND_NAMES, check_run_memory, parallel_runs
from tagcache.report import (
    print_comparison,
    print_report,
    print_validation,
    share_warnings,
    write_json,
)
from tagcache.scenario import check_shares, load_scenario
from tagcache.sidecar import capture_facts, load_sidecar, read_ahead_pages, sidecar_for
from tagcache.traces import READERS, read_trace
from tagcache.units import PAGE_SIZE, parse_pages, parse_size
from tagcache.validate import validate_trace
from tagcache.workers import PRELOAD_THREAD, available_cpus
from tagcache.workloads.events import Op

err = Console(stderr=True)

PROGRESS_INTERVAL_S = 5.0
"""Seconds between the plain progress lines of --progress when stderr is not a terminal."""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, default=False,
              help="On an internal error, print the Python traceback too.  [default: one "
                   "line]")
@click.version_option(package_name="tagcache")
def app(debug: bool) -> None:
    """tagcache: arm64 MTE tag storage reused as a cleancache, modelled end to end."""


def _plain_progress(total: int):
    """--progress without a terminal: a line every PROGRESS_INTERVAL_S seconds and one at the
    end, ``tagcache: 12,345 / 192,864 events (6%), 3.1 s``."""

    @contextlib.contextmanager
    def ctx():
        t0 = time.monotonic()
        state = {"done": 0, "last": t0}

        def line() -> None:
            pct = 100 * state["done"] // total if total else 100
            print(f"tagcache: {state['done']:,} / {total:,} events ({pct}%), "
                  f"{time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)

        def tick(n: int) -> None:
            state["done"] += n
            now = time.monotonic()
            if now - state["last"] >= PROGRESS_INTERVAL_S:
                state["last"] = now
                line()

        yield tick
        line()
    return ctx()


def _progress_bar(total: int, enabled: bool | None):
    """Progress on stderr: a rich bar on a terminal, plain lines when --progress is given and
    stderr is not one, else nothing (None). Advance it with the returned callback."""
    tty = sys.stderr.isatty()
    if enabled is None:
        enabled = tty
    if not enabled:
        return contextlib.nullcontext(None)
    if not tty:
        return _plain_progress(total)
    bar = Progress(TextColumn("[bold]replaying"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("events"), TimeElapsedColumn(), console=err, transient=True)

    @contextlib.contextmanager
    def ctx():
        with bar:
            task = bar.add_task("replay", total=total)
            yield lambda n: bar.advance(task, n)
    return ctx()


def _pages_option(opt: str, value: str | None, lo: int) -> int | None:
    """A size option in pages (units.py: a plain number counts pages, a unit bytes)."""
    if value is None:
        return None
    try:
        b = parse_size(value)
        if b < lo * PAGE_SIZE:
            raise ValueError(f"must be at least {lo} page (4 KiB)")
        return parse_pages(value)
    except ValueError as e:
        raise OptionError(f"{opt} {value}: {e} (give pages, e.g. 4096, or a size, e.g. "
                          f"64MiB)") from None


def _capacity(value: str | None) -> int | None:
    """--capacity: a page count, or a size with a unit; at least one page."""
    return _pages_option("--capacity", value, 1)


class _Share(click.ParamType):
    """A tagged share: a finite fraction in [0, 1)."""

    name = "fraction"

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, float):
            return value
        try:
            x = float(value)
        except (TypeError, ValueError):
            x = math.nan
        if not math.isfinite(x) or not 0 <= x < 1:
            raise OptionError(f"--tagged-share {value}: expected a fraction in [0, 1), e.g. "
                              f"0.1")
        return x


def _sidecar(trace_path: Path, meta: Path | None, *, required: bool) -> dict | None:
    """The capture sidecar: --meta, else NAME.json beside the trace (None if absent and
    not required)."""
    side = meta if meta is not None else sidecar_for(trace_path)
    if meta is None and not side.is_file():
        if required:
            raise TagcacheError(f"{side}: no capture sidecar (give --meta NAME.json)")
        return None
    return load_sidecar(side)


def _peak_pages(sidecar: dict, trace_path: Path, meta: Path | None) -> int:
    """The sidecar's kernel.cache_peak in pages, the default capacity: at least one page."""
    peak = sidecar["kernel"]["cache_peak"] // PAGE_SIZE
    if peak < 1:
        side = meta if meta is not None else sidecar_for(trace_path)
        raise OptionError(f"{side}: kernel.cache_peak = {sidecar['kernel']['cache_peak']} is "
                          f"less than a page; give --capacity")
    return peak


def _check_kmem(trace, trace_path: Path, comms: list[str]) -> None:
    """--tagged trace needs the trace's kmem mm_page_alloc events, and --tag-comm tasks that
    are in it."""
    if not np.any(trace.op == Op.PAGE_ALLOC):
        raise OptionError(f"--tagged trace: {trace_path} has no kmem mm_page_alloc events "
                          f"(record with --with-alloc, or use --tagged generator)")
    pfns = trace.arg0[np.isin(trace.op, [Op.PAGE_ALLOC, Op.PAGE_FREE])]
    top = int(pfns.max()) + 1          # the machine modelled reaches the highest PFN
    if top > PHYS_ADDR_LIMIT >> 12:
        raise OptionError(f"--tagged trace: {trace_path} has a kmem event at PFN {top - 1:#x}, "
                          f"beyond arm64's 52-bit physical address space")
    check_memory(top * BYTES_PER_PFN, f"--tagged trace: {trace_path} reaches PFN {top - 1:#x}: "
                                      f"a machine of {top:,} pages at {BYTES_PER_PFN} B a page")
    if comms and not trace_tasks(trace, comms):
        names = sorted({comm for comm, _pid in trace.tasks})
        shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
        raise OptionError(f"--tag-comm {' '.join(comms)}: no such task in {trace_path} "
                          f"(its tasks: {shown or 'none'})")


@contextlib.contextmanager
def _loading_engine(designs: list, policy: str, check: bool):
    """Load the compiled code the run will call, in a thread, while the body parses or
    generates its input (engine/warm.py preload()); joined when the body is done, before any
    worker is forked. A failure there is left to the run itself to meet and report; on an
    error in the body the thread is not waited for (it dies with the process)."""
    th = threading.Thread(target=_preload, args=(designs, policy, check), daemon=True,
                          name=PRELOAD_THREAD)
    th.start()
    yield
    th.join()


def _preload(designs: list, policy: str, check: bool) -> None:
    from tagcache.engine.warm import preload

    with contextlib.suppress(Exception):
        preload(designs, policy, check)


def _check_json_path(json_path: str | None) -> None:
    check_output(json_path, "--json")


def _finish(exp, json_path: str | None) -> None:
    if json_path != "-":
        print_report(exp)
    for w in share_warnings(exp):
        print(f"tagcache: warning: {w}", file=sys.stderr)
    if json_path is not None:
        write_json(exp.to_json(), json_path)


TRACE_FORMATS = click.Choice(sorted(READERS), case_sensitive=False)


@app.command()
@click.option("--config", "-c", "config", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="FILE.toml",
              help="Scenario file (every key documented in examples/scenario.toml).  "
                   "[default: the embedded scenario: 4 GiB machine, tagged 1%, 10%, 30%]")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="PATH",
              help="Replay a real trace instead of the scenario's file workload.  "
                   "[default: none, the generated workload]")
@click.option("--format", "fmt", type=TRACE_FORMATS, default=None,
              help="Trace format.  [default: detected from the content]")
@click.option("--csv-spec", default=None, metavar="SPEC",
              help="libCacheSim column spec for csv traces, e.g. 'obj-id-col=5,obj-size-col=4,"
                   "has-header=true,block-size=512'.  [default: none]")
@click.option("--skip-bad-lines", is_flag=True, default=False,
              help="Count and skip malformed trace lines instead of stopping.  [default: off]")
@click.option("--meta", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="NAME.json",
              help="Capture sidecar: its kernel.cache_peak is the default capacity, and the "
                   "page cache takes its readahead window, folio sizes and resident pages, "
                   "as 'tagcache validate' does.  [default: NAME.json beside an ftrace "
                   "trace, if there]")
@click.option("--policy", type=click.Choice(["kernel", "lru"]), default="kernel",
              show_default=True,
              help="Page-cache model: the kernel's (readahead, two lists, workingset) or a "
                   "plain LRU with no readahead (the libCacheSim reference).")
@click.option("--capacity", default=None, metavar="PAGES",
              help="Page-cache capacity for a trace, in pages (or a size such as 64MiB).  "
                   "[default: the sidecar's cache_peak; else the machine's free memory]")
@click.option("--mappings/--no-mappings", default=None,
              help="With a capture sidecar: its executable and copy-on-write mappings, as "
                   "'tagcache validate'.  [default: on where the sidecar has them]")
@click.option("--metadata/--no-metadata", "--minus-metadata/--no-minus-metadata",
              default=None,
              help="With a capture sidecar: the room less the filesystem metadata its cgroup "
                   "held, as 'tagcache validate'.  [default: on where measured]")
@click.option("--nonfile/--no-nonfile", default=None,
              help="With a capture: the room follows the cgroup's other charges (its samples "
                   "and kmem events), as 'tagcache validate'.  [default: on where the trace "
                   "has samples]")
@click.option("--backend", type=click.Choice(["all", *BACKEND_NAMES]), default="all",
              show_default=True, help="Which designs to run: one backend (at the scenario's "
                                      "parameters for it), or all of the scenario's.")
@click.option("--tagged", type=click.Choice(TAGGED_SOURCES), default="generator",
              show_default=True,
              help="Tagged memory of a trace replay: the scenario's generator, or the trace's "
                   "own kmem events (user anonymous pages of --tag-comm tasks, at their PFNs).")
@click.option("--tag-comm", multiple=True, metavar="COMM",
              help="With --tagged trace: tasks whose user anonymous pages are PROT_MTE "
                   "(repeatable).  [default: every task]")
@click.option("--tagged-share", "shares", multiple=True, type=_Share(), metavar="FRACTION",
              help="Tagged share(s) of memory to run, each in [0, 1) (repeatable; not with "
                   "--tagged trace).  [default: the scenario's]")
@click.option("--json", "json_path", default=None, metavar="PATH",
              help="Also write the results as JSON to PATH; '-' writes JSON alone to "
                   "standard output.  [default: no JSON]")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Check the invariants of DESIGN.md section 3 at every event and walk all "
                   "state at the end of each run.")
@click.option("--progress/--no-progress", default=None,
              help="Progress on standard error: a bar on a terminal, else a line every few "
                   "seconds.  [default: a bar when stderr is a terminal, else none]")
@click.option("--jobs", "-j", type=click.IntRange(1), default=None, metavar="N",
              help="Worker processes running the tagged shares side by side (forked: one "
                   "share's designs each; the results do not depend on it), fewer when their "
                   "machines would not fit in memory.  [default: the CPUs this process may "
                   "use]")
def run(config: Path | None, trace_path: Path | None, fmt: str | None, csv_spec: str | None,
        skip_bad_lines: bool, meta: Path | None, policy: str, capacity: str | None,
        mappings: bool | None, metadata: bool | None, nonfile: bool | None, backend: str,
        tagged: str,
        tag_comm: tuple[str, ...], shares: tuple[float, ...], json_path: str | None,
        check: bool, progress: bool | None, jobs: int | None) -> None:
    """Run a scenario, or replay a trace, through every design; one comparison table."""
    scn = load_scenario(config)
    _check_json_path(json_path)
    if tag_comm and tagged != "trace":
        raise OptionError("--tag-comm needs --tagged trace (it names the tasks whose pages "
                          "the trace's kmem events tag)")
    if shares and tagged == "trace":
        raise OptionError("--tagged-share does not go with --tagged trace (the trace's tasks "
                          "decide what is tagged)")
    if shares:
        try:
            scn.shares = check_shares(list(shares), scn.machine.layout.data_pages,
                                      scn.anon_pages)
        except ValueError as e:
            raise OptionError(f"--tagged-share {' '.join(f'{x:g}' for x in shares)}: "
                              f"{e}") from None
    if backend != "all":
        scn.designs = ([d for d in scn.designs if d.backend == backend]
                       or scn.designs_of([backend]))
    exp = _execute(scn, trace_path, fmt, csv_spec, skip_bad_lines, meta, policy, capacity,
                   mappings, metadata, nonfile, tagged, tag_comm, check, progress, jobs)
    _finish(exp, json_path)


def _execute(scn, trace_path: Path | None, fmt: str | None, csv_spec: str | None,
             skip_bad_lines: bool, meta: Path | None, policy: str, capacity: str | None,
             mappings: bool | None, metadata: bool | None, nonfile: bool | None, tagged: str,
             tag_comm: tuple[str, ...], check: bool, progress: bool | None,
             jobs: int | None):
    """The experiment ``run`` and ``compare`` share: the scenario's designs over its
    generated workload, or over a trace (its sidecar's facts applied)."""
    if trace_path is None:
        for opt, given in (("--format", fmt), ("--csv-spec", csv_spec), ("--meta", meta),
                           ("--capacity", capacity), ("--tag-comm", tag_comm),
                           ("--mappings", mappings), ("--metadata", metadata),
                           ("--nonfile", nonfile)):
            if given is not None and given != () and given is not False:
                raise OptionError(f"{opt} needs --trace")
        if policy != "kernel" or tagged != "generator":
            raise OptionError("--policy and --tagged need --trace")
        with _loading_engine(scn.designs, "kernel", check):
            traces = scenario_traces(scn)      # the baselines' 0% share included
        longest = max(traces.values(), key=len)
        jobs = parallel_runs(scn.machine.layout, slots_needed(longest.files),
                             len(longest), len(traces), jobs or available_cpus())
        with _progress_bar(plan_size(scn, traces), progress) as tick:
            return run_scenario(scn, check=check, traces=traces, progress=tick, jobs=jobs)
    cap = _capacity(capacity)
    with _loading_engine(scn.designs, policy, check):
        trace = read_trace(trace_path, fmt, skip_bad_lines=skip_bad_lines, csv_spec=csv_spec)
    if trace.skipped_lines:
        print(f"tagcache: warning: {trace.skipped_lines} malformed lines skipped",
              file=sys.stderr)
    if tagged == "trace":
        _check_kmem(trace, trace_path, list(tag_comm))
    sidecar = _sidecar(trace_path, meta, required=False)
    if sidecar is None and (mappings or metadata or nonfile):
        raise OptionError("--mappings, --metadata and --nonfile need a capture sidecar (--meta)")
    facts = None
    if sidecar is not None:
        facts = capture_facts(trace, sidecar, mappings=mappings, metadata=metadata,
                              nonfile=nonfile)
    if cap is None and sidecar is not None:
        cap = _peak_pages(sidecar, trace_path, meta)
    runs = len(scn.designs) * (1 if tagged == "trace" else len(run_shares(scn)))
    files = facts.files(trace.files) if facts is not None and policy == "kernel" else trace.files
    try:
        check_run_memory(scn.machine.layout, slots_needed(files), len(trace), 2)
    except TagcacheError as e:
        raise type(e)(f"--trace {trace_path}: {e}") from None
    jobs = parallel_runs(scn.machine.layout, slots_needed(files), len(trace), 2,
                         jobs or available_cpus())
    with _progress_bar(runs * len(trace), progress) as tick:
        return run_trace(scn, trace, capacity_pages=cap, policy=policy, tagged=tagged,
                         tag_comms=list(tag_comm) or None, check=check, progress=tick,
                         facts=facts, jobs=jobs)


@app.command()
@click.option("--config", "-c", "config", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="FILE.toml",
              help="Scenario file; its [designs.<backend>] tables fix parameters.  [default: "
                   "the embedded scenario]")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="PATH",
              help="Replay a real trace instead of the scenario's file workload (its sidecar "
                   "applied as for 'tagcache run').  [default: none]")
@click.option("--format", "fmt", type=TRACE_FORMATS, default=None,
              help="Trace format.  [default: detected from the content]")
@click.option("--meta", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="NAME.json", help="Capture sidecar.  [default: NAME.json beside an "
                                        "ftrace trace, if there]")
@click.option("--capacity", default=None, metavar="PAGES",
              help="Page-cache capacity for a trace (pages or a size).  [default: the "
                   "sidecar's cache_peak; else the machine's free memory]")
@click.option("--backends", default=",".join(BACKEND_NAMES), show_default=True,
              metavar="LIST", help="Comma-separated backends to compare, each at the values "
                                   "its parameters name for comparison unless the scenario "
                                   "sets them.")
@click.option("--tagged-share", "shares", multiple=True, type=_Share(), metavar="FRACTION",
              help="Tagged share(s) to run (repeatable).  [default: the scenario's]")
@click.option("--tagged-placement", "placements", multiple=True,
              type=click.Choice(ALLOC_POLICIES), metavar="POLICY",
              help="Where tagged data pages go (repeatable: each design once per policy, "
                   "with an oracle for each): " + ", ".join(ALLOC_POLICIES) + "; 'pack' "
                   "puts them under tag blocks already reserved.  [default: the scenario's "
                   "[designs] tagged_placement, else its machine.alloc_policy]")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, metavar="DIR",
              help="Write an offline HTML report with plots to DIR/index.html (DIR is made if "
                   "missing).  [default: no report]")
@click.option("--json", "json_path", default=None, metavar="PATH",
              help="Write the comparison as JSON to PATH; '-' to standard output alone.  "
                   "[default: no JSON]")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Check the invariants at every event of every run.")
@click.option("--progress/--no-progress", default=None,
              help="Progress on standard error.  [default: a bar when stderr is a terminal]")
@click.option("--jobs", "-j", type=click.IntRange(1), default=None, metavar="N",
              help="Worker processes for the shares.  [default: the CPUs this process may use]")
def compare(config: Path | None, trace_path: Path | None, fmt: str | None, meta: Path | None,
            capacity: str | None, backends: str, shares: tuple[float, ...],
            placements: tuple[str, ...], report_dir: Path | None, json_path: str | None,
            check: bool, progress: bool | None, jobs: int | None) -> None:
    """Every design on the same work, side by side: one row per design and tagged share,
    with memory recovered, fallbacks, failures, migrations, latencies and the oracle's gap.
    Exits 1 if a design breaks what it must hold (see the problems printed)."""
    from tagcache.compare import Comparison, comparison_scenario

    names = [b.strip() for b in backends.split(",") if b.strip()]
    unknown = [b for b in names if b not in BACKEND_NAMES]
    if not names or unknown or len(set(names)) != len(names):
        raise OptionError(f"--backends {backends}: expected distinct names from "
                          f"{', '.join(BACKEND_NAMES)}")
    _check_json_path(json_path)
    if report_dir is not None:
        # DIR/index.html if DIR is there, else DIR itself (made after the runs)
        check_output(str(report_dir / "index.html") if report_dir.is_dir() else
                     str(report_dir), "--report")
    scn = load_scenario(config)
    if placements:
        scn = replace(scn, tagged_placements=list(dict.fromkeys(placements)))
    scn = comparison_scenario(scn, names)
    if shares:
        try:
            scn.shares = check_shares(list(shares), scn.machine.layout.data_pages,
                                      scn.anon_pages)
        except ValueError as e:
            raise OptionError(f"--tagged-share {' '.join(f'{x:g}' for x in shares)}: "
                              f"{e}") from None
    exp = _execute(scn, trace_path, fmt, None, False, meta, "kernel", capacity, None, None,
                   None, "generator", (), check, progress, jobs)
    cmp = Comparison(exp)
    if json_path != "-":
        print_comparison(cmp)
    if json_path is not None:
        write_json(cmp.to_json(), json_path)
    if report_dir is not None:
        from tagcache.report_html import write_html_report

        report_dir.mkdir(parents=True, exist_ok=True)
        write_html_report(cmp.to_json(), report_dir / "index.html")
        if json_path != "-":
            print(f"report: {report_dir / 'index.html'}")
    if cmp.problems():
        raise click.exceptions.Exit(1)


@app.command()
@click.argument("trace_path", metavar="TRACE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--meta", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="NAME.json",
              help="Capture sidecar.  [default: NAME.json beside the trace]")
@click.option("--capacity", default=None, metavar="SIZE",
              help="Page-cache capacity, in pages or as a size such as 64MiB; at least one "
                   "page.  [default: kernel.cache_peak]")
@click.option("--read-ahead", default=None, metavar="SIZE",
              help="read_ahead_kb of the traced device, as a size such as 128KiB or in pages; "
                   "0 for none.  [default: the sidecar's read_ahead_kb, else this machine's "
                   "for the same device, else 128KiB]")
@click.option("--large-folios/--no-large-folios", default=None,
              help="Whether the traced files' mappings support large folios (up to order 9, "
                   "sized by readahead): ext4 does since Linux 6.16 (as on the machine of "
                   "captures/), xfs since 5.18.  [default: per file, by its device's "
                   "filesystem and the kernel release (sidecar filesystems, kernel_release); "
                   "for older sidecars as folio_orders say (any large folio in the cgroup's "
                   "page cache at the end); else no]")
@click.option("--mappings/--no-mappings", default=None,
              help="Use the sidecar's exec_mappings as VM_EXEC mappings (forward fault "
                   "readahead within the VMA, activation of young executable folios) and its "
                   "cow_mappings as copy-on-write ranges (read, not left mapped).  [default: "
                   "on where the sidecar has them]")
@click.option("--metadata/--no-metadata", "--minus-metadata/--no-minus-metadata",
              default=None,
              help="Take the filesystem metadata the capture's cgroup held off the room left "
                   "to the traced files: its series from the trace's cgroup samples, else the "
                   "sidecar's buffers_growth_peak throughout.  [default: on where measured]")
@click.option("--nonfile/--no-nonfile", default=None,
              help="Let the room follow everything else charged to the cgroup (anonymous "
                   "memory, kernel memory) from the trace's cgroup samples, and between them "
                   "the command's anonymous allocations and frees (captures made with "
                   "--with-alloc).  [default: on where the trace has samples]")
@click.option("--naive", is_flag=True, default=False,
              help="DESIGN.md 5's literal model: a capacity of kernel.cache_peak (or "
                   "--capacity) and nothing else: no resident pages, mappings, metadata, "
                   "samples or large folios; the sidecar's read_ahead_kb still applies.  "
                   "[default: off, every measured fact used]")
@click.option("--format", "fmt", type=TRACE_FORMATS, default=None,
              help="Trace format.  [default: detected]")
@click.option("--by-file", "by_file", type=click.IntRange(0), default=0, metavar="N",
              help="Also list the N files where model and kernel differ most.  [default: 0, "
                   "none; the JSON always has every file under by_file]")
@click.option("--json", "json_path", default=None, metavar="PATH",
              help="Write {kernel, model, error} (and the fault outcomes and per-file counts) "
                   "as JSON to PATH ('-' for standard output).  [default: no JSON]")
def validate(trace_path: Path, meta: Path | None, capacity: str | None, read_ahead: str | None,
             large_folios: bool | None, mappings: bool | None, metadata: bool | None,
             nonfile: bool | None, naive: bool, fmt: str | None, by_file: int,
             json_path: str | None) -> None:
    """Compare the page-cache model with what the kernel did on a capture."""
    _check_json_path(json_path)
    cap = _capacity(capacity)
    ra_option = _pages_option("--read-ahead", read_ahead, 0)
    sidecar = _sidecar(trace_path, meta, required=True)
    trace = read_trace(trace_path, fmt)
    if cap is None:
        cap = _peak_pages(sidecar, trace_path, meta)
    if ra_option is not None:
        ra_pages, ra_from = ra_option, "--read-ahead"
    else:
        ra_pages, ra_from = read_ahead_pages(trace, sidecar)
    if naive and any(x is not None for x in (mappings, metadata, nonfile, large_folios)):
        raise OptionError("--naive takes no fact: drop --mappings, --metadata, --nonfile and "
                          "--large-folios (or --naive)")
    v = validate_trace(trace, cap, large_folios=large_folios, ra_pages=ra_pages, meta=sidecar,
                       naive=naive, mappings=mappings, metadata=metadata, nonfile=nonfile)
    if json_path != "-":
        print_validation(v, trace_path, ra_pages, ra_from, by_file=by_file)
    if json_path is not None:
        write_json(v.to_json() | {"read_ahead_pages": ra_pages}, json_path)


@app.command("record", context_settings={"ignore_unknown_options": True})
@click.argument("name", required=False)
@click.option("--limit", "limit", default=None, metavar="SIZE",
              help="Memory limit of the capture's cgroup (memory.max, or memory.limit_in_bytes "
                   "on cgroup v1), e.g. 16MiB; at least 1 MiB.  [required, no default; not "
                   "with --recover]")
@click.option("--with-alloc", is_flag=True, default=False,
              help="Also capture kmem mm_page_alloc / mm_page_free (PFNs of page allocations "
                   "and frees).  [default: off, filemap events only]")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              metavar="DIR", help="Directory (must exist) that receives NAME.trace.zst and "
                                  "NAME.json.  [default: the current directory]")
@click.option("--buffer-size", default="128MiB", metavar="SIZE",
              help="Trace ring buffer, all CPUs together (split evenly per CPU); raise it when "
                   "events are lost.  [default: 128MiB]")
@click.option("--drop-caches/--no-drop-caches", default=True,
              help="sync and drop the page cache (drop_caches=3) before CMD starts, so that its "
                   "reads miss.  [default: --drop-caches]")
@click.option("--read-ahead", "read_ahead", default=None, metavar="SIZE",
              help="Set every block device's read_ahead_kb to SIZE (e.g. 128KiB, the kernel's "
                   "default) while CMD runs, and put the old values back afterwards; it "
                   "applies to every process's I/O meanwhile.  [default: leave them as they "
                   "are]")
@click.option("--recover", "recover_only", is_flag=True, default=False,
              help="Only undo what recorders that died (SIGKILL, crash) left changed, from "
                   "their state files in /run/tagcache, say so, and exit; every record does "
                   "this first anyway. Takes no NAME or CMD.  [default: off]")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED, metavar="-- CMD [ARG]...")
def record_cmd(name: str | None, limit: str | None, with_alloc: bool, out_dir: Path,
               buffer_size: str, drop_caches: bool, read_ahead: str | None, recover_only: bool,
               cmd: tuple[str, ...]) -> None:
    """Capture the real kernel's page cache while CMD runs in a memory cgroup of size --limit.

    Writes DIR/NAME.trace.zst (the tracefs text of the filemap events of CMD and its children,
    zstd) and DIR/NAME.json (the sidecar of DESIGN.md section 5), both or neither. Needs root
    and tracefs. What it changes on the machine (a tracefs instance, a cgroup, read_ahead_kb)
    is listed in /run/tagcache/ first and undone on exit, on SIGINT, SIGTERM, SIGHUP and
    SIGQUIT alike; after a SIGKILL, by the next record or --recover. CMD's own exit status
    goes to the sidecar; this command exits 0 once both files are written (128+N if signal N
    was forwarded to CMD, 2 on bad input).
    """
    from tagcache.errors import CaptureError
    from tagcache.record import record, recover
    from tagcache.record.run import check_root
    from tagcache.units import format_bytes, parse_size

    def notify(line: str) -> None:
        print(f"tagcache: {line}", file=sys.stderr)

    if recover_only:
        if name is not None or cmd:
            raise click.UsageError("--recover takes no NAME or command")
        check_root()
        if not recover(notify):
            notify("nothing to recover (no state file of a recorder that died in /run/tagcache)")
        return
    if name is None:
        raise click.UsageError("Missing argument 'NAME'.")
    if limit is None:
        raise click.UsageError("Missing option '--limit'.")
    sizes = {}
    for opt, value in (("--limit", limit), ("--buffer-size", buffer_size)):
        try:
            sizes[opt] = parse_size(value)
        except ValueError as e:
            raise CaptureError(f"{opt} {value}: {e}") from None
    read_ahead_kb = None
    if read_ahead is not None:
        try:
            ra_bytes = parse_size(read_ahead)
        except ValueError as e:
            raise CaptureError(f"--read-ahead {read_ahead}: {e}") from None
        if ra_bytes % 1024:
            raise CaptureError(f"--read-ahead {read_ahead}: not a whole number of KiB "
                               f"(read_ahead_kb), e.g. 128KiB")
        read_ahead_kb = ra_bytes // 1024
    res = record(name, sizes["--limit"], list(cmd), with_alloc=with_alloc, out_dir=out_dir,
                 drop_caches=drop_caches, buffer_bytes=sizes["--buffer-size"],
                 read_ahead_kb=read_ahead_kb, notify=notify)
    side = res.sidecar
    events = "  ".join(f"{e.removeprefix('mm_filemap_').removeprefix('mm_')} {n:,}"
                       for e, n in res.events.items())
    limit_bytes = sizes["--limit"]
    click.echo(f"recorded {res.name}: {side['command']}")
    click.echo(f"  exit code {res.exit_code}, {res.seconds:.2f} s, cgroup v{res.cgroup_version}")
    click.echo(f"  events: {events}  (total {sum(res.events.values()):,})")
    click.echo(f"  cache peak {format_bytes(res.cache_peak)} of {format_bytes(limit_bytes)} "
               f"limit; at exit {format_bytes(side['kernel']['cache'])}")
    click.echo(f"  trace:   {res.trace_path} ({format_bytes(res.trace_path.stat().st_size)})")
    click.echo(f"  sidecar: {res.sidecar_path}")
    for w in res.warnings:
        print(f"tagcache: warning: {w}", file=sys.stderr)
    if res.interrupted is not None:
        print(f"tagcache: CMD interrupted (signal {res.interrupted}); capture written up to "
              f"its exit", file=sys.stderr)
        sys.exit(128 + res.interrupted)  # main() drops click's Exit codes when not standalone


def _one_line(text: str) -> str:
    """``text`` on one line: line breaks become spaces."""
    return re.sub(r"\s*[\r\n]+\s*", " ", text).strip()


def main(argv: list[str] | None = None) -> int:
    """Entry point: every outcome but success is one line on stderr (see the module's
    docstring for the exit statuses). As the command (``argv`` None) it ends the process
    itself once its output is flushed (:func:`_exit`)."""
    if argv is None:
        _exit(_main(sys.argv[1:]))
    return _main(list(argv))


def _exit(code: int) -> None:
    """Leave the process with ``code`` as soon as standard output and error are flushed,
    without the interpreter's teardown: everything the command made is written, renamed,
    closed and its workers reaped by now, and freeing the engine's arrays and numba's state
    one object at a time took 0.17 s of a 1.5 s run."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:          # the reader went away (| head): nothing more to say
        code = code or 1
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    os._exit(code)


def _main(args: list[str]) -> int:
    ctx = None
    use_plain_refcounts()     # engine/nrt.py: why plain counts are safe in this process
    try:
        ctx = app.make_context("tagcache", args)
        with ctx:
            rv = app.invoke(ctx)
    except TagcacheError as e:
        print(f"tagcache: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except click.exceptions.NoArgsIsHelpError as e:
        e.show()                         # the help, as click does
        return 2
    except click.UsageError as e:
        where = f"{e.ctx.command_path}: " if e.ctx else ""
        print(f"tagcache: error: {where}{_one_line(e.format_message())}", file=sys.stderr)
        return 2
    except click.ClickException as e:
        print(f"tagcache: error: {_one_line(e.format_message())}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, click.exceptions.Abort):
        print("tagcache: interrupted", file=sys.stderr)
        return 130
    except click.exceptions.Exit as e:
        return e.exit_code
    except BrokenPipeError:
        # The reader of standard output went away (| head): nothing more to say to it.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:
        debug = bool(ctx.params.get("debug")) if ctx is not None else "--debug" in args
        if debug:
            traceback.print_exc()
        print(f"tagcache: internal error: {type(e).__name__}: {_one_line(str(e))}"
              + ("" if debug else " (rerun with --debug for the traceback)"), file=sys.stderr)
        return 70
    return rv if isinstance(rv, int) else 0


# The start-up handler's work is done once the module is imported: put back what was there.
if _SIGINT_BEFORE is not None:
    signal.signal(signal.SIGINT, _SIGINT_BEFORE)


if __name__ == "__main__":
    sys.exit(main())
