"""Parsed traces are cached as Parquet and not parsed again."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from trace_paths import DATA, KMEM

from tagcache.traces import cache, ftrace, libcachesim, read_trace


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
    path = tmp_path / "seq.txt"
    shutil.copy(DATA / "seq.txt", path)
    calls = []
    real = libcachesim.parse_txt
    monkeypatch.setattr(libcachesim, "parse_txt",
                        lambda *a, **k: calls.append(k) or real(*a, **k))
    read_trace(path)
    read_trace(path)
    assert len(calls) == 1
    read_trace(path, skip_bad_lines=True)
    assert len(calls) == 2
    path.write_text(path.read_text() + "11\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert len(read_trace(path)) == 21
    assert len(calls) == 3


def test_csv_spec_is_part_of_the_key(monkeypatch):
    spec = "time-col=1,obj-id-col=2,obj-size-col=3,has-header=true"
    a = read_trace(DATA / "seq.csv", csv_spec=spec)
    b = read_trace(DATA / "seq.csv", csv_spec=spec + ",block-size=4096")
    assert np.array_equal(a.arg1, b.arg1)
    c = read_trace(DATA / "seq.csv", csv_spec=spec + ",block-size=512")
    assert np.array_equal(c.arg1, a.arg1 >> 3)


def test_damaged_entry_is_parsed_again(tmp_path, private_cache):
    path = tmp_path / "seq.txt"
    shutil.copy(DATA / "seq.txt", path)
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
    assert len(read_trace(DATA / "seq.txt")) == 20
