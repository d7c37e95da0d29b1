"""The cases whose exact counts are pinned in tests/data/expected_counts.json, and what of a
result is pinned: every count the model decides (not wall time, not ratios derived from
counts). ``python tests/regen_expected.py`` rewrites the file; review the diff it shows."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tagcache import load_scenario, run_scenario
from tagcache.experiment import Experiment, run_trace
from tagcache.scenario import parse_scenario
from tagcache.traces import read_trace

HERE = Path(__file__).resolve().parent
EXPECTED = HERE / "data" / "expected_counts.json"
TRACES = HERE / "data" / "traces"

READER_CASES = {                 # one small committed trace per reader
    "ftrace": "grep-head.trace.zst",
    "blkparse": "mixed.blkparse",
    "msr": "mixed-msr.csv",
    "csv": "mixed-cloudphysics.csv",
    "txt": "seq.txt",
    "oracleGeneral": "seq.oracleGeneral",
}

TRACE_SCENARIO = """
name = "pinned-trace"
seed = 7
[machine]
memory = "64MiB"
anon = "32MiB"
min_free = "1MiB"
[page_cache]
read_ahead = "128KiB"
max_folio_order = 2
[designs]
backends = ["idle", "cleancache"]
policies = ["whole", "split"]
[tagged]
shares = [0.2]
process_size = "4MiB"
churn_events = 40
"""
TRACE_CAPACITY = 6               # pages: every fixture overflows it


def _counts(r) -> dict:
    """The integer counts of one result, by group (wall time and ratios left out)."""
    out = {"design": f"{r.backend}/{r.policy['large_folio']}", "share": r.tagged_share}
    for group in ("page_cache", "cleancache", "io", "invariants"):
        out[group] = {k: v for k, v in getattr(r, group).items()
                      if isinstance(v, int) and not isinstance(v, bool)}
    ts = r.tag_storage
    out["tag_storage"] = {k: v for k, v in ts.items()
                          if isinstance(v, int) and not isinstance(v, bool)}
    out["tag_storage"]["dropped_per_claim"] = ts["dropped_per_claim"]
    out["tag_storage"]["claiming_calls"] = ts["reservation_latency_ns"]["claiming"]["calls"]
    return out


def experiment_counts(exp: Experiment) -> list[dict]:
    return [_counts(r) for r in list(exp.baselines) + list(exp.results)]


def default_scenario() -> list[dict]:
    return experiment_counts(run_scenario(load_scenario(), check=True))


def reader_case(reader: str) -> list[dict]:
    scn = parse_scenario(tomllib.loads(TRACE_SCENARIO), "<pinned-trace>")
    trace = read_trace(TRACES / READER_CASES[reader], reader, use_cache=False)
    out = []
    for policy in ("kernel", "lru"):
        exp = run_trace(scn, trace, capacity_pages=TRACE_CAPACITY, policy=policy, check=True)
        out += [{"policy": policy} | c for c in experiment_counts(exp)]
    return out


ROOT = HERE.parent
CAPTURES = sorted([*(ROOT / "captures").glob("*.trace.zst"),
                   *(ROOT / "captures" / "corpus").glob("*.trace.zst"),
                   HERE / "data" / "captures" / "mini-grep.trace.zst"])


def capture_name(path: Path) -> str:
    return path.name.removesuffix(".trace.zst")


def capture_case(path: Path) -> dict:
    """``tagcache validate``'s default on a capture: the kernel's counts, the model's, the
    interval, the room, the folio orders and the fault classes."""
    from tagcache.validate import validate_capture

    j = validate_capture(path, use_cache=False).to_json()
    return {k: j[k] for k in ("kernel", "model", "capacity_pages", "capacity_lowest",
                              "samples", "facts", "folio_orders", "faults", "fault_pages",
                              "interval")}


def all_cases() -> dict[str, list[dict] | dict]:
    cases: dict = {"default": default_scenario}
    cases |= {f"reader:{name}": (lambda n=name: reader_case(n)) for name in READER_CASES}
    cases |= {f"capture:{capture_name(p)}": (lambda p=p: capture_case(p)) for p in CAPTURES}
    return cases
