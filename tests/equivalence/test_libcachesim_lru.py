"""Exact equivalence of the plain-LRU page cache with libCacheSim's LRU (issue 3, part 4).

The page-level expansion of the real cloudPhysics block trace (each request expanded to the
4 KiB pages it touches, in order) is replayed by `tagcache run --policy lru` and by libCacheSim;
the miss counts must be equal at every capacity.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from tagcache.cli import main

libcachesim = pytest.importorskip("libcachesim")
zstandard = pytest.importorskip("zstandard")

TRACE = Path(__file__).resolve().parents[3] / "shared" / "traces" / "cloudPhysicsIO.csv.zst"
pytestmark = pytest.mark.skipif(not TRACE.is_file(), reason=f"{TRACE} not present")


@pytest.fixture(scope="module")
def page_trace(tmp_path_factory) -> Path:
    """cloudPhysicsIO expanded to one 4 KiB page number per line (libCacheSim txt)."""
    text = zstandard.ZstdDecompressor().stream_reader(TRACE.open("rb")).read().decode()
    cols = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, usecols=(3, 4),
                      dtype=np.int64)
    size, lbn = cols[:, 0], cols[:, 1]
    first = lbn * 512 >> 12
    last = (lbn * 512 + size - 1) >> 12
    n = last - first + 1
    pages = np.repeat(first, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    out = tmp_path_factory.mktemp("cp") / "cloudPhysics.pages.txt"
    np.savetxt(out, pages, fmt="%d")
    return out


def libcachesim_misses(path: Path, capacity: int) -> int:
    reader = libcachesim.TraceReader(trace=str(path),
                                     trace_type=libcachesim.TraceType.PLAIN_TXT_TRACE)
    n = sum(1 for _ in open(path))
    ratio, _ = libcachesim.LRU(cache_size=capacity).process_trace(reader)
    return round(ratio * n)


def tagcache_misses(path: Path, capacity: int, capsys, extra: tuple[str, ...] = ()) -> dict:
    rc = main(["run", "--trace", str(path), "--format", "txt", "--policy", "lru",
               "--capacity", str(capacity), "--backend", "idle", "--no-progress",
               "--json", "-", *extra])
    assert rc == 0
    return json.loads(capsys.readouterr().out)


def test_issue_command_line_matches(page_trace, capsys):
    """The exact command of the issue: results[0].page_cache.misses equals libCacheSim's."""
    out = tagcache_misses(page_trace, 4000, capsys)
    assert out["results"][0]["backend"] == "idle"
    assert out["results"][0]["page_cache"]["misses"] == libcachesim_misses(page_trace, 4000)


@pytest.mark.parametrize("capacity", [1000, 16384, 100000])
def test_lru_misses_equal_libcachesim(page_trace, capsys, capacity):
    out = tagcache_misses(page_trace, capacity, capsys, ("--tagged-share", "0"))
    pc = out["results"][0]["page_cache"]
    assert pc["accesses"] == 1141869
    assert pc["misses"] == libcachesim_misses(page_trace, capacity)
