"""Reporting: the comparison table for a terminal, and JSON for machines."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tagcache.experiment import Experiment
from tagcache.units import PAGE_SIZE, format_bytes


def wide_console() -> Console:
    """The terminal's console; 160 columns when output is not a terminal (files, pipes)."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def _us(ns: float) -> str:
    return f"{ns / 1000:.2f}" if ns else "0"


SHORT = {("idle", None): "idle (static carve-out)",
         ("cleancache", "whole"): "cleancache, whole folio",
         ("cleancache", "split"): "cleancache, split folio"}


def comparison_table(exp: Experiment) -> Table:
    scn = exp.scenario
    layout = scn.machine.layout
    t = Table(title=f"tagcache: {scn.name} — {layout.describe()}", title_justify="left",
              show_lines=False, header_style="bold")
    for col, just in (("tagged", "right"), ("design", "left"), ("pc hit %", "right"),
                      ("disk reads", "right"), ("cc hits", "right"), ("cc hit %", "right"),
                      ("tag pages\nreserved peak", "right"), ("dropped\nfor tags", "right"),
                      ("collat-\neral", "right"), ("reserve µs\np50/p99/max", "right"),
                      ("meta B\n/tag pg", "right"), ("viola-\ntions", "right")):
        t.add_column(col, justify=just)
    last_share = None
    for r in exp.results:
        ts, cc, pc = r.tag_storage, r.cleancache, r.page_cache
        lat = ts["reservation_latency_ns"]
        viol = sum(r.invariants.values()) if r.invariants else "-"
        if last_share is not None and r.tagged_share != last_share:
            t.add_section()
        last_share = r.tagged_share
        idle = r.backend == "idle"
        t.add_row(
            f"{r.tagged_share:.1%}" if r.tagged_share < 0.01 else f"{r.tagged_share:.0%}",
            SHORT[(r.backend, r.policy["large_folio"])],
            f"{100 * pc['hit_ratio']:.2f}",
            f"{r.io['pages_read']:,}",
            "-" if idle else f"{cc['restored']:,}",
            "-" if idle else f"{100 * cc['hit_ratio']:.1f}",
            f"{ts['reserved_peak']:,}/{ts['total_tag_pages']:,}",
            "-" if idle else f"{cc['reclaimed']:,}",
            "-" if idle else f"{cc['collateral']:,}",
            f"{_us(lat['p50'])}/{_us(lat['p99'])}/{_us(lat['max'])}",
            "-" if idle else f"{ts['metadata_bytes_per_tag_page']:.1f}",
            str(viol),
        )
    return t


def print_report(exp: Experiment, console: Console | None = None) -> None:
    console = console or wide_console()
    console.print(comparison_table(exp))
    scn = exp.scenario
    what = exp.note or (f"{format_bytes(scn.machine.layout.data_pages * PAGE_SIZE)} data "
                        f"memory, {format_bytes(scn.anon_pages * PAGE_SIZE)} of it anonymous "
                        "(tagged share included)")
    console.print(
        f"[dim]{what}; "
        f"{exp.events:,} events replayed in {exp.wall_s:.1f} s "
        f"({exp.events / exp.wall_s if exp.wall_s else 0:,.0f}/s). "
        "Latency is modelled from the cost table; 'tag pages peak' counts reserved tag pages."
        "[/dim]")
    for r in exp.results:
        for v in r.violations[:5]:
            console.print(f"[red]invariant {v.rule} broken at event {v.event}: {v.detail}[/red]")


def write_json(obj: Any, path: str) -> None:
    """Write JSON to ``path`` ('-' is standard output) atomically: temp file, then rename."""
    text = json.dumps(obj, indent=1, sort_keys=False)
    if path == "-":
        sys.stdout.write(text + "\n")
        return
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent or Path("."))
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text + "\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)        # as open() would have made it, not mkstemp's 0600
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


CENSORED_WARNING = 0.15
"""Warn when more of the kernel's insertions than this came on faults the model hit."""


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
    console.print(f"[dim]{v.files} files with access events; capacity {v.capacity_pages:,} "
                  f"pages; readahead {ra_pages} pages ({ra_from}); "
                  f"{'large folios' if v.large_folios else 'order-0 folios'}.[/dim]")
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
        for col in ("file", "insertions kernel", "model", "re-insertions kernel", "model"):
            t.add_column(col, justify="left" if col == "file" else "right")
        for r in rows:
            k, m = r["kernel"], r["model"]
            t.add_row(r.get("path") or r["file"], f"{k['insertions']:,}", f"{m['insertions']:,}",
                      f"{k['reinsertions']:,}", f"{m['reinsertions']:,}")
        console.print(t)
    if v.censored > CENSORED_WARNING:
        console.print(f"[yellow]warning:[/yellow] {100 * v.censored:.0f}% of the kernel's "
                      "insertions came on faults where the model had the page cached: a trace "
                      "shows only the faults the kernel took, so where the kernel evicted mapped "
                      "pages the model's counts are a lower bound (see Validation.censored).")
