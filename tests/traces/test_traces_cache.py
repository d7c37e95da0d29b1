"""Parsed traces are cached as Parquet and not parsed again."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from trace_paths import DATA, KMEM

from tagcache.traces import cache, ftrace, libcachesim, msr, read_trace


def same(a, b):
    for col in ("op", "arg0", "arg1", "arg2"):
        assert getattr(a, col).dtype == getattr(b, col).dtype
        assert np.array_equal(getattr(a, col), getattr(b, col))
    for col in ("dev", "ino", "size_pages", "span_pages", "large_folios"):
        assert np.array_equal(getattr(a.files, col), getattr(b.files, col))
    assert (a.name, a.tasks, a.skipped_lines) == (b.name, b.tasks, b.skipped_lines)


def refuse(*args, **kwargs):
    raise AssertionError("parsed again instead of read from the cache")


def test_second_read_comes_from_the_cache(tmp_path, monkeypatch, private_cache):
    path = tmp_path / "head.trace.zst"
    shutil.copy(DATA / "grep-head.trace.zst", path)
    first = read_trace(path)
    entries = list(private_cache.glob("*.parquet"))
    assert len(entries) == 1
    monkeypatch.setattr(ftrace, "parse", refuse)
    second = read_trace(path)
    same(first, second)
    with pytest.raises(AssertionError, match="parsed again"):
        read_trace(path, use_cache=False)


def test_tasks_and_metadata_round_trip(tmp_path, monkeypatch, private_cache):
    path = tmp_path / "kmem.trace"
    path.write_text(KMEM)
    first = read_trace(path)
    (entry,) = private_cache.glob("*.parquet")
    table = pq.read_table(entry)
    assert table.column_names == ["op", "arg0", "arg1", "arg2"]
    meta = json.loads(table.schema.metadata[b"tagcache.trace"])
    assert meta["tasks"] == [["Web Content", 1234], ["kworker/u8:2-ev", 77], ["<...>", 99]]
    assert meta["format"] == "ftrace" and meta["version"] == cache.READER_VERSION
    monkeypatch.setattr(ftrace, "parse", refuse)
    same(first, read_trace(path))


def test_key_covers_options_and_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "seq-msr.csv"
    shutil.copy(DATA / "seq-msr.csv", path)
    calls = []
    real = msr.parse
    monkeypatch.setattr(msr, "parse", lambda *a, **k: calls.append(k) or real(*a, **k))
    read_trace(path)
    read_trace(path)
    assert len(calls) == 1
    read_trace(path, skip_bad_lines=True)
    assert len(calls) == 2
    path.write_text(path.read_text() + "128166372003081629,hm,1,Read,81920,4096,1264\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert len(read_trace(path)) == 21
    assert len(calls) == 3


@pytest.mark.parametrize("name", ["seq.txt", "seq.oracleGeneral"])
def test_object_traces_are_not_cached(tmp_path, monkeypatch, private_cache, name):
    """txt and oracleGeneral parse in about the time their entry would take to read back."""
    path = tmp_path / name
    shutil.copy(DATA / name, path)
    calls = []
    fn = "parse_txt" if name.endswith(".txt") else "parse_oracle_general"
    real = getattr(libcachesim, fn)
    monkeypatch.setattr(libcachesim, fn, lambda *a, **k: calls.append(k) or real(*a, **k))
    same(read_trace(path), read_trace(path))
    assert len(calls) == 2 and not list(private_cache.glob("*.parquet"))


def test_cached_columns_are_writable_arrays_of_the_trace_dtypes(tmp_path, private_cache):
    path = tmp_path / "head.trace.zst"
    shutil.copy(DATA / "grep-head.trace.zst", path)
    first = read_trace(path)
    second = read_trace(path)
    assert list(private_cache.glob("*.parquet"))
    for col, dt in (("op", np.uint8), ("arg0", np.int64), ("arg1", np.int64),
                    ("arg2", np.int64)):
        a = getattr(second, col)
        assert a.dtype == dt and a.flags.writeable and a.flags.c_contiguous
        assert not np.shares_memory(a, getattr(first, col))
    same(first, second)


def test_csv_spec_is_part_of_the_key(monkeypatch):
    spec = "time-col=1,obj-id-col=2,obj-size-col=3,has-header=true"
    a = read_trace(DATA / "seq.csv", csv_spec=spec)
    b = read_trace(DATA / "seq.csv", csv_spec=spec + ",block-size=4096")
    assert np.array_equal(a.arg1, b.arg1)
    c = read_trace(DATA / "seq.csv", csv_spec=spec + ",block-size=512")
    assert np.array_equal(c.arg1, a.arg1 >> 3)


def test_damaged_entry_is_parsed_again(tmp_path, private_cache):
    path = tmp_path / "seq.blkparse"
    shutil.copy(DATA / "seq.blkparse", path)
    first = read_trace(path)
    (entry,) = private_cache.glob("*.parquet")
    entry.write_bytes(b"not parquet")
    same(first, read_trace(path))


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("TAGCACHE_CACHE_DIR", str(tmp_path / "a"))
    assert cache.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("TAGCACHE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "tagcache"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "tagcache"


def test_unwritable_cache_is_not_an_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("TAGCACHE_CACHE_DIR", str(blocker / "sub"))
    assert len(read_trace(DATA / "seq-msr.csv")) == 20
