"""Scenarios: the machine, the designs to compare and the workload, from TOML or built in.

Every key is documented in ``examples/scenario.toml``; :data:`DEFAULT_TOML` is the embedded
default that ``tagcache run`` uses without ``--config``. Loading validates everything and
raises :class:`ScenarioError` with one line naming the file, the key and the bad value: the
file must be UTF-8 TOML, sizes follow units.py (a unit counts bytes, a plain number pages),
and a scenario whose simulation would not fit in this computer's available memory is refused
with the estimate (:func:`replay.check_run_memory`) before anything big is allocated.

Defaults live in one place: a key left out takes the field default of the dataclass that holds
it (:class:`MachineConfig`, :class:`FileWorkload`, :class:`TaggedWorkload`, :class:`CostTable`),
or, for the keys no dataclass holds, :data:`SCENARIO_DEFAULTS`. :data:`DEFAULT_TOML` spells the
same values out (tests check that it, an empty file and ``examples/scenario.toml`` load alike).
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagcache.backends import spec as backend_spec
from tagcache.costs import CostTable
from tagcache.engine.choices import ALLOC_POLICIES, POLICIES
from tagcache.errors import LayoutError, ResourceError, ScenarioError
from tagcache.hw.layout import MAX_TAG_REGIONS, MachineLayout, TagRegion, simple_layout
from tagcache.replay import BACKEND_NAMES, Design, MachineConfig, check_run_memory
from tagcache.units import PAGE_SIZE, format_bytes, parse_address, parse_pages, parse_size
from tagcache.workloads.generators import (
    FILE_MIX_KEYS,
    TAGGED_MIX_KEYS,
    FileWorkload,
    TaggedWorkload,
)

SCENARIO_DEFAULTS: dict[str, Any] = {
    "seed": 1,
    "machine": {"memory": "4GiB", "block_size": "4KiB", "anon": "3.5GiB"},
    "designs": {"backends": ["idle", "cleancache"], "policies": ["whole", "split"]},
    "tagged": {"shares": [0.01, 0.10, 0.30]},
}
"""Defaults of the keys that no dataclass field holds."""

DEFAULT_TOML = """\
# The embedded default: a 4 GiB arm64 machine with its 128 MiB of tag storage.
name = "default"
seed = 1

[machine]
memory = "4GiB"            # tagged data memory; tag storage (1/32) is added after it
block_size = "4KiB"
anon = "3.5GiB"            # anonymous memory of the running apps, tagged share included
min_free = "16MiB"
alloc_policy = "random"
alloc_chunk = "64KiB"

[page_cache]
read_ahead = "128KiB"
max_folio_order = 4

[designs]
backends = ["idle", "cleancache"]
policies = ["whole", "split"]

[tagged]
shares = [0.01, 0.10, 0.30]
process_size = "64MiB"
churn_events = 80

[files]
count = 128
mean_size = "8MiB"
large_folio_share = 0.5

[workload]
events = 3500
read_size = "64KiB"
zipf_alpha = 0.9
mix = { zipf = 0.80, scan = 0.04, loop = 0.04, write = 0.05, truncate = 0.01, mmap = 0.06 }
"""


@dataclass
class Scenario:
    """A loaded scenario: the machine, the designs, the tagged shares and the workloads."""

    name: str
    seed: int
    machine: MachineConfig
    anon_pages: int
    designs: list[Design]
    shares: list[float]
    files: FileWorkload
    tagged: TaggedWorkload
    source: str = "<default>"
    raw: dict[str, Any] = field(default_factory=dict)
    policies: list[str] = field(default_factory=lambda: list(POLICIES))
    design_params: dict[str, dict[str, list]] = field(default_factory=dict)
    """``[designs.<backend>]``: each backend's parameter values given (name -> values)."""
    tagged_placements: list[str] = field(default_factory=list)
    """``[designs] tagged_placement``: where each design's tagged pages go, one design per
    value (none: the machine's alloc_policy)."""

    def designs_of(self, backends: list[str], compare: bool = False) -> list[Design]:
        """The designs of ``backends`` with this scenario's parameter values; ``compare``:
        each parameter the scenario leaves out takes its spec's compare values."""
        return scenario_designs(backends, self.policies, self.design_params, compare,
                                self.tagged_placements)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, **self.raw}


MAX_SCENARIO_BYTES = 1 << 20
"""A scenario file larger than this is refused unread (``--config /dev/zero``)."""

_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error line stays one short line."""
    r = repr(value)
    return r if len(r) <= limit else r[:limit - 3] + "..."


def _fmt(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def _label(value: Any) -> str | None:
    """``value`` if it is a usable label (a non-empty string of printable characters that
    fits on a line), else None."""
    if isinstance(value, str) and 0 < len(value) <= 200 and not set(value) & _CONTROL:
        return value
    return None


_BARE_KEY = re.compile(r"[A-Za-z0-9_.\[\]-]+")


def _key(key: str) -> str:
    """A key as TOML would write it: bare when it can be, else quoted (one line, always)."""
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


class _Reader:
    """Typed access to a TOML table that remembers where each value came from."""

    def __init__(self, data: dict[str, Any], source: str, prefix: str = "") -> None:
        self.data, self.source, self.prefix = data, source, prefix
        self.used: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.source}: {self.prefix}{_key(key)}"

    def bad(self, key: str, value: Any, want: str) -> ScenarioError:
        return ScenarioError(f"{self.where(key)} = {_short(value)}: {want}")

    def table(self, key: str) -> _Reader:
        v = self.data.get(key, {})
        self.used.add(key)
        if not isinstance(v, dict):
            raise self.bad(key, v, f"expected a table ([{self.prefix}{_key(key)}])")
        return _Reader(v, self.source, f"{self.prefix}{_key(key)}.")

    def get(self, key: str, default: Any) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def size(self, key: str, default: str) -> int:
        """Bytes; a plain number counts pages (units.parse_size)."""
        v = self.get(key, default)
        try:
            return parse_size(v)
        except ValueError as e:
            raise self.bad(key, v, str(e)) from None

    def pages(self, key: str, default: int, lo: int = 0, hi: int | None = None,
              hi_what: str = "") -> int:
        """A size in pages (``default`` is in pages), within [lo, hi]."""
        if key not in self.data:
            self.used.add(key)
            return default
        v = self.get(key, default)
        try:
            b = parse_size(v)
        except ValueError as e:
            raise self.bad(key, v, str(e)) from None
        if b < lo * PAGE_SIZE:
            raise self.bad(key, v, "must not be zero" if b == 0 and lo == 1 else
                           "below one page (4 KiB)" if lo == 1 else
                           f"must be at least {lo:,} pages ({format_bytes(lo * PAGE_SIZE)})")
        if b % PAGE_SIZE:
            raise self.bad(key, v, "not a whole number of 4 KiB pages")
        n = b // PAGE_SIZE
        if hi is not None and n > hi:
            raise self.bad(key, v, f"larger than {hi_what or format_bytes(hi * PAGE_SIZE)}")
        return n

    def number(self, key: str, default: float, lo: float, hi: float, integer: bool = False
               ) -> float:
        v = self.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or (integer and not
                                                                     isinstance(v, int)):
            raise self.bad(key, v, "expected an integer" if integer else "expected a number")
        if not (math.isfinite(v) and lo <= v <= hi):
            raise self.bad(key, v, f"must be between {_fmt(lo)} and {_fmt(hi)}")
        return v

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        v = self.get(key, default)
        if not isinstance(v, str) or v not in choices:
            raise self.bad(key, v, f"expected one of {', '.join(choices)}")
        return v

    def names(self, key: str, default: list[str], allowed: tuple[str, ...]) -> list[str]:
        """A non-empty list of distinct names drawn from ``allowed``."""
        v = self.get(key, default)
        if (not isinstance(v, list) or not v or any(not isinstance(x, str) or x not in allowed
                                                    for x in v)):
            raise self.bad(key, v, f"expected a non-empty list drawn from {', '.join(allowed)}")
        if len(set(v)) != len(v):
            raise self.bad(key, v, "names one twice")
        return v

    def check_unknown(self) -> None:
        for k in self.data:
            if k not in self.used:
                raise ScenarioError(f"{self.where(k)}: unknown key")


def _pair(r: _Reader, key: str, v: Any) -> tuple[int, int]:
    """A devicetree ``[base, size]`` pair: a byte address and a size (plain numbers: pages)."""
    if not isinstance(v, list) or len(v) != 2:
        raise r.bad(key, v, 'expected [base, size], e.g. ["0x80000000", "4GiB"]')
    try:
        base = parse_address(v[0])
    except ValueError as e:
        raise r.bad(key, v, f"base: {e}") from None
    try:
        size = parse_size(v[1])
    except ValueError as e:
        raise r.bad(key, v, f"size: {e}") from None
    return base, size


def _layout(m: _Reader) -> MachineLayout:
    explicit = [k for k in ("dram", "regions") if k in m.data]
    if not explicit:
        defaults = SCENARIO_DEFAULTS["machine"]
        mem_v, bs_v = m.get("memory", defaults["memory"]), m.get("block_size",
                                                                 defaults["block_size"])
        mem = m.size("memory", defaults["memory"])
        bs = m.size("block_size", defaults["block_size"])
        if mem <= 0 or mem % (32 * PAGE_SIZE):
            raise m.bad("memory", mem_v, "must be a non-zero multiple of 128 KiB")
        if bs <= 0 or bs % PAGE_SIZE:
            raise m.bad("block_size", bs_v, "not a multiple of 4 KiB")
        if bs > mem // 32:
            raise m.bad("block_size", bs_v, f"larger than the tag storage of machine.memory "
                                            f"({format_bytes(mem // 32)})")
        try:
            return simple_layout(mem, bs)
        except LayoutError as e:
            raise m.bad("memory", mem_v, f"with block_size {format_bytes(bs)}: {e}") from None
        except ResourceError as e:
            raise m.bad("memory", mem_v, str(e)) from None
    for k in ("memory", "block_size"):
        if k in m.data:
            raise m.bad(k, m.data[k], "not with machine.dram and [[machine.regions]] (the "
                                      "explicit form: give each region's block_size)")
    dram = m.get("dram", None)
    regions = m.get("regions", None)
    if regions is not None:
        if not isinstance(regions, list) or not all(isinstance(r, dict) for r in regions):
            raise m.bad("regions", regions, "expected an array of tables ([[machine.regions]], "
                                            "each with reg and tagged_memory)")
        if not regions:
            raise m.bad("regions", regions, "expected at least one [[machine.regions]] table")
        if len(regions) > MAX_TAG_REGIONS:
            raise m.bad("regions", f"<{len(regions)} tables>", f"at most {MAX_TAG_REGIONS} tag "
                                                               f"regions")
    if not isinstance(dram, list) or not dram:
        raise m.bad("dram", dram, 'with [[machine.regions]], give dram = [[base, size], ...], '
                                  'e.g. [["0x80000000", "4GiB"]]')
    if regions is None:
        raise m.bad("dram", dram, "needs [[machine.regions]] (the tag-storage regions)")
    banks = [_pair(m, f"dram[{i}]", d) for i, d in enumerate(dram)]
    out = []
    for i, r in enumerate(regions):
        rr = _Reader(r, m.source, f"machine.regions[{i}].")
        name = rr.get("name", f"tags{i}")
        if _label(name) is None:
            raise rr.bad("name", name, "expected a non-empty string on one line")
        for k in ("reg", "tagged_memory"):
            if k not in r:
                raise ScenarioError(f"{rr.where(k)}: missing (expected [base, size])")
        tb, ts = _pair(rr, "reg", rr.get("reg", None))
        mb, ms = _pair(rr, "tagged_memory", rr.get("tagged_memory", None))
        bs = rr.size("block_size", "4KiB")
        rr.check_unknown()
        out.append(TagRegion(name, tb, ts, bs, mb, ms))
    try:
        return MachineLayout(banks, out)
    except LayoutError as e:
        key = f"machine.regions[{e.region}]" if e.region is not None else "machine"
        sizes = [d[1] for d in dram] + [v[1] for r in regions
                                        for v in (r["reg"], r["tagged_memory"])]
        hint = ""
        if any(not isinstance(v, str) or not v.strip()[-1:].isalpha() for v in sizes):
            hint = " (a size without a unit counts 4 KiB pages; bytes take a unit: 4096B)"
        raise ScenarioError(f"{m.source}: {key}: {e}{hint}") from None
    except ResourceError as e:
        raise ScenarioError(f"{m.source}: machine.dram: {e}") from None


def _mix(r: _Reader, key: str, default: tuple[tuple[str, float], ...], keys: tuple[str, ...]
         ) -> tuple[tuple[str, float], ...]:
    v = r.get(key, None)
    if v is None:
        return default
    if not isinstance(v, dict) or not v:
        raise r.bad(key, v, f"expected a table of weights over {', '.join(keys)}")
    for k, w in v.items():
        if k not in keys:
            raise r.bad(f"{key}.{k}", w, f"unknown kind; expected one of {', '.join(keys)}")
        if (isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w)
                or not 0 <= w <= 1e6):
            raise r.bad(f"{key}.{k}", w, "weight must be a number between 0 and 1e6")
    if sum(v.values()) <= 0:
        raise r.bad(key, v, "weights must not all be zero")
    return tuple((k, float(w)) for k, w in v.items())


def expected_events(scn: Scenario) -> int:
    """About how many events one generated trace of ``scn`` holds (scans and loops expand to
    one read per ``scan_read_pages``; each process maps once; churn adds up to 3 each)."""
    fw, tw = scn.files, scn.tagged
    per_op = {"truncate": 2, "scan": fw.file_size_pages // fw.scan_read_pages + 1}
    per_op["loop"] = per_op["scan"]
    total = sum(w for _, w in fw.mix)
    rows = sum(w * per_op.get(k, 1) for k, w in fw.mix) / total
    procs = -(-max(scn.anon_pages, 1) // tw.process_pages)
    return int(fw.events * rows) + procs + 3 * tw.churn_events


def expected_slots(scn: Scenario) -> int:
    """About how many page-cache slots the generated files need (each file's pages, its run
    rounded up to 512 slots)."""
    return scn.files.files * (scn.files.file_size_pages + 511)


def parse_scenario(data: dict[str, Any], source: str) -> Scenario:
    """A :class:`Scenario` from a parsed TOML document; :class:`ScenarioError` (one line:
    ``source``, the key, the value, what is wrong) on anything else, including a simulation
    that would not fit in this machine's memory."""
    sd, mc, fwd, twd = SCENARIO_DEFAULTS, MachineConfig, FileWorkload, TaggedWorkload
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: expected a TOML document (a table of keys)")
    top = _Reader(data, source)
    name = top.get("name", Path(source).stem or "scenario")
    if _label(name) is None:
        raise top.bad("name", name, "expected a non-empty string on one line")
    seed = int(top.number("seed", sd["seed"], 0, 2**32 - 1, integer=True))

    m = top.table("machine")
    layout = _layout(m)
    data_pages = layout.data_pages
    anon_pages = m.pages("anon", parse_pages(sd["machine"]["anon"]))
    min_free = m.pages("min_free", mc.min_free_pages)
    limit_pages = mc.memory_limit_pages
    if "memory_limit" in m.data:
        limit_pages = m.pages("memory_limit", 0, lo=1)
    alloc_policy = m.choice("alloc_policy", mc.alloc_policy, ALLOC_POLICIES)
    chunk = m.pages("alloc_chunk", mc.alloc_chunk_pages, lo=1, hi=data_pages,
                    hi_what="the machine's data memory")
    anon_order = int(m.number("anon_folio_order", mc.anon_folio_order, 0, 9, integer=True))
    m.check_unknown()
    if anon_pages + min_free >= data_pages:
        raise m.bad("anon", m.get("anon", sd["machine"]["anon"]),
                    f"leaves no memory for the page cache (with min_free, of "
                    f"{format_bytes(data_pages * PAGE_SIZE)} of data memory)")
    if limit_pages is not None and limit_pages <= anon_pages:
        raise m.bad("memory_limit", m.get("memory_limit", None),
                    f"leaves no room for the page cache beside machine.anon "
                    f"({format_bytes(anon_pages * PAGE_SIZE)})")

    p = top.table("page_cache")
    ra_pages = p.pages("read_ahead", mc.ra_pages, hi=data_pages,
                       hi_what="the machine's data memory")
    max_order = int(p.number("max_folio_order", mc.max_folio_order, 0, 9, integer=True))
    p.check_unknown()

    d = top.table("designs")
    backends = d.names("backends", sd["designs"]["backends"], BACKEND_NAMES)
    policies = d.names("policies", sd["designs"]["policies"], POLICIES)
    placements = (d.names("tagged_placement", [], ALLOC_POLICIES)
                  if "tagged_placement" in d.data else [])
    design_params = {name: _backend_params(d, name) for name in BACKEND_NAMES
                     if name in d.data}
    d.check_unknown()
    designs = scenario_designs(backends, policies, design_params, placements=placements)

    t = top.table("tagged")
    shares = t.get("shares", sd["tagged"]["shares"])
    try:
        shares = check_shares(shares, data_pages, anon_pages)
    except ValueError as e:
        raise t.bad("shares", shares, str(e)) from None
    tw = TaggedWorkload(
        share=0.0,
        process_pages=t.pages("process_size", twd.process_pages, lo=1, hi=data_pages,
                              hi_what="the machine's data memory"),
        churn_events=int(t.number("churn_events", twd.churn_events, 0, 10**7, integer=True)),
        anon_pages=anon_pages,
        mix=_mix(t, "mix", twd.mix, TAGGED_MIX_KEYS),
    )
    t.check_unknown()

    f = top.table("files")
    w = top.table("workload")
    mean_pages = f.pages("mean_size", fwd.file_size_pages, lo=1)
    fw = FileWorkload(
        files=int(f.number("count", fwd.files, 1, 10**7, integer=True)),
        file_size_pages=mean_pages,
        large_folio_share=float(f.number("large_folio_share", fwd.large_folio_share, 0, 1)),
        events=int(w.number("events", fwd.events, 1, 10**9, integer=True)),
        read_pages=w.pages("read_size", fwd.read_pages, lo=1, hi=64 * mean_pages,
                           hi_what="the largest file (64 x files.mean_size)"),
        scan_read_pages=ra_pages or fwd.scan_read_pages,
        zipf_alpha=float(w.number("zipf_alpha", fwd.zipf_alpha, 0, 5)),
        mix=_mix(w, "mix", fwd.mix, FILE_MIX_KEYS),
    )
    f.check_unknown()
    w.check_unknown()

    c = top.table("costs")
    cost_kw = {}
    for k in c.data:
        if k not in CostTable.keys():
            raise ScenarioError(f"{c.where(k)}: unknown cost; known: {', '.join(CostTable.keys())}")
        cost_kw[k] = float(c.number(k, 0, 0, 1e12))
    top.check_unknown()

    cfg = MachineConfig(
        layout=layout, min_free_pages=min_free, memory_limit_pages=limit_pages,
        alloc_policy=alloc_policy, alloc_chunk_pages=chunk, anon_folio_order=anon_order,
        ra_pages=ra_pages, max_folio_order=max_order, costs=CostTable(**cost_kw), seed=seed,
    )
    raw = {k: v for k, v in data.items() if k != "name"}
    scn = Scenario(name, seed, cfg, anon_pages, designs, shares, fw, tw, source, raw,
                   policies, design_params, placements)
    try:
        check_run_memory(layout, expected_slots(scn), expected_events(scn),
                         len(scn.shares) + 1)
    except ResourceError as e:
        raise ScenarioError(f"{source}: {e}") from None
    return scn


def _backend_params(d: _Reader, name: str) -> dict[str, list]:
    """``[designs.<name>]``: each parameter's value, or list of values (an axis), checked
    against the backend's declaration (backends/base.py Param)."""
    spec = backend_spec(name)
    t = d.table(name)
    out: dict[str, list] = {}
    for key in t.data:
        try:
            param = spec.param(key)
        except KeyError:
            known = ", ".join(p.name for p in spec.params) or "none"
            raise ScenarioError(f"{t.where(key)}: {name} has no such parameter; known: "
                                f"{known}") from None
        v = t.get(key, None)
        values = v if isinstance(v, list) else [v]
        if not values or len(set(map(repr, values))) != len(values):
            raise t.bad(key, v, "expected a value or a non-empty list of distinct values")
        for x in values:
            why = param.check(x)
            if why:
                raise t.bad(key, v, why)
        out[key] = values
    t.check_unknown()
    return out


def scenario_designs(backends: list[str], policies: list[str],
                     design_params: dict[str, dict[str, list]], compare: bool = False,
                     placements: list[str] | tuple = ()) -> list[Design]:
    """Every design of ``backends``: each backend at every combination of its parameter
    values (``[designs.<backend>]``; ``policies`` the large-folio policies unless its table
    names ``large_folio``; the spec's compare values, with ``compare``, else its defaults),
    once per tagged-page placement of ``placements`` (none: the machine's; a backend that
    steers its tagged pages runs once)."""
    designs = []
    for b in backends:
        spec = backend_spec(b)
        given = dict(design_params.get(b, {}))
        if "large_folio" in spec.defaults() and "large_folio" not in given:
            given["large_folio"] = list(policies)
        for values in spec.axes(given, compare):
            designs += [Design.of(b, values, alloc) for alloc in placements or [""]]
    return list(dict.fromkeys(designs))


def check_shares(shares: Any, data_pages: int, anon_pages: int) -> list[float]:
    """Tagged shares as floats; ValueError (the reason) unless a non-empty list of distinct
    fractions in [0, 1), each within the anonymous memory."""
    if (not isinstance(shares, list) or not shares
            or any(isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s)
                   or not 0 <= s < 1 for s in shares)):
        raise ValueError("expected a list of fractions in [0, 1), e.g. [0.01, 0.1]")
    if len(set(shares)) != len(shares):
        raise ValueError("names a share twice")
    too_big = [s for s in shares if s * data_pages > anon_pages]
    if too_big:
        raise ValueError(f"share {too_big[0]:g} is more than machine.anon holds "
                         f"({format_bytes(anon_pages * PAGE_SIZE)} of "
                         f"{format_bytes(data_pages * PAGE_SIZE)})")
    return [float(s) for s in shares]


def decode_toml(raw: bytes, source: str) -> dict[str, Any]:
    """A TOML document from bytes: UTF-8 (the TOML spec's only encoding) and valid TOML, else
    :class:`ScenarioError` naming ``source``, the line and column, and the byte or token."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ScenarioError(f"{source}: not UTF-8 text: byte {raw[e.start]:#04x} at line "
                            f"{line}, column {col} (TOML files are UTF-8, comments too)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{source}: not valid TOML: {e}") from None
    except (ValueError, RecursionError) as e:   # an integer of thousands of digits, say
        raise ScenarioError(f"{source}: not valid TOML: {_short(str(e), 100)}") from None


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Load a scenario file, or the embedded default when ``path`` is None."""
    if path is None:
        return parse_scenario(tomllib.loads(DEFAULT_TOML), "<default>")
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            raw = fh.read(MAX_SCENARIO_BYTES + 1)
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read scenario: {e.strerror or e}") from None
    if len(raw) > MAX_SCENARIO_BYTES:
        raise ScenarioError(f"{p}: larger than {format_bytes(MAX_SCENARIO_BYTES)}; not a "
                            f"scenario file")
    return parse_scenario(decode_toml(raw, str(p)), str(p))
