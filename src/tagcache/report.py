"""Reporting: the comparison table for a terminal, and JSON for machines."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from tagcache.backends import spec as backend_spec
from tagcache.experiment import Experiment
from tagcache.outputs import open_output
from tagcache.units import PAGE_SIZE, format_bytes


def wide_console() -> Console:
    """The terminal's console; 160 columns when output is not a terminal (files, pipes)."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def _us(ns: float) -> str:
    return f"{ns / 1000:.2f}" if ns else "0"


def _share(x: float) -> str:
    return f"{100 * x:.1f}%" if x < 0.1 else f"{100 * x:.0f}%"


def _num(x) -> str:
    return "-" if x is None else f"{x:,}"


def design_cell(r) -> str:
    """The design's label, as its backend words it (backends/, BackendSpec.label)."""
    return r.label or r.backend


def _no_cache(r) -> bool:
    """A design that keeps no page-cache copies (its cleancache cells are blanks)."""
    return not backend_spec(r.backend).holds_cache

SHARE_SHORTFALL = 0.10
"""Warn when the achieved tagged share is more than this far below the requested one."""


def _table(title: str, cols: tuple[tuple[str, str], ...]) -> Table:
    t = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
    for col, just in cols:
        t.add_column(col, justify=just)
    return t


def _rows(exp: Experiment):
    """(share cell, design cell, result, new section?) for each result, in order."""
    last = None
    for r in exp.results:
        yield (_share(r.tagged_share), design_cell(r), r,
               last is not None and r.tagged_share != last)
        last = r.tagged_share


def io_table(exp: Experiment) -> Table:
    """What each design does for the file workload: hits, disk reads, time."""
    scn = exp.scenario
    t = _table(f"tagcache: {scn.name} — page cache and I/O",
               (("tagged", "right"), ("design", "left"), ("eff. hit\n%", "right"),
                ("read\nrequests", "right"), ("pages\nfrom disk", "right"),
                ("cc\nrestores", "right"), ("restored\n/stored", "right"),
                ("hits lost\nvs 0%", "right"), ("extra reads\nvs 0%", "right"),
                ("net saved\nms", "right"), ("OOM", "right"), ("viola-\ntions", "right")))
    for share, design, r, section in _rows(exp):
        if section:
            t.add_section()
        pc, cc, io = r.page_cache, r.cleancache, r.io
        idle = _no_cache(r)
        viol = sum(r.invariants.values()) if r.invariants else "-"
        t.add_row(share, design, f"{100 * pc['effective_hit_ratio']:.2f}",
                  f"{io['read_requests']:,}", f"{io['pages_read']:,}",
                  "-" if idle else f"{cc['restored']:,}",
                  "-" if idle else f"{100 * cc['restored_per_stored']:.1f}%",
                  _num(pc.get("hits_lost_to_tagging")),
                  _num(io.get("extra_pages_read_vs_untagged")),
                  "-" if idle else f"{io['net_time_saved_ns'] / 1e6:,.1f}",
                  f"{io['oom_events']:,}", str(viol))
    return t


def tag_table(exp: Experiment) -> Table:
    """What each design does with tag storage: tags, cached data, claims and their cost."""
    scn = exp.scenario
    layout = scn.machine.layout
    t = _table(f"tag storage — {layout.describe()}",
               (("tagged", "right"), ("design", "left"), ("achieved\nmean/peak", "right"),
                ("reserved tag pages\navg/peak", "right"), ("cache MiB\navg/peak", "right"),
                ("dropped\nfor tags", "right"), ("collat-\neral", "right"),
                ("claim µs\np50/p99/max", "right"), ("meta B\n/tag pg", "right")))
    for share, design, r, section in _rows(exp):
        if section:
            t.add_section()
        ts, cc = r.tag_storage, r.cleancache
        idle = _no_cache(r)
        ach = ts["achieved_tagged_share"]
        lat = ts["reservation_latency_ns"]["claiming"]
        t.add_row(share, design, f"{_share(ach['mean'])}/{_share(ach['peak'])}",
                  f"{ts['reserved_avg']:,.0f}/{ts['reserved_peak']:,}",
                  "-" if idle else f"{ts['cache_mib_avg']:.1f}/{ts['cache_mib_peak']:.1f}",
                  "-" if idle else f"{cc['reclaimed']:,}",
                  "-" if idle else f"{cc['collateral']:,}",
                  f"{_us(lat['p50'])}/{_us(lat['p99'])}/{_us(lat['max'])}",
                  "-" if idle else f"{ts['metadata_bytes_per_tag_page']:.0f}")
    return t


def share_warnings(exp: Experiment) -> list[str]:
    """One line per run whose achieved tagged share (mean over events) is more than
    SHARE_SHORTFALL below the requested one."""
    out = []
    for r in exp.results:
        want = r.tagged_share
        got = r.tag_storage["achieved_tagged_share"]["mean"]
        if want > 0 and got < want * (1 - SHARE_SHORTFALL):
            out.append(f"{design_cell(r)} at "
                       f"{_share(want)} tagged: only {100 * got:.2f}% of memory was tagged on "
                       f"average ({r.io['oom_events']:,} allocations failed)")
    return out


def print_report(exp: Experiment, console: Console | None = None) -> None:
    console = console or wide_console()
    console.print(io_table(exp))
    console.print(tag_table(exp))
    scn = exp.scenario
    what = exp.note or (f"{format_bytes(scn.machine.layout.data_pages * PAGE_SIZE)} data "
                        f"memory, {format_bytes(scn.anon_pages * PAGE_SIZE)} of it anonymous "
                        "(tagged share included)")
    console.print(
        f"[dim]{what}; "
        f"{exp.events:,} events replayed in {exp.wall_s:.1f} s "
        f"({exp.events / exp.wall_s if exp.wall_s else 0:,.0f}/s)"
        + (f", {exp.shared_runs} run(s) taken from the other large-folio policy's, which "
           "took the same steps" if exp.shared_runs else "") + ". "
        "eff. hit = page-cache hits + cleancache restores over accesses; net saved = disk "
        "time avoided by restores less the cleancache's copies, drops and cache maintenance; "
        "claim µs = modelled latency of reservation calls that claimed a tag block; meta B = "
        "the per-tag-page record a kernel would keep. Times are sums of the cost table "
        "(src/tagcache/costs.py).[/dim]")
    for r in exp.results:
        for v in r.violations[:5]:
            console.print(f"[red]invariant {v.rule} broken at event {v.event}: {v.detail}[/red]")


def write_json(obj: Any, path: str) -> None:
    """Write JSON to ``path`` ('-' is standard output) without destroying anything: a regular
    file is replaced atomically, a device, FIFO or symlink target is written as it is
    (outputs.py)."""
    text = json.dumps(obj, indent=1, sort_keys=False)
    with open_output(path) as fh:
        fh.write(text + "\n")


CENSORED_WARNING = 0.15
"""Warn when more of the kernel's insertions than this came on faults the model hit."""


def _orders(hist: dict[str, int]) -> str:
    """A folio-order histogram in a cell: 'order:folios' pairs."""
    return " ".join(f"{o}:{n:,}" for o, n in sorted(hist.items(), key=lambda x: int(x[0])))


def print_validation(v, trace_path, ra_pages: int, ra_from: str,
                     console: Console | None = None, by_file: int = 0) -> None:
    """The kernel-versus-model table of ``tagcache validate``; with ``by_file``, the files
    where they differ most."""
    console = console or wide_console()
    console.print(f"[bold]validate[/bold] {trace_path}")
    t = Table(header_style="bold")
    for col in ("", "kernel", "model", "error"):
        t.add_column(col, justify="right" if col else "left")
    err = v.error
    for k in ("insertions", "reinsertions"):
        t.add_row(k, f"{v.kernel[k]:,}", f"{v.model[k]:,}", f"{100 * err[k]:+.1f}%")
    console.print(t)
    room = (f"room {v.capacity_pages:,} pages at the start, {v.capacity_lowest:,} at the "
            f"least ({v.samples:,} cgroup samples)" if v.samples else
            f"capacity {v.capacity_pages:,} pages")
    facts = "naive: cache_peak only" if v.naive else (
        "facts used: " + (", ".join(v.facts) if v.facts else "none"))
    console.print(f"[dim]{v.files} files with access events; {room}; readahead {ra_pages} "
                  f"pages ({ra_from}); "
                  f"{'large folios' if v.large_folios else 'order-0 folios'}; {facts}.[/dim]")
    if v.folio_orders.get("kernel") or v.folio_orders.get("model"):
        t = Table(header_style="bold", title="folios inserted by order (accessed files)")
        orders = sorted({int(o) for side in v.folio_orders.values() for o in side})
        t.add_column("order")
        for o in orders:
            t.add_column(str(o), justify="right")
        for side in ("kernel", "model"):
            hist = v.folio_orders.get(side, {})
            t.add_row(side, *(f"{hist.get(str(o), 0):,}" for o in orders))
        console.print(t)
    nf = sum(v.faults.values())
    if nf:
        f, fp = v.faults, v.fault_pages
        console.print(f"[dim]faults: {nf:,}; both kernel and model hit {f['both_hit']:,}, both "
                      f"missed {f['both_miss']:,}, the kernel missed where the model hit "
                      f"{f['kernel_miss_model_hit']:,} (the kernel read "
                      f"{fp['kernel_miss_model_hit']:,} pages for those).[/dim]")
    rows = v.diverging_files(by_file)
    if rows:
        t = Table(header_style="bold", title="files where model and kernel differ most")
        for col in ("file", "insertions kernel", "model", "re-insertions kernel", "model",
                    "folios by order kernel", "model"):
            t.add_column(col, justify="left" if col == "file" else "right")
        for r in rows:
            k, m = r["kernel"], r["model"]
            orders = r.get("folio_orders", {})
            t.add_row(r.get("path") or r["file"], f"{k['insertions']:,}", f"{m['insertions']:,}",
                      f"{k['reinsertions']:,}", f"{m['reinsertions']:,}",
                      _orders(orders.get("kernel", {})), _orders(orders.get("model", {})))
        console.print(t)
    if v.interval is not None and v.censored > CENSORED_WARNING:
        iv = v.interval
        inside = "inside" if iv.contains(v.kernel) else "OUTSIDE"
        console.print(f"censored capture: the kernel's counts lie within insertions "
                      f"[{iv.insertions[0]:,}, {iv.insertions[1]:,}] (width "
                      f"{iv.insertions[1] - iv.insertions[0]:,}), re-insertions "
                      f"[{iv.reinsertions[0]:,}, {iv.reinsertions[1]:,}] for any replacement "
                      f"policy (bounds.py); the kernel's are {inside}.")
    if v.censored > CENSORED_WARNING:
        console.print(f"[yellow]warning:[/yellow] {100 * v.censored:.0f}% of the kernel's "
                      "insertions came on faults where the model had the page cached: a trace "
                      "shows only the faults the kernel took, so where the kernel evicted mapped "
                      "pages the model's counts are a lower bound (see Validation.censored).")


def compare_table(cmp) -> Table:
    """``tagcache compare``: one row per design and share (compare.Comparison.rows())."""
    scn = cmp.experiment.scenario
    t = _table(f"tagcache compare: {scn.name} — every design on the same work",
               (("tagged", "right"), ("design", "left"), ("eff. hit\n%", "right"),
                ("pages\nfrom disk", "right"), ("cc\nrestores", "right"),
                ("recovered\nMiB avg", "right"), ("migra-\ntions", "right"),
                ("fall-\nbacks", "right"), ("fail-\nures", "right"), ("claims\nslept", "right"),
                ("claim µs\np50/p99/max", "right"), ("wait ms\np99", "right"),
                ("oracle\ngap pp", "right"), ("viola-\ntions", "right")))
    last = None
    for row in cmp.rows():
        if last is not None and row["tagged_share"] != last:
            t.add_section()
        last = row["tagged_share"]
        lat, wait = row["latency_ns"], row["waits_ns"]
        gap = row["oracle_gap"]
        no_cache = not backend_spec(row["design"]).holds_cache
        t.add_row(_share(row["tagged_share"]), row["label"],
                  f"{100 * row['effective_hit_ratio']:.2f}", f"{row['pages_read']:,}",
                  "-" if no_cache else f"{row['restored']:,}",
                  f"{row['recovered_avg_pages'] * 4096 / (1 << 20):,.1f}",
                  f"{row['migrations']:,}", f"{row['fallbacks']:,}", f"{row['failures']:,}",
                  f"{row['claims_slept']:,}",
                  f"{_us(lat['p50'])}/{_us(lat['p99'])}/{_us(lat['max'])}",
                  f"{wait['p99'] / 1e6:.2f}" if wait["calls"] else "-",
                  "-" if gap is None else f"{100 * gap:.2f}",
                  "-" if row["violations"] is None else str(row["violations"]))
    return t


def print_comparison(cmp, console: Console | None = None) -> None:
    console = console or wide_console()
    console.print(compare_table(cmp))
    exp = cmp.experiment
    console.print(
        f"[dim]{exp.note + '; ' if exp.note else ''}{exp.events:,} events replayed in "
        f"{exp.wall_s:.1f} s. eff. hit = page-cache hits + cleancache restores over accesses "
        "(the oracle's: its bound on restores); recovered = tag-storage pages doing useful "
        "work (cached copies, or lent pages holding data); migrations, fallbacks (atomic "
        "context: fault on access later), failures (pinned pages) and claims slept are "
        "counted where a design declares it may; wait = how long a tagged page waited for "
        "its tag storage; oracle gap = pages the oracle restored beyond the row's, per 100 "
        "accesses.[/dim]")
    for p in cmp.problems():
        console.print(f"[bold red]problem:[/bold red] {p}")
