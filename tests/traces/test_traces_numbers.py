"""The vectorised integer parser agrees with Python's int() and refuses what int() refuses."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tagcache.traces._common import iter_line_chunks, parse_column, parse_words

u63 = st.integers(min_value=0, max_value=2**63 - 1)


@given(st.lists(st.tuples(u63, u63, u63), min_size=1, max_size=50))
def test_parse_words_matches_int(rows):
    text = "".join(f"{a} {b:x}  0x{c:x}\n" for a, b, c in rows).encode()
    got = parse_words(text, len(rows), (10, 16, 0))
    assert got is not None
    assert got.tolist() == [list(r) for r in rows]


@given(st.lists(st.text(alphabet="0123456789abx -", min_size=0, max_size=6), min_size=1,
                max_size=20))
def test_parse_column_refuses_what_int_refuses(words):
    def ok(w):
        try:
            return 0 <= int(w) < 2**63 and " " not in w.strip()
        except ValueError:
            return False
    got = parse_column([w.encode() for w in words])
    if all(ok(w) for w in words):
        assert got is not None and got.tolist() == [int(w) for w in words]
    else:
        assert got is None


def test_too_large_decimal_is_refused():
    assert parse_column([b"9223372036854775807"]).tolist() == [2**63 - 1]
    assert parse_column([b"9223372036854775808"]) is None
    assert parse_column([b"99999999999999999999"]) is None


@given(st.lists(st.text(alphabet="ab\n", max_size=30), max_size=10),
       st.integers(min_value=1, max_value=8))
def test_line_chunks_keep_every_byte(pieces, size):
    data = "".join(pieces).encode()
    chunks = list(iter_line_chunks(io.BytesIO(data), size))
    assert all(c.endswith(b"\n") for c in chunks)
    joined = b"".join(chunks)
    assert joined == (data if not data or data.endswith(b"\n") else data + b"\n")


@given(st.lists(st.one_of(st.integers(0, 2**64 + 10**6), st.integers(2**64 - 10**6, 2**64 + 10),
                          st.integers(10**19 - 5, 10**19 + 5), st.integers(0, 10**20)),
                min_size=1, max_size=30))
def test_unsigned_parse_takes_every_64_bit_value(values):
    """Hashed 64-bit ids: 20-digit decimals up to 2**64 - 1, nothing above."""
    got = parse_column([str(v).encode() for v in values], unsigned=True)
    if all(v < 2**64 for v in values):
        assert got is not None and got.dtype == np.uint64 and got.tolist() == values
    else:
        assert got is None


def test_unsigned_bounds():
    assert parse_column([b"18446744073709551615"], unsigned=True).tolist() == [2**64 - 1]
    assert parse_column([b"18446744073709551616"], unsigned=True) is None
    assert parse_column([b"28446744073709551615"], unsigned=True) is None
    assert parse_column([b"18446744073709551615"]) is None          # signed: int64 only
