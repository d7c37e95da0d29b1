"""Compressed traces: recognised by magic bytes; a cut stream is an error, never a short trace."""

from __future__ import annotations

import gzip

import pytest
import zstandard
from trace_paths import DATA

from tagcache.errors import TraceError
from tagcache.traces import open_binary, open_text, read_trace

HEAD = DATA / "grep-head.trace.zst"


def head_text() -> bytes:
    with open_binary(HEAD) as f:
        return f.read()


def test_open_binary_and_text_decompress():
    text = head_text()
    assert text.startswith(b"# tracer: nop\n")
    assert text.count(b"\n") == 2000
    with open_text(HEAD) as f:
        assert f.readline() == "# tracer: nop\n"


def test_plain_files_open_as_they_are(tmp_path):
    plain = tmp_path / "plain.trace"
    plain.write_bytes(head_text())
    with open_binary(plain) as f:
        assert f.read() == head_text()


@pytest.mark.parametrize("cut", [1, 7, 1000, 5000])
def test_truncated_zstd_raises(tmp_path, cut):
    data = HEAD.read_bytes()
    target = tmp_path / "cut.trace.zst"
    target.write_bytes(data[:-cut])
    with pytest.raises(TraceError, match="truncated zstd stream") as err:
        read_trace(target, "ftrace", use_cache=False)
    assert str(err.value).startswith(str(target))


@pytest.mark.parametrize("cut", [1, 8, 1000, 5000])
def test_truncated_gzip_raises(tmp_path, cut):
    data = gzip.compress(head_text())
    target = tmp_path / "cut.trace.gz"
    target.write_bytes(data[:-cut])
    with pytest.raises(TraceError, match="truncated gzip stream"):
        read_trace(target, "ftrace", use_cache=False)


def test_truncated_stream_without_suffix_raises(tmp_path):
    target = tmp_path / "capture"
    target.write_bytes(HEAD.read_bytes()[:-100])
    with pytest.raises(TraceError, match="truncated zstd stream"):
        read_trace(target, use_cache=False)


@pytest.mark.parametrize("suffix", [".zst", ".gz"])
def test_suffix_without_magic_raises(tmp_path, suffix):
    target = tmp_path / f"x.trace{suffix}"
    target.write_bytes(b"")
    with pytest.raises(TraceError, match="truncated .* stream: no .* magic"):
        read_trace(target, "ftrace", use_cache=False)


def test_corrupt_zstd_raises(tmp_path):
    data = bytearray(HEAD.read_bytes())
    data[100:140] = bytes(40)
    target = tmp_path / "bad.trace.zst"
    target.write_bytes(bytes(data))
    with pytest.raises(TraceError, match="zstd"):
        read_trace(target, "ftrace", use_cache=False)


def test_multi_frame_zstd_reads_every_frame(tmp_path):
    text = head_text()
    half = text.index(b"\n", len(text) // 2) + 1
    c = zstandard.ZstdCompressor()
    target = tmp_path / "frames.trace.zst"
    target.write_bytes(c.compress(text[:half]) + c.compress(text[half:]))
    assert len(read_trace(target, use_cache=False)) == len(read_trace(HEAD, use_cache=False))
    target.write_bytes(c.compress(text[:half]) + c.compress(text[half:])[:-3])
    with pytest.raises(TraceError, match="truncated zstd stream"):
        read_trace(target, use_cache=False)


def test_missing_file(tmp_path):
    with pytest.raises(TraceError, match="no such trace file"):
        read_trace(tmp_path / "nope.trace")
