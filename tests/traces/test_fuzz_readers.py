"""Fuzzing every trace reader (issue 9, part 2): random bytes and mutated valid traces are read,
or refused with a TraceError; never another exception.

Each reader gets 2,000 examples of random bytes and 2,000 of its committed fixtures mutated
(bytes flipped, inserted, deleted, the file cut, lines duplicated, numbers replaced with huge,
negative or odd ones, NUL bytes, compressed and then damaged), read with its format given and
also through detection.
"""

from __future__ import annotations

import gzip
import re

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trace_paths import DATA, KMEM

from tagcache.errors import TraceError
from tagcache.traces import READERS, read_trace
from tagcache.traces.libcachesim import parse_spec

EXAMPLES = 2000
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _head_lines(data: bytes, n: int) -> bytes:
    return b"".join(data.splitlines(keepends=True)[:n])


def _fixtures() -> dict[str, list[tuple[str, bytes]]]:
    grep = zstandard.ZstdDecompressor().decompressobj().decompress(
        (DATA / "grep-head.trace.zst").read_bytes())
    return {
        "ftrace": [("a.trace", _head_lines(grep, 40)), ("k.trace", KMEM.encode())],
        "blkparse": [("s.blkparse", _head_lines((DATA / "seq.blkparse").read_bytes(), 30)),
                     ("m.blkparse", (DATA / "mixed.blkparse").read_bytes())],
        "msr": [("s-msr.csv", (DATA / "seq-msr.csv").read_bytes()),
                ("m-msr.csv", (DATA / "mixed-msr.csv").read_bytes())],
        "csv": [("s.csv", (DATA / "seq.csv").read_bytes()),
                ("m.csv", (DATA / "mixed-cloudphysics.csv").read_bytes())],
        "txt": [("s.txt", (DATA / "seq.txt").read_bytes())],
        "oracleGeneral": [("s.oracleGeneral", (DATA / "seq.oracleGeneral").read_bytes()),
                          ("s.bin", (DATA / "seq.oracleGeneral").read_bytes())],
    }


FIXTURES = _fixtures()
ODD_NUMBERS = [b"0", b"-1", b"-9223372036854775808", b"9223372036854775807",
               b"9223372036854775808", b"18446744073709551615", b"18446744073709551616",
               b"99999999999999999999999999", b"1099511627776", b"4294967297", b"0x10",
               b"1e5", b"+7", b"", b"\x00", b"007", b"1_000"]
_NUMBER = re.compile(rb"\d+")


@st.composite
def mutated(draw, fmt: str) -> tuple[str, bytes]:
    """One of ``fmt``'s fixtures with one to four mutations."""
    name, data = draw(st.sampled_from(FIXTURES[fmt]))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "cut", "dup", "number",
                                     "number", "nul", "swap"]))
        n = len(data)
        at = draw(st.integers(0, max(n - 1, 0)))
        if kind == "flip" and n:
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
        elif kind == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 16)):]
        elif kind == "cut":
            data = data[:at]
        elif kind == "nul":
            data = data[:at] + b"\x00" + data[at:]
        elif kind in ("dup", "swap"):
            lines = data.split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if kind == "dup":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = b"\n".join(lines)
        elif kind == "number":
            spans = [m.span() for m in _NUMBER.finditer(data)]
            if spans:
                a, b = draw(st.sampled_from(spans))
                new = draw(st.one_of(st.sampled_from(ODD_NUMBERS),
                                     st.integers(-(2**70), 2**70).map(lambda v: str(v).encode())))
                data = data[:a] + new + data[b:]
    pack = draw(st.sampled_from(["plain", "plain", "plain", "zst", "gz"]))
    if pack != "plain":
        data = zstandard.ZstdCompressor().compress(data) if pack == "zst" \
            else gzip.compress(data, mtime=0)
        name = f"{name}.{pack}"
        if draw(st.booleans()):                  # damage the compressed stream too
            at = draw(st.integers(0, len(data) - 1))
            data = data[:at] if draw(st.booleans()) else \
                data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1:]
    return name, data


def read_or_refuse(path, fmt: str | None, skip: bool) -> None:
    """Reading ends in a trace or a one-line TraceError naming the file; nothing else."""
    try:
        trace = read_trace(path, fmt, skip_bad_lines=skip, use_cache=False)
    except TraceError as e:
        msg = str(e)
        assert "\n" not in msg, msg
        assert str(path) in msg or msg.startswith("csv spec"), msg
        return
    n = len(trace)
    assert len(trace.arg0) == len(trace.arg1) == len(trace.arg2) == n
    assert (trace.files.span_pages >= 0).all() and (trace.files.span_pages < 1 << 40).all()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("fmt", list(READERS))
def test_mutated_traces_are_read_or_refused(workdir, fmt):
    @FUZZ
    @given(mutated(fmt), st.booleans(), st.booleans())
    def run(case, skip, detect):
        name, data = case
        path = workdir / name
        path.write_bytes(data)
        read_or_refuse(path, None if detect else fmt, skip)

    run()


@pytest.mark.parametrize("fmt", list(READERS))
def test_random_bytes_are_read_or_refused(workdir, fmt):
    text_like = st.lists(st.sampled_from([b"0", b"1", b"9", b",", b" ", b"\n", b"-", b"+",
                                          b"Read", b"Q", b"R", b"W", b"8,0", b"0x", b":",
                                          b"mm_filemap_get_pages: ", b"ofs=", b"\x00",
                                          b"obj_id,", b"# tracer:"]),
                         max_size=40).map(b"".join)

    @FUZZ
    @given(st.one_of(st.binary(max_size=200), text_like), st.booleans(), st.booleans())
    def run(data, skip, detect):
        path = workdir / f"random.{fmt}"
        path.write_bytes(data)
        read_or_refuse(path, None if detect else fmt, skip)

    run()


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("=,_-0123456789 abcdefhiklmnoprstuxyz\\t")),
               max_size=60))
def test_csv_specs_are_parsed_or_refused(spec):
    try:
        parse_spec(spec)
    except TraceError as e:
        assert "\n" not in str(e)


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("=,-0123456789abcdeilmnorstyz")), max_size=50))
def test_csv_with_random_specs_is_read_or_refused(tmp_path_factory, spec):
    path = tmp_path_factory.getbasetemp() / "spec.csv"
    if not path.exists():
        path.write_bytes((DATA / "mixed-cloudphysics.csv").read_bytes())
    try:
        read_trace(path, "csv", csv_spec=spec or None, use_cache=False)
    except TraceError as e:
        assert "\n" not in str(e)
