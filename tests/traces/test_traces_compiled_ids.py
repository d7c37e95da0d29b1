"""The compiled txt reader and dense object ids (issue 11): the same ids, pages and bad lines as
the line-by-line Python they replace, on random inputs, across chunks, compressed, and with
the compiled code run as Python (NUMBA_DISABLE_JIT=1)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from tagcache.errors import TraceError
from tagcache.traces import _common, libcachesim, read_trace
from tagcache.traces._common import (
    BadLines,
    dense_object_ids,
    dense_object_ids_in_place,
    parse_id_lines,
)

U64 = 2**64 - 1


def reference_dense(ids) -> np.ndarray:
    """dense_object_ids as it was (numpy): rank in id order plus the gaps below."""
    ids = np.asarray(ids, np.uint64)
    if not len(ids):
        return np.zeros(0, np.int64)
    uniq, inverse = np.unique(ids, return_inverse=True)
    gaps = np.zeros(len(uniq), np.int64)
    gaps[1:] = np.diff(uniq) > np.uint64(1)
    return (np.arange(len(uniq)) + np.cumsum(gaps))[inverse.ravel()]


def reference_txt(text: bytes) -> tuple[list[int], list[int]]:
    """(ids, 1-based numbers of the bad lines) of a txt trace of integer ids, line by line."""
    ids = libcachesim._Ids(True)
    bad = BadLines("ref", skip=True)
    got = libcachesim._txt_slow(text, 0, ids, bad)
    return got.tolist(), sorted(p[0] for p in bad._pending)


_ids = st.one_of(st.integers(0, 40), st.integers(0, 2**20), st.integers(0, U64),
                 st.sampled_from([0, 1, 2**63 - 1, 2**63, U64 - 1, U64]))


@settings(max_examples=300, deadline=None)
@given(st.lists(_ids, max_size=300))
def test_dense_ids_equal_the_numpy_reference(ids):
    """Small ranges (the table) and 64-bit ids (the hash table, grown past its first size)."""
    want = reference_dense(ids)
    got = dense_object_ids(np.array(ids, np.uint64))
    np.testing.assert_array_equal(got, want)
    arr = np.array(ids, np.uint64)
    pages, span = dense_object_ids_in_place(arr)
    np.testing.assert_array_equal(pages, want)
    assert span == (int(want.max()) + 1 if len(ids) else 0)
    assert not len(ids) or np.shares_memory(pages, arr)


def test_dense_ids_hash_table_grows_many_times():
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 2**63, 20000, dtype=np.uint64)
    ids = np.concatenate([ids, ids[::-3], np.arange(50, dtype=np.uint64) << np.uint64(40)])
    np.testing.assert_array_equal(dense_object_ids(ids), reference_dense(ids))


def test_dense_ids_in_place_takes_only_its_own_kind_of_array():
    with pytest.raises(ValueError):
        dense_object_ids_in_place(np.arange(4))
    with pytest.raises(ValueError):
        dense_object_ids_in_place(np.arange(8, dtype=np.uint64)[::2])


_blank = st.sampled_from(["", " ", "\t", "\r", "  ", " \x0b", "\x0c"])
_word = st.one_of(
    _ids.map(str),
    _ids.map(lambda v: f"0x{v:x}"),
    _ids.map(lambda v: f"0X{v:X}"),
    st.sampled_from(["0" * 25 + "7", "0x" + "0" * 20 + "f", str(2**64), str(10**25),
                     "0x1" + "0" * 16, "0x", "x1", "-1", "+1", "1e5", "1_000", "1 2", "a",
                     "0x1g", "12a", "\x00", "\xff", "007", "0", "18446744073709551615"]))
_line = st.one_of(st.tuples(_blank, _word, _blank).map("".join), _blank)


@settings(max_examples=400, deadline=None)
@given(st.lists(_line, max_size=60))
def test_compiled_ids_equal_the_line_by_line_reader(lines):
    """Every id, and every bad line by its number, as the line-by-line reader finds them."""
    text = "".join(ln + "\n" for ln in lines).encode("latin-1")
    want, bad = reference_txt(text)
    buf = np.frombuffer(bytearray(text), np.uint8)
    out = np.zeros(len(lines) + 1, np.uint64)
    at, n, nlines, nbad, first_bad = parse_id_lines(buf, 0, out, 0)
    assert (at, nlines) == (len(buf), len(lines))
    assert out[:n].tolist() == want
    assert nbad == len(bad)
    assert first_bad == (bad[0] - 1 if bad else -1)


@settings(max_examples=100, deadline=None)
@given(st.lists(_line, min_size=1, max_size=40), st.integers(1, 5))
def test_a_full_output_stops_at_a_line_and_resumes(lines, cap):
    """A full ``out`` stops the loop at the start of a line; calling again goes on."""
    text = "".join(ln + "\n" for ln in lines).encode("latin-1")
    want, bad = reference_txt(text)
    buf = np.frombuffer(bytearray(text), np.uint8)
    out = np.zeros(cap, np.uint64)
    at = n = lines_seen = bad_seen = 0
    while at < len(buf):
        if n == len(out):
            out = np.concatenate([out, np.zeros(cap, np.uint64)])
        start = at
        at, n, k, nbad, _ = parse_id_lines(buf, at, out, n)
        assert start == 0 or buf[start - 1] == 10
        lines_seen += k
        bad_seen += nbad
    assert out[:n].tolist() == want and lines_seen == len(lines) and bad_seen == len(bad)


@settings(max_examples=100, deadline=None)
@given(st.lists(_line, max_size=40))
def test_parse_txt_equals_the_reference_trace(lines):
    """The whole reader: its trace is the reference ids made dense, or the same error."""
    import tempfile
    text = "".join(ln + "\n" for ln in lines).encode("latin-1")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "r.txt")
        with open(path, "wb") as f:
            f.write(text)
        first = next((ln for ln in text.split(b"\n") if ln.strip()), None)
        if first is None or _common.int_word(first) is None:
            return                                    # string ids: not the compiled path
        want, bad = reference_txt(text)
        if bad:
            with pytest.raises(TraceError, match=rf"r\.txt:{bad[0]}: "):
                libcachesim.parse_txt(path)
        if not want:
            with pytest.raises(TraceError):
                libcachesim.parse_txt(path, skip_bad_lines=True)
            return
        trace = libcachesim.parse_txt(path, skip_bad_lines=True)
        assert trace.skipped_lines == len(bad)
        np.testing.assert_array_equal(trace.arg1, reference_dense(want))
        assert trace.op.dtype == np.uint8 and (trace.arg2 == 1).all() and (trace.arg0 == 0).all()
        assert trace.files.span_pages.tolist() == [int(reference_dense(want).max()) + 1]


def test_bad_lines_named_across_chunks_and_a_growing_output(tmp_path, monkeypatch):
    """Small chunks and a reservation of one id: line numbers and counts still right."""
    lines = [str(i) for i in range(3000)]
    lines[1700] = "17 x"
    lines[2500] = str(2**64)
    path = tmp_path / "g.txt"
    path.write_text("\n".join(lines) + "\n")
    real = _common.iter_line_arrays
    monkeypatch.setattr(libcachesim, "iter_line_arrays",
                        lambda f, bad=None, lines=None: real(f, 1000, bad, lines))
    monkeypatch.setattr(libcachesim, "_MAX_RESERVE", 1)
    with pytest.raises(TraceError, match=r"g\.txt:1701: expected one obj id per line"):
        libcachesim.parse_txt(path)
    trace = libcachesim.parse_txt(path, skip_bad_lines=True)
    assert trace.skipped_lines == 2 and len(trace) == 2998
    ids = [int(w) for i, w in enumerate(lines) if i not in (1700, 2500)]
    np.testing.assert_array_equal(trace.arg1, reference_dense(ids))
    lines[1700] = "17"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TraceError, match=r"g\.txt:2501: obj id 18446744073709551616 does not "
                                         r"fit 64 bits"):
        libcachesim.parse_txt(path)
    path.write_text("\n".join(lines[:2500]) + "\n17")          # cut in its last line
    with pytest.raises(TraceError, match=r"g\.txt:2501: the file ends in the middle"):
        libcachesim.parse_txt(path)


def test_compressed_txt_reads_the_same(tmp_path):
    text = "".join(f"{(i * 7919) % 1000}\n" for i in range(5000)).encode()
    plain = tmp_path / "c.txt"
    plain.write_bytes(text)
    (tmp_path / "c.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(text))
    (tmp_path / "c.txt.gz").write_bytes(gzip.compress(text))
    want = read_trace(plain, "txt", use_cache=False)
    for name in ("c.txt.zst", "c.txt.gz"):
        got = read_trace(tmp_path / name, "txt", use_cache=False)
        for col in ("op", "arg0", "arg1", "arg2"):
            np.testing.assert_array_equal(getattr(got, col), getattr(want, col))


UNCOMPILED = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    from tagcache.traces import read_trace
    for path, fmt in zip(sys.argv[1::2], sys.argv[2::2]):
        t = read_trace(path, fmt, use_cache=False, skip_bad_lines=True)
        h = hashlib.sha256()
        for a in (t.op, t.arg0, t.arg1, t.arg2, t.files.span_pages, t.files.size_pages):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(repr((t.tasks, t.skipped_lines)).encode())
        print(h.hexdigest())
""")


def uncompiled_and_compiled(tmp_path, files: list[tuple[str, str]]) -> tuple[str, str]:
    """What UNCOMPILED prints for ``files`` with NUMBA_DISABLE_JIT=1, and compiled."""
    args = [a for pf in files for a in pf]
    out = []
    for jit_off in ("1", "0"):
        env = dict(os.environ, NUMBA_DISABLE_JIT=jit_off,
                   TAGCACHE_CACHE_DIR=str(tmp_path / "cache"))
        done = subprocess.run([sys.executable, "-c", UNCOMPILED, *args], env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        out.append(done.stdout)
    return out[0], out[1]


def test_txt_and_dense_ids_uncompiled_give_the_same_trace(tmp_path):
    """The kernels' Python semantics (NUMBA_DISABLE_JIT=1, in a subprocess) equal the
    compiled ones: a page trace (the table), 64-bit ids (the hash table), bad lines."""
    rng = np.random.default_rng(5)
    small = tmp_path / "s.txt"
    small.write_text("".join(f"{v}\n" for v in rng.integers(0, 500, 3000)) + "x\n 0x1F \n\n")
    big = tmp_path / "b.txt"
    big.write_text("".join(f"{v}\n" for v in rng.integers(0, 2**63, 5000, dtype=np.uint64))
                   + f"{U64}\n{2**64}\n")
    slow, fast = uncompiled_and_compiled(tmp_path, [(str(small), "txt"), (str(big), "txt")])
    assert slow == fast and len(fast.split()) == 2
