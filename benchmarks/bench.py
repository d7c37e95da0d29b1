"""Speed and memory of tagcache against libCacheSim, measured (``make bench``); never asserted
in tests. The items of issue 11, each end to end as whole processes from the same input files
where the item says so (wall time and peak RSS from wait4()), median of ``RUNS`` runs:

  1. libCacheSim's LRU (PyPI libcachesim) on a txt trace: the page-level expansion of
     ../shared/traces/cloudPhysicsIO.csv.zst repeated 10 times (11.4 M requests), 4096 pages;
  2. ``tagcache run --trace FILE --format txt --policy lru --capacity 4096 --backend idle
     --no-check`` on the same file;
  3. ``tagcache run ... --capacity 4096 --backend cleancache --tagged-share 0.1 --no-check``:
     the full kernel page-cache model with the tag-storage cleancache, on the same file;
  4. ``tagcache validate`` on every capture under captures/ (one process each, once);
  5. peak RSS of a 64 GiB machine (2 GiB of tag storage) whose page cache is full, in bytes
     per simulated 4 KiB page (the run's RSS less an interpreter that imported tagcache):
     the full model (kernel page cache, tag-storage cleancache) and the plain LRU;
  6. time per event as a synthetic page trace grows from 1 M to 10 M to 50 M events (in
     process, the replay alone, less the set-up a one-event trace takes: the full model with
     the cleancache, and the plain LRU);
  7. ftrace text parsing, lines per second; the whole engine's first-run compile time
     (python -m tagcache.engine.warm with an empty numba cache), reported on its own.

Prints one table and writes benchmarks/results.json. ``python benchmarks/bench.py --quick``
runs each item once on a tenth of the inputs (to check the harness, not to quote).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zstandard

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "traces"
BIN = Path(sys.executable).parent
TAGCACHE = str(BIN / "tagcache")
RUNS = 5


LAUNCHER = """
import json, os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(json.dumps([time.perf_counter() - t0, usage.ru_maxrss * 1024,
                  os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime]),
      file=sys.stderr)
"""
"""Runs a command as a grandchild: the peak RSS a process reports through wait4() keeps the
peak of the memory it was forked with (Linux carries the old mm's high-water mark across
exec), so a command forked straight from this large process would report this process's
RSS. The launcher is small, and the same for every command, the empty one included. Its
rusage covers the command and the worker processes it forked and reaped: CPU seconds are
their sum, peak RSS the largest one process reached."""


def run_process(cmd: list[str], env: dict | None = None) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (bytes) and CPU seconds of one whole process (with its
    workers); it must exit 0."""
    p = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *cmd], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, env=env, text=True)
    last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
    try:
        secs, rss, code, cpu = json.loads(last)
    except ValueError:
        raise RuntimeError(f"{cmd[:4]}...: {p.stderr[-400:]}") from None
    if code:
        raise RuntimeError(f"{cmd[:4]}... exited {code}: {p.stderr[-400:]}")
    return secs, rss, cpu


def median_runs(cmds: dict[str, list[str]], runs: int) -> dict[str, dict]:
    """Each command ``runs`` times, the commands taken in turn (round after round), so that
    the machine's drift over the minutes this takes falls on every command alike, after one
    round not counted; the median of each."""
    got: dict[str, list] = {k: [] for k in cmds}
    for cmd in cmds.values():       # one round not counted: inputs cached, code loaded
        run_process(cmd)
    for _ in range(runs):
        for k, cmd in cmds.items():
            got[k].append(run_process(cmd))
    out = {}
    for k, g in got.items():
        out[k] = {"runs": runs, "seconds": statistics.median(s for s, _, _ in g),
                  "all_seconds": [round(s, 3) for s, _, _ in g],
                  "cpu_seconds": statistics.median(c for _, _, c in g),
                  "peak_rss_mib": max(r for _, r, _ in g) / 2**20}
    return out


def page_trace(tmp: Path, repeat: int, fraction: float = 1.0) -> tuple[Path, int]:
    """The page-level expansion of the cloudPhysics trace as libCacheSim txt, repeated."""
    from tagcache.traces import read_trace
    from tagcache.workloads.events import Op

    tr = read_trace(SHARED / "cloudPhysicsIO.csv.zst", use_cache=False)
    m = np.isin(tr.op, [Op.READ, Op.WRITE])
    first, n = tr.arg1[m], tr.arg2[m]
    pages = np.repeat(first, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    pages = pages[:max(1, int(len(pages) * fraction))]
    text = "\n".join(map(str, pages.tolist())) + "\n"
    path = tmp / f"pages-{repeat}x-{fraction:g}.txt"
    with path.open("w") as f:
        for _ in range(repeat):
            f.write(text)
        f.flush()
        os.fsync(f.fileno())        # written back now, not during the runs measured
    return path, len(pages) * repeat


LCS_SCRIPT = """
import sys, libcachesim as lcs
r = lcs.TraceReader(trace=sys.argv[1], trace_type=lcs.TraceType.PLAIN_TXT_TRACE)
ratio, _ = lcs.LRU(cache_size=int(sys.argv[2])).process_trace(r)
"""


def bench_end_to_end(tmp: Path, runs: int, quick: bool) -> dict:
    path, n = page_trace(tmp, 1 if quick else 10)
    out: dict = {"requests": n, "capacity": 4096}
    j = tmp / "out.json"
    cmds = {
        "tagcache_lru": [TAGCACHE, "run", "--trace", str(path), "--format", "txt", "--policy",
                         "lru", "--capacity", "4096", "--backend", "idle", "--no-check",
                         "--no-progress", "--json", str(j)],
        "tagcache_full_model": [TAGCACHE, "run", "--trace", str(path), "--format", "txt",
                                "--capacity", "4096", "--backend", "cleancache",
                                "--tagged-share", "0.1", "--no-check", "--no-progress",
                                "--json", str(j)],
    }
    try:
        import libcachesim  # noqa: F401
        cmds = {"libcachesim_lru": [sys.executable, "-c", LCS_SCRIPT, str(path), "4096"]} | cmds
    except ImportError:
        out["libcachesim_lru"] = {"skipped": "libcachesim not installed"}
    for k, r in median_runs(cmds, runs).items():
        out[k] = r | {"req_per_s": n / r["seconds"]}
    return out


def bench_validate() -> dict:
    caps = sorted([*(ROOT / "captures").glob("**/*.trace.zst"),
                   *(ROOT / "tests" / "data" / "captures").glob("*.trace.zst")])
    secs = {}
    for c in caps:
        s, _, _ = run_process([TAGCACHE, "validate", str(c), "--json", os.devnull])
        secs[c.name.removesuffix(".trace.zst")] = round(s, 3)
    v = list(secs.values())
    return {"captures": len(v), "median_seconds": statistics.median(v), "max_seconds": max(v),
            "total_seconds": sum(v), "each": secs}


MEMORY_SCRIPT = """
import sys, numpy as np
from tagcache import Design, replay
from tagcache.hw.layout import simple_layout
from tagcache.replay import MachineConfig
from tagcache.workloads.events import FileTable, Op, Trace
if sys.argv[1] == "empty":
    sys.exit(0)
mem = 64 << 30
layout = simple_layout(mem, 4096, 0)
pages = layout.data_pages
step = 4096
n = pages // step
files = FileTable.build([0], [0], [pages])
tr = Trace(np.full(n, Op.READ, np.uint8), np.zeros(n, np.int64),
           np.arange(n, dtype=np.int64) * step, np.full(n, step, np.int64), files)
lru = sys.argv[1] == "lru"
cfg = MachineConfig(layout=layout, page_cache_limit_pages=pages,
                    page_cache_policy="lru" if lru else "kernel")
r = replay(cfg, Design("idle" if lru else "cleancache"), tr)
assert r.page_cache["insertions"] == pages, r.page_cache
print(pages, layout.nr_tag_pages)
"""


def bench_memory() -> dict:
    _, empty, _ = run_process([sys.executable, "-c", MEMORY_SCRIPT, "empty"])
    out = {"empty_rss_mib": empty / 2**20}
    for model in ("full", "lru"):
        res = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, model], capture_output=True,
                             text=True, check=True)
        pages, tag_pages = map(int, res.stdout.split())
        secs, rss, _ = run_process([sys.executable, "-c", MEMORY_SCRIPT, model])
        out[model] = {"simulated_pages": pages, "tag_pages": tag_pages, "seconds": secs,
                      "peak_rss_mib": rss / 2**20, "bytes_per_page": (rss - empty) / pages}
    return out


def bench_scaling(sizes: list[int]) -> dict:
    from tagcache import Design, replay
    from tagcache.hw.layout import simple_layout
    from tagcache.replay import MachineConfig
    from tagcache.workloads.events import FileTable, Op, Trace

    out: dict = {"full": {}, "lru": {}}
    layout = simple_layout(1 << 30, 4096, 0)
    setup: dict[str, float] = {}
    for n in [1, 1, *sizes]:        # the first run loads the compiled code: not counted
        rng = np.random.default_rng(1)
        pages = (rng.zipf(1.2, n) % 1_000_000).astype(np.int64)
        files = FileTable.build([0], [0], [1_000_000])
        tr = Trace(np.full(n, Op.READ, np.uint8), np.zeros(n, np.int64), pages,
                   np.ones(n, np.int64), files)
        for model, policy, backend in (("full", "kernel", "cleancache"), ("lru", "lru", "idle")):
            cfg = MachineConfig(layout=layout, page_cache_limit_pages=65536,
                                page_cache_policy=policy)
            t0 = time.perf_counter()
            replay(cfg, Design(backend), tr)
            secs = time.perf_counter() - t0
            if n == 1:              # the machine's set-up, taken off the per-event figure
                setup[model] = secs
                continue
            out[model][str(n)] = {"seconds": secs, "setup_seconds": setup[model],
                                  "ns_per_event": (secs - setup[model]) / (n - 1) * 1e9}
        del tr, pages
    return out


COMPILE_SCRIPT = """
from tagcache.engine.warm import warm
print(warm())
"""


def bench_ftrace(tmp: Path) -> dict:
    from tagcache.traces import read_trace

    src = SHARED / "dev-sample-grep.trace.zst"
    text = zstandard.ZstdDecompressor().stream_reader(src.open("rb")).read()
    body = b"".join(line + b"\n" for line in text.splitlines() if not line.startswith(b"#"))
    reps = max(1, 1_000_000 // body.count(b"\n"))
    big = tmp / "big.trace"
    big.write_bytes(text + body * (reps - 1))
    lines = text.count(b"\n") + body.count(b"\n") * (reps - 1)
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        read_trace(big, "ftrace", use_cache=False)
        times.append(time.perf_counter() - t0)
    secs = statistics.median(times)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        first = float(subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], env=env,
                                     capture_output=True, text=True, check=True).stdout)
        second = float(subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], env=env,
                                      capture_output=True, text=True, check=True).stdout)
    return {"lines": lines, "seconds": secs, "lines_per_s": lines / secs,
            "compile_first_run_s": first, "compile_cached_run_s": second}


def table(r: dict) -> str:
    e = r["end_to_end"]
    lcs, lru, full = e["libcachesim_lru"], e["tagcache_lru"], e["tagcache_full_model"]
    rows = [("item", "measured", "target", "met")]
    base = lcs.get("req_per_s")

    def vs(x: float, factor: float) -> str:
        return "n/a" if not base else ("yes" if x >= factor * base else "no")

    def run(x: dict) -> str:
        return (f"{x['seconds']:.2f} s (CPU {x.get('cpu_seconds', 0):.2f} s), "
                f"{x['req_per_s'] / 1e6:.2f} M req/s, {x['peak_rss_mib']:.0f} MiB")

    if base:
        rows.append(("1 libCacheSim LRU, end to end", run(lcs), "-", "-"))
    rows.append(("2 tagcache --policy lru, end to end", run(lru), ">= 2x item 1",
                 vs(lru["req_per_s"], 2)))
    rows.append(("3 tagcache full model + cleancache, end to end", run(full), ">= item 1",
                 vs(full["req_per_s"], 1)))
    v = r["validate"]
    rows.append(("4 tagcache validate, each capture", f"median {v['median_seconds']:.2f} s, "
                 f"max {v['max_seconds']:.2f} s ({v['captures']} captures)", "seconds", "-"))
    m = r["memory"]
    for model, label in (("full", "full model"), ("lru", "plain LRU")):
        x = m[model]
        rows.append((f"5 memory, 64 GiB, cache full, {label}",
                     f"{x['bytes_per_page']:.1f} B/page ({x['peak_rss_mib']:.0f} MiB RSS)",
                     "<= 32 B/page", "yes" if x["bytes_per_page"] <= 32 else "no"))
    for model, label in (("full", "full model"), ("lru", "plain LRU")):
        sc = r["scaling"][model]
        ns = [x["ns_per_event"] for x in sc.values()]
        rows.append((f"6 ns per event, {label}, " + " / ".join(
            f"{int(k) // 10**6}M" for k in sc), " / ".join(f"{x:.0f}" for x in ns), "flat",
            "yes" if max(ns) <= 1.5 * min(ns) else "no"))
    f = r["ftrace"]
    rows.append(("7 ftrace parsing", f"{f['lines_per_s'] / 1e6:.2f} M lines/s", ">= 1 M/s",
                 "yes" if f["lines_per_s"] >= 1e6 else "no"))
    rows.append(("7 first-run compile, whole engine", f"{f['compile_first_run_s']:.1f} s "
                 f"(cached {f['compile_cached_run_s']:.2f} s)", "-", "-"))
    w = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(row)) for row in rows)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    runs = 1 if quick else RUNS
    out: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "platform": platform.platform()}}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        steps = (("end_to_end", lambda: bench_end_to_end(tmp, runs, quick)),
                 ("validate", bench_validate), ("memory", bench_memory),
                 ("scaling", lambda: bench_scaling([10**5, 10**6] if quick else
                                                   [10**6, 10**7, 5 * 10**7])),
                 ("ftrace", lambda: bench_ftrace(tmp)))
        for name, fn in steps:
            print(f"{name} ...", file=sys.stderr, flush=True)
            out[name] = fn()
    print(table(out))
    if not quick:
        (ROOT / "benchmarks" / "results.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
