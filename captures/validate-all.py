"""Print the README's tables: every capture here (and the shared sample) validated.

    python captures/validate-all.py [DIR ...]     # from the repository root, in the venv

First table, one row per capture: the kernel's insertions and re-insertions; the errors of
the default model (DESIGN.md 5 to the letter: the whole ``cache_peak``; large folios where
the sidecar's ``folio_orders`` shows them); the filesystem metadata the recorder measured in
the cgroup (``buffers_growth_peak``, pages, and its share of the capacity); the errors with
``--minus-metadata``, with ``--mappings`` and with both;
for the last, the share of the kernel's insertions that came on faults where the model had
the page cached (Validation.censored).

Given DIRs of repeated recordings (``captures/record-all.sh INPUTS DIR``), a second table
gives each capture's spread over this folder's recording and those: the kernel's
insertions, the errors of both models, and in how many recordings each is within target.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tagcache.sidecar import load_sidecar, metadata_pages, read_ahead_pages, sidecar_for
from tagcache.traces import read_trace
from tagcache.units import PAGE_SIZE
from tagcache.validate import Validation, validate_trace

ROOT = Path(__file__).resolve().parent.parent
MINI = ROOT / "tests" / "data" / "captures" / "mini-grep.trace.zst"
CAPTURES = [ROOT.parent / "shared" / "traces" / "dev-sample-grep.trace.zst",
            *sorted((ROOT / "captures").glob("*.trace.zst")), MINI]
MODES = {"default": {}, "less": {"minus_metadata": True}, "mapped": {"mappings": True},
         "both": {"mappings": True, "minus_metadata": True}}
TARGET = {"insertions": 0.10, "reinsertions": 0.20}
NA = "n/a"


def validate_all_modes(path: Path) -> tuple[dict, dict[str, Validation | None]]:
    """The capture's sidecar and its validation in each mode the sidecar allows."""
    meta = load_sidecar(sidecar_for(path))
    trace = read_trace(path)
    ra, _ = read_ahead_pages(trace, meta)
    cap = meta["kernel"]["cache_peak"] // PAGE_SIZE
    has = {"minus_metadata": "buffers_growth_peak" in meta, "mappings": "exec_mappings" in meta}
    return meta, {mode: validate_trace(trace, cap, ra_pages=ra, meta=meta, **kw)
                  if all(has[k] for k in kw) else None for mode, kw in MODES.items()}


def errors(v: Validation | None) -> str:
    if v is None:
        return NA
    e = v.error
    return f"{100 * e['insertions']:+.1f}% / {100 * e['reinsertions']:+.1f}%"


def within(v: Validation) -> bool:
    return all(abs(v.error[k]) <= t for k, t in TARGET.items())


def span(values: list[float], fmt: str) -> str:
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo} .. {hi}"


def spread(runs: list[dict[str, Validation | None]], mode: str) -> str:
    ins = [100 * r[mode].error["insertions"] for r in runs]
    re_ins = [100 * r[mode].error["reinsertions"] for r in runs]
    return f"{span(ins, '+.1f')}% / {span(re_ins, '+.1f')}%"


def main(repeat_dirs: list[Path]) -> None:
    print("| capture | kernel insertions / re-insertions | errors (default) | metadata "
          "| `--minus-metadata` | `--mappings` | both | censored (both) |")
    print("|---|---|---|---|---|---|---|---|")
    for path in CAPTURES:
        if not path.is_file():
            continue
        meta, v = validate_all_modes(path)
        k = v["default"].kernel
        metadata = NA
        if v["less"] is not None:
            pages = metadata_pages(meta)
            metadata = f"{pages:,} ({100 * pages / v['default'].capacity_pages:.0f}%)"
        censored = f"{100 * v['both'].censored:.0f}%" if v["both"] else NA
        print(f"| `{path.name.removesuffix('.trace.zst')}` | {k['insertions']:,} / "
              f"{k['reinsertions']:,} | {errors(v['default'])} | {metadata} | "
              f"{errors(v['less'])} | {errors(v['mapped'])} | {errors(v['both'])} | "
              f"{censored} |")
    if not repeat_dirs:
        return
    print()
    print("| capture | recordings | kernel insertions | errors (default) | within | "
          "errors (both) | within | censored (both) |")
    print("|---|---|---|---|---|---|---|---|")
    for path in CAPTURES[1:]:
        runs = [validate_all_modes(p)[1] for p in (path, *(d / path.name for d in repeat_dirs))
                if p.is_file()]
        if len(runs) < 2 or any(r["both"] is None for r in runs):
            continue
        n = len(runs)
        kernel = span([r["default"].kernel["insertions"] for r in runs], ",")
        print(f"| `{path.name.removesuffix('.trace.zst')}` | {n} | {kernel} "
              f"| {spread(runs, 'default')} | {sum(within(r['default']) for r in runs)} of {n} "
              f"| {spread(runs, 'both')} "
              f"| {sum(within(r['both']) for r in runs)} of {n} "
              f"| {span([100 * r['both'].censored for r in runs], '.0f')}% |")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
