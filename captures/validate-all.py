"""Print the README's table: every capture here (and the shared sample) validated.

    python captures/validate-all.py        # from the repository root, in the venv
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

print("| capture | insertions kernel / model | error | re-insertions kernel / model | error |")
print("|---|---|---|---|---|")
for path in CAPTURES:
    if not path.is_file():
        continue
    meta = load_sidecar(sidecar_for(path))
    trace = read_trace(path)
    ra, _ = read_ahead_pages(trace, meta)
    v = validate_trace(trace, meta["kernel"]["cache_peak"] // PAGE_SIZE, ra_pages=ra, meta=meta)
    k, m, e = v.kernel, v.model, v.error
    name = path.name.removesuffix(".trace.zst")
    print(f"| `{name}` | {k['insertions']:,} / {m['insertions']:,} | "
          f"{100 * e['insertions']:+.1f}% | {k['reinsertions']:,} / {m['reinsertions']:,} | "
          f"{100 * e['reinsertions']:+.1f}% |")
