"""Print the README's table: every capture here (and the shared sample) validated.

    python captures/validate-all.py        # from the repository root, in the venv

Columns: the default model; the share of the kernel's insertions that came on faults where
the model had the page cached (Validation.censored); the errors with --exec-mappings, for
sidecars that list executable mappings.
"""

from __future__ import annotations

from pathlib import Path

from tagcache.traces import read_trace
from tagcache.units import PAGE_SIZE
from tagcache.validate import load_sidecar, read_ahead_pages, sidecar_for, validate_trace

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = [ROOT.parent / "shared" / "traces" / "dev-sample-grep.trace.zst",
            *sorted((ROOT / "captures").glob("*.trace.zst")),
            ROOT / "tests" / "data" / "captures" / "mini-grep.trace.zst"]


def pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


print("| capture | insertions kernel / model | error | re-insertions kernel / model | error "
      "| censored | errors with `--exec-mappings` |")
print("|---|---|---|---|---|---|---|")
for path in CAPTURES:
    if not path.is_file():
        continue
    meta = load_sidecar(sidecar_for(path))
    trace = read_trace(path)
    ra, _ = read_ahead_pages(trace, meta)
    cap = meta["kernel"]["cache_peak"] // PAGE_SIZE
    v = validate_trace(trace, cap, ra_pages=ra, meta=meta)
    k, m, e = v.kernel, v.model, v.error
    exe = "no exec_mappings"
    if "exec_mappings" in meta:
        x = validate_trace(trace, cap, ra_pages=ra, meta=meta, exec_mappings=True).error
        exe = f"{pct(x['insertions'])} / {pct(x['reinsertions'])}"
    name = path.name.removesuffix(".trace.zst")
    print(f"| `{name}` | {k['insertions']:,} / {m['insertions']:,} | {pct(e['insertions'])} | "
          f"{k['reinsertions']:,} / {m['reinsertions']:,} | {pct(e['reinsertions'])} | "
          f"{100 * v.censored:.0f}% | {exe} |")
