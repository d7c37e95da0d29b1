"""Scenarios: the machine, the designs to compare and the workload, from TOML or built in.

Every key is documented in ``examples/scenario.toml``; :data:`DEFAULT_TOML` is the embedded
default that ``tagcache run`` uses without ``--config``. Loading validates everything and
raises :class:`ScenarioError` with one line naming the file, the key and the bad value.

Defaults live in one place: a key left out takes the field default of the dataclass that holds
it (:class:`MachineConfig`, :class:`FileWorkload`, :class:`TaggedWorkload`, :class:`CostTable`),
or, for the keys no dataclass holds, :data:`SCENARIO_DEFAULTS`. :data:`DEFAULT_TOML` spells the
same values out (tests check that it, an empty file and ``examples/scenario.toml`` load alike).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagcache.cleancache.backends.tagstore import POLICIES
from tagcache.costs import CostTable
from tagcache.errors import LayoutError, ScenarioError
from tagcache.hw.layout import MachineLayout, TagRegion, simple_layout
from tagcache.mm.page_alloc import ALLOC_POLICIES
from tagcache.replay import BACKEND_NAMES, Design, MachineConfig
from tagcache.units import PAGE_SIZE, format_bytes, parse_size
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

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, **self.raw}


class _Reader:
    """Typed access to a TOML table that remembers where each value came from."""

    def __init__(self, data: dict[str, Any], source: str, prefix: str = "") -> None:
        self.data, self.source, self.prefix = data, source, prefix
        self.used: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.source}: {self.prefix}{key}"

    def bad(self, key: str, value: Any, want: str) -> ScenarioError:
        return ScenarioError(f"{self.where(key)} = {value!r}: {want}")

    def table(self, key: str) -> _Reader:
        v = self.data.get(key, {})
        self.used.add(key)
        if not isinstance(v, dict):
            raise self.bad(key, v, "expected a table")
        return _Reader(v, self.source, f"{self.prefix}{key}.")

    def get(self, key: str, default: Any) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def size(self, key: str, default: str | int) -> int:
        v = self.get(key, default)
        try:
            return parse_size(v)
        except ValueError as e:
            raise self.bad(key, v, str(e)) from None

    def pages(self, key: str, default: str | int) -> int:
        b = self.size(key, default)
        if b % PAGE_SIZE:
            raise self.bad(key, self.get(key, default), "must be a multiple of 4 KiB")
        return b // PAGE_SIZE

    def number(self, key: str, default: float, lo: float, hi: float, integer: bool = False
               ) -> float:
        v = self.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or (integer and not
                                                                     isinstance(v, int)):
            raise self.bad(key, v, "expected an integer" if integer else "expected a number")
        if not lo <= v <= hi:
            raise self.bad(key, v, f"must be between {lo} and {hi}")
        return v

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        v = self.get(key, default)
        if v not in choices:
            raise self.bad(key, v, f"expected one of {', '.join(choices)}")
        return v

    def check_unknown(self) -> None:
        for k in self.data:
            if k not in self.used:
                raise ScenarioError(f"{self.where(k)}: unknown key")


def _layout(m: _Reader) -> MachineLayout:
    if "regions" not in m.data:
        mem = m.size("memory", SCENARIO_DEFAULTS["machine"]["memory"])
        bs = m.size("block_size", SCENARIO_DEFAULTS["machine"]["block_size"])
        if mem <= 0 or mem % (32 * PAGE_SIZE):
            raise m.bad("memory", m.get("memory", ""), "must be a non-zero multiple of 128 KiB")
        if bs <= 0 or bs % PAGE_SIZE:
            raise m.bad("block_size", m.get("block_size", ""), "not a multiple of 4 KiB")
        try:
            return simple_layout(mem, bs)
        except LayoutError as e:
            raise m.bad("memory", m.get("memory", ""), f"with block_size {format_bytes(bs)}: "
                        f"{e}") from None
    dram = m.get("dram", None)
    regions = m.get("regions", [])
    if not isinstance(dram, list) or not dram:
        raise m.bad("dram", dram, "with [[machine.regions]], give dram = [[base, size], ...]")
    try:
        banks = [(parse_size(b), parse_size(s)) for b, s in dram]
    except (ValueError, TypeError):
        raise m.bad("dram", dram, "expected a list of [base, size] pairs") from None
    out = []
    if not isinstance(regions, list):
        raise m.bad("regions", regions, "expected an array of tables")
    for i, r in enumerate(regions):
        rr = _Reader(r, m.source, f"machine.regions[{i}].")
        name = rr.get("name", f"tags{i}")
        reg, tagged = rr.get("reg", None), rr.get("tagged_memory", None)
        for k, v in (("reg", reg), ("tagged_memory", tagged)):
            if not (isinstance(v, list) and len(v) == 2):
                raise rr.bad(k, v, "expected [base, size]")
        try:
            tb, ts = parse_size(reg[0]), parse_size(reg[1])
            mb, ms = parse_size(tagged[0]), parse_size(tagged[1])
        except ValueError as e:
            raise rr.bad("reg/tagged_memory", [reg, tagged], str(e)) from None
        bs = rr.size("block_size", "4KiB")
        rr.check_unknown()
        out.append(TagRegion(str(name), tb, ts, bs, mb, ms))
    try:
        return MachineLayout(banks, out)
    except LayoutError as e:
        key = f"machine.regions[{e.region}]" if e.region is not None else "machine"
        raise ScenarioError(f"{m.source}: {key}: {e}") from None


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
        if isinstance(w, bool) or not isinstance(w, int | float) or w < 0:
            raise r.bad(f"{key}.{k}", w, "weight must be a number >= 0")
    if sum(v.values()) <= 0:
        raise r.bad(key, v, "weights must not all be zero")
    return tuple((k, float(w)) for k, w in v.items())


def parse_scenario(data: dict[str, Any], source: str) -> Scenario:
    sd, mc, fwd, twd = SCENARIO_DEFAULTS, MachineConfig, FileWorkload, TaggedWorkload
    top = _Reader(data, source)
    name = str(top.get("name", Path(source).stem))
    seed = int(top.number("seed", sd["seed"], 0, 2**32 - 1, integer=True))

    m = top.table("machine")
    layout = _layout(m)
    data_pages = layout.data_pages
    anon_pages = m.pages("anon", sd["machine"]["anon"])
    min_free = m.pages("min_free", mc.min_free_pages * PAGE_SIZE)
    limit = m.get("memory_limit", None)
    limit_pages = mc.memory_limit_pages
    if limit is not None:
        limit_pages = m.pages("memory_limit", limit)
    alloc_policy = m.choice("alloc_policy", mc.alloc_policy, ALLOC_POLICIES)
    chunk = m.pages("alloc_chunk", mc.alloc_chunk_pages * PAGE_SIZE)
    anon_order = int(m.number("anon_folio_order", mc.anon_folio_order, 0, 9, integer=True))
    m.check_unknown()
    if anon_pages + min_free >= data_pages:
        raise m.bad("anon", m.get("anon", ""), "leaves no memory for the page cache")

    p = top.table("page_cache")
    ra_pages = p.pages("read_ahead", mc.ra_pages * PAGE_SIZE)
    max_order = int(p.number("max_folio_order", mc.max_folio_order, 0, 9, integer=True))
    p.check_unknown()

    d = top.table("designs")
    backends = d.get("backends", sd["designs"]["backends"])
    policies = d.get("policies", sd["designs"]["policies"])
    for key, vals, allowed in (("backends", backends, BACKEND_NAMES),
                               ("policies", policies, POLICIES)):
        if not isinstance(vals, list) or not vals or any(v not in allowed for v in vals):
            raise d.bad(key, vals, f"expected a non-empty list drawn from {', '.join(allowed)}")
    d.check_unknown()
    designs = []
    for b in backends:
        if b == "idle":
            designs.append(Design("idle"))
        else:
            designs += [Design(b, pol) for pol in policies]

    t = top.table("tagged")
    shares = t.get("shares", sd["tagged"]["shares"])
    if (not isinstance(shares, list) or not shares
            or any(isinstance(s, bool) or not isinstance(s, int | float) or not 0 <= s < 1
                   for s in shares)):
        raise t.bad("shares", shares, "expected a list of fractions in [0, 1), e.g. [0.01, 0.1]")
    too_big = [s for s in shares if s * data_pages > anon_pages]
    if too_big:
        raise t.bad("shares", shares, f"share {too_big[0]} is more than machine.anon holds")
    tw = TaggedWorkload(
        share=0.0,
        process_pages=max(1, t.pages("process_size", twd.process_pages * PAGE_SIZE)),
        churn_events=int(t.number("churn_events", twd.churn_events, 0, 10**7, integer=True)),
        anon_pages=anon_pages,
        mix=_mix(t, "mix", twd.mix, TAGGED_MIX_KEYS),
    )
    t.check_unknown()

    f = top.table("files")
    w = top.table("workload")
    read_pages = max(1, w.pages("read_size", fwd.read_pages * PAGE_SIZE))
    fw = FileWorkload(
        files=int(f.number("count", fwd.files, 1, 10**7, integer=True)),
        file_size_pages=max(1, f.pages("mean_size", fwd.file_size_pages * PAGE_SIZE)),
        large_folio_share=float(f.number("large_folio_share", fwd.large_folio_share, 0, 1)),
        events=int(w.number("events", fwd.events, 1, 10**9, integer=True)),
        read_pages=read_pages,
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
    return Scenario(name, seed, cfg, anon_pages, designs, [float(s) for s in shares], fw, tw,
                    source, raw)


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Load a scenario file, or the embedded default when ``path`` is None."""
    if path is None:
        return parse_scenario(tomllib.loads(DEFAULT_TOML), "<default>")
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read scenario: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: not valid TOML: {e}") from None
    return parse_scenario(data, str(p))

