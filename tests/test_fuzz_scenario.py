"""Fuzz the scenario parser (issue 9): documents generated from its own keys, and raw mutated
bytes, either load or raise a TagcacheError (one line), never anything else; a scenario that
loads fits in the memory budget (nothing absurd is allocated while parsing).

Parse only: no simulation runs here. The budget is pinned to 256 MiB (``mem_available``), so
what is refused does not depend on the computer running the tests and the machines that load
stay small enough to build quickly.
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tagcache.hw.layout as layout_mod
from tagcache.errors import TagcacheError
from tagcache.hw.layout import BYTES_PER_PFN
from tagcache.scenario import (
    DEFAULT_TOML,
    Scenario,
    decode_toml,
    expected_events,
    expected_slots,
    load_scenario,
    parse_scenario,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_TEXT = (ROOT / "examples" / "scenario.toml").read_text()
BUDGET = 256 << 20
EXAMPLES = 2000

# -- the parser's keys, as examples/scenario.toml documents them --------------------------------

EXAMPLE = tomllib.loads(EXAMPLE_TEXT)
SCHEMA: dict[str, dict[str, Any]] = {"": {k: v for k, v in EXAMPLE.items()
                                          if not isinstance(v, dict)}}
SCHEMA |= {k: dict(v) for k, v in EXAMPLE.items() if isinstance(v, dict)}
# The keys the example shows commented out: the explicit machine form and the memory limit.
SCHEMA["machine"] |= {
    "memory_limit": "1GiB",
    "dram": [["0x80000000", "66MiB"]],
    "regions": [{"name": "tags0", "reg": ["0x84000000", "2MiB"],
                 "tagged_memory": ["0x80000000", "64MiB"], "block_size": "4KiB"}],
}
REGION_KEYS = {"name": "tags0", "reg": ["0x84000000", "2MiB"],
               "tagged_memory": ["0x80000000", "64MiB"], "block_size": "4KiB"}
MIX_KINDS = {"mix": None}

# -- values: valid, wrong types, huge / negative / nan / inf, units or not, tables, lists -------

SIZES = ["4KiB", "8KiB", "64KiB", "1MiB", "2MiB", "32MiB", "60MiB", "64MiB", "66MiB", "1GiB",
         "4GiB", "3.5GiB", "16TiB", "0", "1", "16", "0x10", "0x10 B", "4096B", "4096",
         "1.5GiB", "1.5", "-4KiB", "4 XB", "", " ", "nan", "inf", "0x100b", "0x84000000",
         "0x80000000", "99999999999999999999999TiB", "1e3", "64 MiB", "64mib", "2 GB"]
WORDS = ["idle", "cleancache", "whole", "split", "random", "pack", "sequential", "zipf",
         "fork", "restart", "tags0", "x", "", "\n", "é", "\x00"]

text = st.text(st.sampled_from("az_-09 .\"\\\n\t\x00\x7féü€😀"), max_size=8)
ints = st.one_of(st.integers(-8, 40), st.sampled_from([0, 1, -1, 2**31, 2**32, 2**53,
                                                      2**63 - 1, -(2**63), 10**9, 10**7]),
                 st.integers(-(2**63), 2**63 - 1))
floats = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 0.5, 1.0,
                                    0.999, 1e300, -1e-300, 5e-324]),
                   st.floats(allow_nan=True, allow_infinity=True))
scalars = st.one_of(st.sampled_from(SIZES), st.sampled_from(WORDS), ints, floats,
                    st.booleans(), text, st.dates(min_value=dt.date(1, 1, 1)))
values = st.one_of(scalars, st.lists(scalars, max_size=3),
                   st.lists(st.lists(scalars, max_size=2), max_size=2),
                   st.dictionaries(st.one_of(st.sampled_from(["zipf", "fork", "a", "name",
                                                              "reg"]), text),
                                   st.one_of(scalars, st.lists(scalars, max_size=2)),
                                   max_size=3))
"""Anything at all: scalars of every TOML type, lists (nested too) and tables."""


def near(example: Any) -> st.SearchStrategy:
    """Values for a key whose documented value is ``example``: it, its kind of value, or
    anything at all."""
    own: list[st.SearchStrategy] = [st.just(example)]
    if isinstance(example, str):
        own.append(st.sampled_from(SIZES))
        own.append(st.builds(lambda n, u: f"{n}{u}", st.integers(-2, 70000),
                             st.sampled_from(["", "B", "KiB", "MiB", "GiB", "TiB", "K", " kb"])))
    elif isinstance(example, bool):
        own.append(st.booleans())
    elif isinstance(example, int):
        own.append(ints)
    elif isinstance(example, float):
        own.append(floats)
    elif isinstance(example, list) and example and isinstance(example[0], dict):
        own.append(st.lists(region(), max_size=3))
    elif isinstance(example, list) and example and isinstance(example[0], list):
        own.append(st.lists(st.lists(st.one_of(st.sampled_from(SIZES), ints), max_size=3),
                            max_size=3))
    elif isinstance(example, list):
        own.append(st.lists(st.one_of(st.sampled_from(example), floats, st.sampled_from(WORDS),
                                      ints), max_size=4))
    elif isinstance(example, dict):
        own.append(st.dictionaries(st.sampled_from(sorted(example) + ["bogus"]),
                                   st.one_of(floats, ints, st.booleans(), text), max_size=6))
    return st.one_of(*own, values)


def region() -> st.SearchStrategy:
    return st.one_of(
        st.fixed_dictionaries({}, optional={k: near(v) for k, v in REGION_KEYS.items()}),
        values)


NEAR = {(section, k): near(v) for section, keys in SCHEMA.items() for k, v in keys.items()}
"""Built once: making strategies anew for every key of every example is what costs."""


@st.composite
def documents(draw) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for section, keys in SCHEMA.items():
        chosen = draw(st.lists(st.sampled_from(sorted(keys)), unique=True,
                               max_size=len(keys)))
        table = {k: draw(NEAR[section, k]) for k in chosen}
        if draw(st.integers(0, 19)) == 0:
            table[draw(text)] = draw(values)                    # an unknown key
        if not section:
            doc.update(table)
        elif draw(st.integers(0, 29)) == 0:
            doc[section] = draw(values)                         # a section of the wrong type
        elif table or draw(st.booleans()):
            doc[section] = table
    return doc


# -- a small TOML writer (no dependency) ----------------------------------------------------------

def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(k: str) -> str:
    return k if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) else _string(k)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def _is_aot(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _table(prefix: str, d: dict[str, Any], out: list[str]) -> None:
    for k, v in d.items():
        if not isinstance(v, dict) and not _is_aot(v):
            out.append(f"{_key(k)} = {toml_value(v)}")
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(f"[{prefix}{_key(k)}]")
            _table(f"{prefix}{_key(k)}.", v, out)
    for k, v in d.items():
        if _is_aot(v):
            for item in v:
                out.append(f"[[{prefix}{_key(k)}]]")
                _table(f"{prefix}{_key(k)}.", item, out)


def toml_doc(doc: dict[str, Any], inline: bool) -> str:
    """``doc`` as TOML: tables under headers, or every top-level value inline."""
    if inline:
        return "".join(f"{_key(k)} = {toml_value(v)}\n" for k, v in doc.items())
    out: list[str] = []
    _table("", doc, out)
    return "\n".join(out) + "\n"


def _same(a: Any, b: Any) -> bool:
    """Equality with nan equal to itself."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# -- the properties -------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def budget():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(layout_mod, "mem_available", lambda: BUDGET)
        yield


def fits(scn: Scenario) -> None:
    assert isinstance(scn, Scenario)
    layout = scn.machine.layout
    assert layout.nr_pfns * BYTES_PER_PFN <= BUDGET
    assert expected_slots(scn) * 64 <= BUDGET and expected_events(scn) * 180 <= BUDGET
    assert isinstance(scn.name, str) and "\n" not in scn.name
    assert all(0 <= s < 1 for s in scn.shares) and scn.designs


def parse_or_refuse(fn, *args) -> Scenario | None:
    try:
        scn = fn(*args)
    except TagcacheError as e:
        msg = str(e)
        assert msg and "\n" not in msg, msg
        return None
    fits(scn)
    return scn


FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


@FUZZ
@given(doc=documents(), inline=st.booleans())
def test_generated_documents_load_or_raise_a_tagcache_error(doc, inline):
    text = toml_doc(doc, inline)
    parsed = tomllib.loads(text)
    assert _same(parsed, doc), text                # the writer is right: the parser sees doc
    parse_or_refuse(parse_scenario, doc, "fuzz.toml")
    parse_or_refuse(lambda raw: parse_scenario(decode_toml(raw, "fuzz.toml"), "fuzz.toml"),
                    text.encode())


SMALL = """\
name = "small"
seed = 3
[machine]
memory = "64MiB"
anon = "60MiB"
min_free = "1MiB"
alloc_chunk = "64KiB"
[page_cache]
read_ahead = "128KiB"
[tagged]
shares = [0.05]
process_size = "1MiB"
mix = { restart = 0.4, fork = 0.2, swap = 0.25, migrate = 0.15 }
[files]
count = 6
mean_size = "2MiB"
[workload]
events = 150
read_size = "32KiB"
mix = { zipf = 0.80, scan = 0.04, loop = 0.04, write = 0.05, truncate = 0.01, mmap = 0.06 }
"""
# The example and the default with a smaller machine (every key kept): quicker to build.
BASES = [SMALL.encode()] + [t.replace('memory = "4GiB"', 'memory = "256MiB"').replace(
    'anon = "3.5GiB"', 'anon = "200MiB"').encode() for t in (EXAMPLE_TEXT, DEFAULT_TOML)]
PAYLOADS = [b"\xff", b"\xe9", b"\x00", b"nan", b"inf", b"-", b"0x", b"[", b"]", b"{", b"\"",
            b"\n", b"=", b"[[machine.regions]]\n", b"regions = [1, 2]\n", b"1e999", b"TiB",
            b"9" * 30, b"#", b"\r\n", b"\\u0000", b"\xef\xbb\xbf"]
mutation = st.tuples(st.sampled_from(["insert", "delete", "replace", "dup_line", "truncate"]),
                     st.floats(0, 1), st.integers(1, 40),
                     st.one_of(st.sampled_from(PAYLOADS), st.binary(min_size=1, max_size=8)))


def mutate(raw: bytes, ops: list[tuple[str, float, int, bytes]]) -> bytes:
    for kind, where, n, payload in ops:
        i = int(where * len(raw))
        if kind == "insert":
            raw = raw[:i] + payload + raw[i:]
        elif kind == "delete":
            raw = raw[:i] + raw[i + n:]
        elif kind == "replace":
            raw = raw[:i] + payload + raw[i + len(payload):]
        elif kind == "dup_line":
            lines = raw.split(b"\n")
            j = int(where * len(lines)) % len(lines)
            lines.insert(j, lines[j])
            raw = b"\n".join(lines)
        else:
            raw = raw[:max(i, len(raw) - n)]
    return raw


TMP = Path(tempfile.mkdtemp(prefix="tagcache-fuzz-"))


@FUZZ
@given(base=st.sampled_from(range(len(BASES))), ops=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_bytes_load_or_raise_a_tagcache_error(base, ops):
    raw = mutate(BASES[base], ops)
    path = TMP / "mutated.toml"
    path.write_bytes(raw)
    parse_or_refuse(load_scenario, path)


def teardown_module() -> None:
    for p in TMP.iterdir():
        p.unlink()
    TMP.rmdir()
