"""Print the README's tables: every capture validated as `tagcache validate` does by default.

    python captures/validate-all.py                 # the corpus (captures/corpus/)
    python captures/validate-all.py --older         # this folder's first captures too
    python captures/validate-all.py --json OUT      # also every number as JSON

One row per class of the corpus (recordings NAME-1, NAME-2, ...): the kernel's insertions and
re-insertions over the recordings; the errors of the default model (every measured fact of
the sidecar and the trace's cgroup samples) and of ``--naive`` (DESIGN.md 5's literal model,
the whole ``cache_peak``); the censored share (Validation.censored); and whether each
recording meets the target: insertions within 10% and re-insertions within 20% where the
capture is not censored (15% or less, report.CENSORED_WARNING), the kernel's counts inside
the interval (bounds.py) where it is. Classes held back from tuning are marked.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from tagcache.report import CENSORED_WARNING
from tagcache.validate import Validation, validate_capture

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "captures" / "corpus"
OLDER = [*sorted((ROOT / "captures").glob("*.trace.zst")),
         ROOT / "tests" / "data" / "captures" / "mini-grep.trace.zst"]
TARGET = {"insertions": 0.10, "reinsertions": 0.20}
HELD_BACK = ("pip-install", "python-import", "sqlite-mmap", "sort-heap", "convert-images")
"""Classes recorded but kept out of the model's tuning; reported as they came."""


def censored(v: Validation) -> bool:
    return v.censored > CENSORED_WARNING


def meets_target(v: Validation) -> bool:
    """Within 10% / 20%, or, for a censored capture, the kernel inside the interval."""
    if censored(v):
        return v.interval is not None and v.interval.contains(v.kernel)
    return all(abs(v.error[k]) <= t for k, t in TARGET.items())


def span(values: list[float], fmt: str) -> str:
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo} .. {hi}"


def errors(vs: list[Validation]) -> str:
    ins = [100 * v.error["insertions"] for v in vs]
    re_ins = [100 * v.error["reinsertions"] for v in vs]
    return f"{span(ins, '+.1f')}% / {span(re_ins, '+.1f')}%"


def class_of(path: Path) -> str:
    name = path.name.removesuffix(".trace.zst")
    return re.sub(r"-\d+$", "", name) if path.parent == CORPUS else name


def main(argv: list[str]) -> int:
    paths = sorted(CORPUS.glob("*.trace.zst"))
    if "--older" in argv:
        paths += [p for p in OLDER if p.is_file()]
    json_out = argv[argv.index("--json") + 1] if "--json" in argv else None
    groups: dict[str, list[Path]] = defaultdict(list)
    for p in paths:
        groups[class_of(p)].append(p)
    print("| class | recordings | kernel insertions / re-insertions | errors (default) | "
          "within 10% / 20% | meets target | errors (`--naive`) | censored |")
    print("|---|---|---|---|---|---|---|---|")
    dump = {}
    for name, ps in groups.items():
        vs = [validate_capture(p) for p in ps]
        naive = [validate_capture(p, naive=True) for p in ps]
        for p, v, n in zip(ps, vs, naive, strict=True):
            dump[p.name.removesuffix(".trace.zst")] = {"default": v.to_json() | {"by_file": []},
                                                       "naive": n.to_json() | {"by_file": []},
                                                       "meets_target": meets_target(v)}
        k_ins = span([v.kernel["insertions"] for v in vs], ",")
        k_re = span([v.kernel["reinsertions"] for v in vs], ",")
        cens = span([100 * v.censored for v in vs], ".0f")
        held = " (held back)" if name in HELD_BACK else ""
        met = sum(meets_target(v) for v in vs)
        by_interval = sum(censored(v) and meets_target(v) for v in vs)
        how = f" ({by_interval} by the interval)" if by_interval else ""
        point = sum(all(abs(v.error[k]) <= t for k, t in TARGET.items()) for v in vs)
        print(f"| `{name}`{held} | {len(vs)} | {k_ins} / {k_re} | {errors(vs)} | "
              f"{point} of {len(vs)} | {met} of {len(vs)}{how} | {errors(naive)} | {cens}% |")
    if json_out:
        Path(json_out).write_text(json.dumps(dump, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
