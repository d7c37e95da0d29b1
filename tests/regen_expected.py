"""Rewrite tests/data/expected_counts.json from the current model, and show what moved.

    python tests/regen_expected.py            # every case
    python tests/regen_expected.py default    # the cases whose name starts with 'default'

Run it when a change is meant to move results, review the lines it prints, and say in the
commit message why they moved.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from expected_counts import EXPECTED, all_cases  # noqa: E402


def _flat(obj, prefix: str = "") -> dict[str, object]:
    if isinstance(obj, dict):
        return {k2: v for k, v in obj.items() for k2, v in _flat(v, f"{prefix}{k}.").items()}
    if isinstance(obj, list):
        return {k2: v for i, v in enumerate(obj) for k2, v in _flat(v, f"{prefix}{i}.").items()}
    return {prefix[:-1]: obj}


def diff(old: object, new: object) -> list[str]:
    """One line per value that differs between two pinned cases."""
    a, b = _flat(old), _flat(new)
    return [f"  {k}: {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


def main(argv: list[str]) -> int:
    old = json.loads(EXPECTED.read_text()) if EXPECTED.exists() else {}
    new = dict(old)
    for name, case in all_cases().items():
        if argv and not any(name.startswith(a) for a in argv):
            continue
        print(f"{name} ...", flush=True)
        new[name] = case()
        for line in diff(old.get(name), new[name])[:60]:
            print(line)
    tmp = EXPECTED.with_suffix(".tmp")
    tmp.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
    tmp.replace(EXPECTED)
    print(f"wrote {EXPECTED}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
