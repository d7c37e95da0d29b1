"""Print the README's table: every capture here (and the shared sample) validated.

    python captures/validate-all.py        # from the repository root, in the venv

Columns: the default model (DESIGN.md 5 to the letter); the share of the kernel's insertions
that came on faults where the model had the page cached (Validation.censored); the errors
with ``--mappings`` (the sidecar's executable and copy-on-write mappings); and with
``--mappings --minus-metadata`` (the capacity lowered by the filesystem metadata the kernel
held, a diagnostic beyond DESIGN.md 5).
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


def errors(v) -> str:
    e = v.error
    return f"{100 * e['insertions']:+.1f}% / {100 * e['reinsertions']:+.1f}%"


print("| capture | insertions kernel / model | re-insertions kernel / model | errors "
      "| censored | `--mappings` | `--mappings --minus-metadata` |")
print("|---|---|---|---|---|---|---|")
for path in CAPTURES:
    if not path.is_file():
        continue
    meta = load_sidecar(sidecar_for(path))
    trace = read_trace(path)
    ra, _ = read_ahead_pages(trace, meta)
    cap = meta["kernel"]["cache_peak"] // PAGE_SIZE
    v = validate_trace(trace, cap, ra_pages=ra, meta=meta)
    k, m = v.kernel, v.model
    if "exec_mappings" in meta:
        mapped = errors(validate_trace(trace, cap, ra_pages=ra, meta=meta, mappings=True))
    else:
        mapped = "no mappings in sidecar"
    both = errors(validate_trace(trace, cap, ra_pages=ra, meta=meta, mappings=True,
                                 minus_metadata=True))
    name = path.name.removesuffix(".trace.zst")
    print(f"| `{name}` | {k['insertions']:,} / {m['insertions']:,} | "
          f"{k['reinsertions']:,} / {m['reinsertions']:,} | {errors(v)} | "
          f"{100 * v.censored:.0f}% | {mapped} | {both} |")
