"""scenario.py and cli.py: bad scenario files give one line naming the file and the key; a small
scenario runs end to end and its JSON carries every metric of DESIGN.md section 4."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tagcache.cli import main
from tagcache.costs import CostTable
from tagcache.engine.rules import RULES
from tagcache.errors import ScenarioError
from tagcache.replay import CLEANCACHE_DEPENDENT
from tagcache.scenario import load_scenario

MACHINE = """\
memory = "64MiB"
anon = "60MiB"
min_free = "1MiB"
alloc_chunk = "64KiB"
"""

REGIONS = """\
dram = [["0x80000000", "66MiB"]]
anon = "60MiB"
min_free = "1MiB"
[[machine.regions]]
name = "tags0"
reg = ["0x84000000", "{tag_size}"]
tagged_memory = ["0x80000000", "64MiB"]
"""

TEMPLATE = """\
name = "small"
seed = 3

[machine]
{machine}
[page_cache]
read_ahead = "128KiB"
max_folio_order = 2

[designs]
backends = ["idle", "cleancache"]
policies = ["whole", "split"]

[tagged]
shares = {shares}
process_size = "1MiB"
churn_events = 10

[files]
count = 6
mean_size = "2MiB"
large_folio_share = 0.5

[workload]
events = 150
read_size = "32KiB"
"""


def scenario_text(machine: str = MACHINE, shares: str = "[0.05]") -> str:
    return TEMPLATE.format(machine=machine, shares=shares)


@pytest.fixture
def small(tmp_path) -> Path:
    """A tiny scenario: 64 MiB of data memory, 60 MiB of it anonymous, 5% tagged, six files of
    about 2 MiB under memory pressure, 150 file operations."""
    p = tmp_path / "small.toml"
    p.write_text(scenario_text())
    return p


def write(tmp_path, text: str, name: str = "bad.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# -- loading ------------------------------------------------------------------------------------

def test_small_scenario_loads(small):
    scn = load_scenario(small)
    assert scn.name == "small" and scn.seed == 3
    assert scn.machine.layout.data_pages == 16384
    assert scn.anon_pages == 60 * 256 and scn.machine.min_free_pages == 256
    assert scn.shares == [0.05]
    assert [(d.backend, d.policy) for d in scn.designs] == [
        ("idle", "whole"), ("cleancache", "whole"), ("cleancache", "split")]
    # The tagged share comes out of the anonymous memory, which the generator fills whole.
    assert scn.tagged.anon_pages == 60 * 256 and scn.tagged.process_pages == 256


def test_explicit_regions_load(tmp_path):
    scn = load_scenario(write(tmp_path, scenario_text(REGIONS.format(tag_size="2MiB")),
                              "regions.toml"))
    layout = scn.machine.layout
    assert [r.name for r in layout.regions] == ["tags0"]
    assert layout.nr_tag_pages == 512 and layout.data_pages == 16384


def test_default_scenario_loads():
    scn = load_scenario()
    assert scn.source == "<default>" and len(scn.designs) == 3


BAD = {
    "unknown key": (scenario_text(MACHINE + "bogus = 1\n"), "machine.bogus", "unknown key"),
    "bad size": (scenario_text(MACHINE.replace('"60MiB"', '"60 MeB"')), "machine.anon",
                 "60 MeB"),
    "share > anon": (scenario_text(shares="[0.05, 0.99]"), "tagged.shares",
                     "more than machine.anon"),
    "region reg not a pair": (scenario_text(REGIONS.format(tag_size="2MiB").replace(
        'reg = ["0x84000000", "2MiB"]', 'reg = "0x84000000"')), "machine.regions[0].reg",
        "[base, size]"),
    "region tag size": (scenario_text(REGIONS.format(tag_size="1MiB")), "'tags0'",
                        "not exactly 1/32"),
    "anon fills memory": (scenario_text(MACHINE.replace('"60MiB"', '"64MiB"')), "machine.anon",
                          "no memory for the page cache"),
    "unknown cost": (scenario_text() + "\n[costs]\nfoo = 1\n", "costs.foo", "unknown cost"),
    "bad policy": (scenario_text().replace('["whole", "split"]', '["halve"]'),
                   "designs.policies", "halve"),
    "not toml": (scenario_text() + "\n[[[\n", "not valid TOML", "line"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_scenario_is_one_line_naming_file_and_key(tmp_path, case):
    text, key, what = BAD[case]
    p = write(tmp_path, text)
    with pytest.raises(ScenarioError) as ei:
        load_scenario(p)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}: ")
    assert key in msg and what in msg


def test_memory_not_a_multiple_of_the_block_unit_names_file_and_key(tmp_path):
    # 64 MiB + 128 KiB of data needs 2 MiB + 4 KiB of tags: not a whole number of 8 KiB blocks.
    text = scenario_text(MACHINE.replace('"64MiB"', '"65664KiB"') + 'block_size = "8KiB"\n')
    p = write(tmp_path, text)
    with pytest.raises(ScenarioError) as ei:
        load_scenario(p)
    assert str(ei.value).startswith(f"{p}: machine.")


def test_bad_region_names_its_key(tmp_path):
    p = write(tmp_path, scenario_text(REGIONS.format(tag_size="1MiB")))
    with pytest.raises(ScenarioError) as ei:
        load_scenario(p)
    assert "machine.regions[0]" in str(ei.value)


# -- the command line ---------------------------------------------------------------------------

def one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tagcache: error: ")
    assert out == ""
    return lines[0]


@pytest.mark.parametrize("case", ["unknown key", "bad size", "share > anon", "region tag size"])
def test_cli_bad_config(tmp_path, capsys, case):
    p = write(tmp_path, BAD[case][0])
    assert main(["run", "--config", str(p)]) == 2
    line = one_error_line(capsys)
    assert str(p) in line and BAD[case][1] in line


def test_cli_missing_config(tmp_path, capsys):
    p = tmp_path / "nope.toml"
    assert main(["run", "--config", str(p)]) == 2
    line = one_error_line(capsys)
    assert str(p) in line


def test_cli_unknown_option(capsys):
    assert main(["run", "--frobnicate"]) == 2
    line = one_error_line(capsys)
    assert "--frobnicate" in line


def test_cli_json_into_missing_directory(small, tmp_path, capsys):
    assert main(["run", "--config", str(small), "--json", str(tmp_path / "no" / "r.json")]) == 2
    assert "does not exist" in one_error_line(capsys)


def test_cli_help_and_version(capsys):
    assert main(["run", "--help"]) == 0
    assert "--config" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert "0.1.0" in capsys.readouterr().out


PAGE_CACHE = {"accesses", "hits", "misses", "insertions", "refaults", "evictions",
              "cleancache_hits", "effective_hit_ratio", "hits_lost_to_tagging"}
CLEANCACHE = {"stored", "skipped", "restored", "missed", "invalidated", "reclaimed", "cached",
              "collateral", "evicted", "hit_ratio", "restored_per_stored"}
TAG_STORAGE = {"total_tag_pages", "reserved_now", "reserved_peak", "reserved_avg",
               "cache_pages_now", "cache_pages_peak", "cache_mib_avg", "cache_mib_peak",
               "achieved_tagged_share", "reservations", "reservation_failures",
               "reservation_latency_ns", "dropped_per_claim", "cmo_pages",
               "metadata_bytes_per_tag_page", "simulator_bytes_per_tag_page"}
IO = {"read_requests", "pages_read", "requests_avoided", "reads_avoided", "read_time_ns",
      "write_time_ns", "io_time_saved_ns", "cleancache_cost_ns", "net_time_saved_ns",
      "oom_events", "extra_pages_read_vs_untagged"}


@pytest.fixture
def small_json(small, capsys) -> dict:
    assert main(["run", "--config", str(small), "--json", "-"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return json.loads(out)                           # JSON alone on standard output


def test_cli_json_to_stdout(small_json):
    d = small_json
    assert d["scenario"]["name"] == "small"
    assert {"events", "wall_s", "events_per_s"} <= set(d["perf"])
    results = d["results"]
    assert [(r["backend"], r["policy"]["large_folio"]) for r in results] == [
        ("idle", None), ("cleancache", "whole"), ("cleancache", "split")]
    baselines = d["baselines"]                       # every design at 0% tagged, not rows
    assert [(r["backend"], r["tagged_share"]) for r in baselines] == [
        ("idle", 0.0), ("cleancache", 0.0), ("cleancache", 0.0)]
    assert d["perf"]["events"] == sum(r["perf"]["events"] for r in results + baselines) > 0
    for r in results:
        assert {"backend", "policy", "tagged_share", "page_cache", "cleancache", "tag_storage",
                "io", "invariants"} <= set(r)
        assert r["tagged_share"] == 0.05
        assert PAGE_CACHE <= set(r["page_cache"])
        assert CLEANCACHE <= set(r["cleancache"])
        assert TAG_STORAGE <= set(r["tag_storage"])
        lat = r["tag_storage"]["reservation_latency_ns"]
        assert set(lat) == {"all", "claiming"}
        assert set(lat["claiming"]) == {"calls", "p50", "p99", "p99.9", "max"}
        assert IO <= set(r["io"])
        assert r["invariants"] == dict.fromkeys(RULES, 0)
        assert r["tag_storage"]["total_tag_pages"] == 512
        assert r["tag_storage"]["reservation_failures"] == 0


def test_cli_json_numbers_agree(small_json):
    idle, whole, split = small_json["results"]
    # Cleancache never changes what the page cache does, only where misses are served from
    # (the hits lost to tagging count cleancache restores too).
    def pc(r):
        return {k: v for k, v in r["page_cache"].items() if k not in CLEANCACHE_DEPENDENT}

    assert pc(idle) == pc(whole) == pc(split)
    assert idle["page_cache"]["evictions"] > 0
    for r in (whole, split):
        cc, io = r["cleancache"], r["io"]
        assert cc["stored"] == r["page_cache"]["evictions"]
        assert cc["restored"] > 0
        assert io["reads_avoided"] == cc["restored"]
        assert io["pages_read"] + cc["restored"] == idle["io"]["pages_read"]
        c = CostTable()
        assert io["io_time_saved_ns"] == (io["requests_avoided"] * c.disk_read_request
                                          + cc["restored"] * c.disk_read_page)
        assert io["cleancache_cost_ns"] == ((cc["stored"] + cc["restored"]) * c.page_copy
                                            + r["tag_storage"]["cmo_pages"] * c.cmo_page
                                            + cc["reclaimed"] * c.cleancache_drop)
        assert cc["hit_ratio"] == pytest.approx(cc["restored"] / (cc["restored"]
                                                                   + cc["missed"]))
        assert cc["cached"] == r["tag_storage"]["cache_pages_now"]
        assert r["tag_storage"]["metadata_bytes_per_tag_page"] > 0
    assert split["cleancache"]["collateral"] == 0
    assert idle["cleancache"]["stored"] == 0 and idle["tag_storage"]["cmo_pages"] == 0
    # The tagged workload is the same in every design.
    for k in ("reserved_peak", "reserved_now", "reservations"):
        assert idle["tag_storage"][k] == whole["tag_storage"][k] == split["tag_storage"][k]


def test_cli_json_to_a_file_is_atomic(small, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "results.json"
    assert main(["run", "--config", str(small), "--json", str(target)]) == 0
    out, err = capsys.readouterr()
    assert "cleancache, split folio" in out            # the table still goes to stdout
    assert err == ""
    assert [p.name for p in out_dir.iterdir()] == ["results.json"]   # no temp file left
    d = json.loads(target.read_text())
    assert len(d["results"]) == 3
    # A second run replaces the file in place, again leaving nothing behind.
    assert main(["run", "--config", str(small), "--json", str(target), "--no-check"]) == 0
    capsys.readouterr()
    assert [p.name for p in out_dir.iterdir()] == ["results.json"]
    assert json.loads(target.read_text())["results"][0]["invariants"] == {}


def test_cli_json_file_has_ordinary_permissions(small, tmp_path, capsys):
    target = tmp_path / "results.json"
    old = os.umask(0o022)
    try:
        assert main(["run", "--config", str(small), "--json", str(target), "--no-check"]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
