"""Speed and memory of tagcache, measured (``make bench``); never asserted in tests.

Measures, on this machine:
  * ftrace parsing: lines per second on the shared capture, repeated to ~1M lines;
  * plain-LRU replay against libCacheSim's LRU on the page-level cloudPhysics trace;
  * the full model on the default scenario (events per second, one design);
  * simulator memory per simulated 4 KiB page (array bytes of a built machine / its pages).
Prints a table and writes benchmarks/results.json.
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zstandard

from tagcache import Design, load_scenario, replay
from tagcache.experiment import scenario_trace
from tagcache.replay import Machine, MachineConfig
from tagcache.traces import read_trace
from tagcache.workloads.events import FileTable, Op, Trace

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "traces"


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_ftrace(tmp: Path) -> dict:
    src = SHARED / "dev-sample-grep.trace.zst"
    if not src.is_file():
        return {"skipped": f"{src} not present"}
    text = zstandard.ZstdDecompressor().stream_reader(src.open("rb")).read()
    body = b"".join(line + b"\n" for line in text.splitlines() if not line.startswith(b"#"))
    reps = max(1, 1_000_000 // body.count(b"\n"))
    big = tmp / "big.trace"
    big.write_bytes(text + body * (reps - 1))
    lines = text.count(b"\n") + body.count(b"\n") * (reps - 1)
    _, secs = timed(lambda: read_trace(big, "ftrace", use_cache=False))
    return {"lines": lines, "seconds": secs, "lines_per_s": lines / secs}


def bench_lru(tmp: Path) -> dict:
    src = SHARED / "cloudPhysicsIO.csv.zst"
    if not src.is_file():
        return {"skipped": f"{src} not present"}
    trace = read_trace(src, use_cache=False)
    m = np.isin(trace.op, [Op.READ, Op.WRITE])
    first, n = trace.arg1[m], trace.arg2[m]
    pages = np.repeat(first, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    txt = tmp / "pages.txt"
    np.savetxt(txt, pages, fmt="%d")
    cap = 16384
    ops = np.full(len(pages), Op.READ, np.uint8)
    files = FileTable.build([0], [0], [int(pages.max()) + 1])
    tr = Trace(ops, np.zeros(len(pages), np.int64), pages, np.ones(len(pages), np.int64), files)
    cfg = MachineConfig(layout=load_scenario().machine.layout, page_cache_limit_pages=cap,
                        page_cache_policy="lru")
    res, ours = timed(lambda: replay(cfg, Design("idle"), tr))
    out = {"requests": len(pages), "capacity": cap, "tagcache_s": ours,
           "tagcache_req_per_s": len(pages) / ours, "misses": res.page_cache["misses"]}
    try:
        import libcachesim as lcs
    except ImportError:
        return out | {"libcachesim": "not installed"}
    reader = lcs.TraceReader(trace=str(txt), trace_type=lcs.TraceType.PLAIN_TXT_TRACE)
    (ratio, _), theirs = timed(lambda: lcs.LRU(cache_size=cap).process_trace(reader))
    return out | {"libcachesim_s": theirs, "libcachesim_req_per_s": len(pages) / theirs,
                  "libcachesim_misses": round(ratio * len(pages)),
                  "speed_vs_libcachesim": theirs / ours}


def bench_model() -> dict:
    scn = load_scenario()
    tr = scenario_trace(scn, 0.10)
    cfg = scn.machine
    res, secs = timed(lambda: replay(cfg, Design("cleancache", "whole"), tr))
    return {"events": len(tr), "seconds": secs, "events_per_s": len(tr) / secs,
            "invariants_checked": False, "cleancache_restored": res.cleancache["restored"]}


def bench_memory() -> dict:
    scn = load_scenario()
    tr = scenario_trace(scn, 0.01)
    gc.collect()
    m = Machine(scn.machine, Design("cleancache", "whole"), tr, check=False)
    seen: set[int] = set()
    total = 0
    stack = [m]
    while stack:                      # sum every numpy array reachable from the machine
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            total += o.nbytes
        elif hasattr(o, "__dict__"):
            stack.extend(vars(o).values())
        elif isinstance(o, list | tuple | set):
            stack.extend(o)
        elif isinstance(o, dict):
            stack.extend(o.values())
    pages = scn.machine.layout.nr_pfns
    return {"array_bytes": total, "simulated_pages": pages, "bytes_per_page": total / pages,
            "page_cache_slots": m.pc.nr_slots}


def main() -> int:
    out = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, fn in (("ftrace_parse", lambda: bench_ftrace(tmp)),
                         ("lru_vs_libcachesim", lambda: bench_lru(tmp)),
                         ("full_model", bench_model), ("memory", bench_memory)):
            print(f"{name} ...", file=sys.stderr, flush=True)
            out[name] = fn()
    for name, r in out.items():
        print(f"{name:20s} " + ", ".join(f"{k}={v:,.3g}" if isinstance(v, float) else
                                          f"{k}={v}" for k, v in r.items()))
    (ROOT / "benchmarks" / "results.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
