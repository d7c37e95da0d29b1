"""One source of scenario defaults: the embedded default, an empty file, examples/scenario.toml
and the dataclasses' field defaults all describe the same scenario, key by key."""

from __future__ import annotations

import tomllib
from dataclasses import fields, replace
from pathlib import Path

import pytest

from tagcache.costs import CostTable
from tagcache.replay import MachineConfig
from tagcache.scenario import (
    DEFAULT_TOML,
    SCENARIO_DEFAULTS,
    Scenario,
    load_scenario,
    parse_scenario,
)
from tagcache.workloads.generators import FileWorkload, TaggedWorkload

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "scenario.toml"


def differences(a: Scenario, b: Scenario) -> list[str]:
    """Every parsed field where ``a`` and ``b`` differ, named ``group.field``; the name, the
    source and the raw text are not compared, costs are compared with CostTable()'s defaults
    elsewhere."""
    out = []
    for group in ("seed", "anon_pages", "designs", "shares"):
        if getattr(a, group) != getattr(b, group):
            out.append(f"{group}: {getattr(a, group)!r} != {getattr(b, group)!r}")
    for group in ("machine", "files", "tagged"):
        x, y = getattr(a, group), getattr(b, group)
        for f in fields(x):
            if f.name == "costs":
                continue
            if getattr(x, f.name) != getattr(y, f.name):
                out.append(f"{group}.{f.name}: {getattr(x, f.name)!r} != {getattr(y, f.name)!r}")
    return out


@pytest.fixture(scope="module")
def default() -> Scenario:
    return load_scenario()


def test_example_file_equals_the_embedded_default(default):
    example = load_scenario(EXAMPLE)
    assert differences(example, default) == []
    assert example.machine.costs == default.machine.costs == CostTable()


def test_empty_file_gives_the_embedded_default(default):
    empty = parse_scenario({}, "empty.toml")
    assert differences(empty, default) == []
    assert empty.machine.costs == CostTable()
    assert empty.name == "empty" and default.name == "default"


def test_defaults_are_the_dataclasses_field_defaults(default):
    """The parser's fallbacks are the dataclasses' own defaults, plus SCENARIO_DEFAULTS for
    the keys no dataclass holds: nothing else can disagree."""
    assert default.machine == MachineConfig(layout=default.machine.layout, seed=default.seed)
    assert default.files == FileWorkload()
    assert default.tagged == replace(TaggedWorkload(), share=0.0,
                                     anon_pages=default.anon_pages)
    assert default.seed == SCENARIO_DEFAULTS["seed"]
    assert default.shares == SCENARIO_DEFAULTS["tagged"]["shares"]


def test_default_toml_spells_out_only_known_keys():
    data = tomllib.loads(DEFAULT_TOML)
    assert parse_scenario(data, "<default>").raw == {k: v for k, v in data.items()
                                                     if k != "name"}
    for table, keys in SCENARIO_DEFAULTS.items():
        if isinstance(keys, dict):
            for k, v in keys.items():
                assert data[table][k] == v, f"{table}.{k}"
