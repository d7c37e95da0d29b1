"""Issue 9: bad input never crashes and never lies. Every user error is one line naming the
file, key or option and the value, exit status 2; an interrupt is one line, exit 130; whatever
else escapes is one line, exit 70. Scenario files, machines too big for this computer, command
options, internal errors, --progress without a terminal, SIGINT during start-up."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_scenario_cli import MACHINE, scenario_text

import tagcache.cli as cli
import tagcache.hw.layout as layout_mod
from tagcache.cli import main
from tagcache.errors import ScenarioError, TagcacheError
from tagcache.scenario import load_scenario
from tagcache.units import parse_address, parse_pages, parse_size

ROOT = Path(__file__).resolve().parents[1]
GIB = 1 << 30


def write(tmp_path: Path, content: str | bytes, name: str = "bad.toml") -> Path:
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return p


def refused(tmp_path: Path, content: str | bytes, *words: str) -> str:
    """Load ``content`` as a scenario file: one line starting with the file, holding
    ``words``."""
    p = write(tmp_path, content)
    with pytest.raises(ScenarioError) as ei:
        load_scenario(p)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"{p}: "), msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    return msg


def one_error(capsys, *words: str) -> str:
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tagcache: error: "), err
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"
    return lines[0]


def explicit(regions: str, dram: str = '[["0x80000000", "66MiB"]]') -> str:
    """A small scenario in the explicit form with the given [machine] lines after dram."""
    return scenario_text(f"dram = {dram}\nanon = \"60MiB\"\nmin_free = \"1MiB\"\n{regions}")


REGION = ('[[machine.regions]]\nreg = ["0x84000000", "2MiB"]\n'
          'tagged_memory = ["0x80000000", "64MiB"]\n')


# -- 1. scenario files ------------------------------------------------------------------------

def test_non_utf8_byte_in_a_comment(tmp_path):
    text = scenario_text().encode().replace(b"seed = 3", b"seed = 3  # caf\xe9")
    refused(tmp_path, text, "not UTF-8", "byte 0xe9", "line 2, column 16")


def test_binary_garbage(tmp_path):
    refused(tmp_path, bytes(range(256)) * 4, "not UTF-8")
    refused(tmp_path, b"\x00\x01name = 1\x00", "not valid TOML")


def test_a_huge_file_is_not_read_whole(tmp_path):
    refused(tmp_path, b"# x\n" * (1 << 19), "larger than 1 MiB")


def test_an_integer_of_thousands_of_digits(tmp_path):
    refused(tmp_path, "seed = " + "9" * 5000 + "\n", "not valid TOML")


@pytest.mark.parametrize("case", [
    ("regions = [1, 2]", "machine.regions = [1, 2]", "array of tables"),
    ("regions = []", "machine.regions = []", "at least one"),
    ("regions = 5", "machine.regions = 5", "array of tables"),
])
def test_bad_regions(tmp_path, case):
    line, key, what = case
    refused(tmp_path, explicit(line + "\n"), key, what)


def test_regions_5_without_dram(tmp_path):
    refused(tmp_path, scenario_text("regions = 5\n"), "machine.regions = 5")


@pytest.mark.parametrize("dram, key, what", [
    ('"0x80000000"', "machine.dram = '0x80000000'", "[[base, size], ...]"),
    ("[]", "machine.dram = []", "[[base, size], ...]"),
    ('[["0x80000000"]]', "machine.dram[0]", "expected [base, size]"),
    ('[["0x80000000", "66MiB", "1MiB"]]', "machine.dram[0]", "expected [base, size]"),
    ('["ab"]', "machine.dram[0] = 'ab'", "expected [base, size]"),
    ('[{base = 1, size = 2}]', "machine.dram[0]", "expected [base, size]"),
    ('[["0x80000000", true]]', "machine.dram[0]", "size: expected a size, got a boolean"),
    ('[[1.5, "66MiB"]]', "machine.dram[0]", "base: expected an address, got a number"),
    ('[["-0x1", "66MiB"]]', "machine.dram[0]", "base: not an address"),
    ('[["0x80000000", "66 MeB"]]', "machine.dram[0]", "size: not a size"),
    ('[["0x80000000", nan]]', "machine.dram[0]", "size: expected a size"),
])
def test_dram_entries_of_wrong_shapes_and_types(tmp_path, dram, key, what):
    refused(tmp_path, explicit(REGION, dram), key, what)


def test_dram_without_regions_and_memory_with_regions(tmp_path):
    refused(tmp_path, scenario_text('dram = [["0x80000000", "66MiB"]]\n'), "machine.dram",
            "needs [[machine.regions]]")
    refused(tmp_path, explicit('memory = "64MiB"\n' + REGION), "machine.memory",
            "not with machine.dram")


@pytest.mark.parametrize("region, key, what", [
    ("[machine.regions]\nreg = 1\n", "machine.regions = {'reg': 1}", "array of tables"),
    ('[[machine.regions]]\nreg = ["0x84000000", "2MiB"]\n', "machine.regions[0].tagged_memory",
     "missing"),
    (REGION + "name = 7\n", "machine.regions[0].name = 7", "string"),
    (REGION + 'name = ""\n', "machine.regions[0].name = ''", "string"),
    (REGION + "block_size = -4096\n", "machine.regions[0].block_size", "negative"),
    (REGION + "colour = 1\n", "machine.regions[0].colour", "unknown key"),
    (REGION.replace('"2MiB"]', '"2MiB", 3]'), "machine.regions[0].reg", "[base, size]"),
])
def test_bad_region_tables(tmp_path, region, key, what):
    refused(tmp_path, explicit(region), key, what)


def test_a_plain_region_size_counts_pages_and_the_error_says_so(tmp_path):
    # 0x200000 is 2 MiB in bytes but 8 GiB in pages: refused, with the rule spelled out.
    refused(tmp_path, explicit(REGION.replace('"2MiB"', '"0x200000"')), "machine.regions[0]",
            "8 GiB", "without a unit counts 4 KiB pages")


MIX_KEYS = [("workload", "zipf"), ("tagged", "fork")]


@pytest.mark.parametrize("table, kind", MIX_KEYS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "true", '"1"', "1e300"])
def test_nan_and_inf_in_the_mixes(tmp_path, table, kind, value):
    text = scenario_text() + f"\n[{table}.mix]\n{kind} = {value}\n"
    text = text.replace(f"[{table}]\n", f"[{table}]\n", 1)
    refused(tmp_path, text, f"{table}.mix.{kind}", "weight must be a number")


def test_all_zero_mix(tmp_path):
    refused(tmp_path, scenario_text() + "\n[workload.mix]\nzipf = 0\nscan = 0.0\n",
            "workload.mix", "must not all be zero")


# Every numeric key, and nan / inf / -inf / a boolean / a wrong type in it.
NUMERIC_KEYS = [
    ("", "seed"), ("machine", "anon_folio_order"), ("page_cache", "max_folio_order"),
    ("tagged", "churn_events"), ("files", "count"), ("files", "large_folio_share"),
    ("workload", "events"), ("workload", "zipf_alpha"), ("costs", "page_copy"),
    ("costs", "cmo_page"),
]
SIZE_KEYS = [
    ("machine", "memory"), ("machine", "block_size"), ("machine", "anon"),
    ("machine", "min_free"), ("machine", "memory_limit"), ("machine", "alloc_chunk"),
    ("page_cache", "read_ahead"), ("tagged", "process_size"), ("files", "mean_size"),
    ("workload", "read_size"),
]


def with_key(table: str, key: str, value: str) -> str:
    """The small scenario with ``table.key = value`` (replacing a line that sets it)."""
    text = "".join(ln + "\n" for ln in scenario_text().splitlines()
                   if not ln.startswith(f"{key} ="))     # each key is set once in it
    if not table:
        return f"{key} = {value}\n" + text
    if f"[{table}]" in text:
        return text.replace(f"[{table}]\n", f"[{table}]\n{key} = {value}\n", 1)
    return text + f"\n[{table}]\n{key} = {value}\n"


@pytest.mark.parametrize("table, key", NUMERIC_KEYS + SIZE_KEYS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "true", "[1]", "{a = 1}",
                                   "1979-05-27"])
def test_nan_inf_and_wrong_types_in_every_numeric_key(tmp_path, table, key, value):
    dotted = f"{table}.{key}" if table else key
    refused(tmp_path, with_key(table, key, value), f"{dotted} = ")


@pytest.mark.parametrize("table, key, value, what", [
    ("", "name", "5", "expected a non-empty string"),
    ("", "name", '""', "expected a non-empty string"),
    ("", "name", '"two\\nlines"', "on one line"),
    ("", "name", "[\"a\"]", "expected a non-empty string"),
    ("", "seed", "-1", "between 0 and"),
    ("", "seed", "1.5", "expected an integer"),
    ("machine", "alloc_chunk", "0", "must not be zero"),
    ("machine", "alloc_chunk", '"0KiB"', "must not be zero"),
    ("machine", "alloc_chunk", '"2KiB"', "below one page"),
    ("machine", "alloc_chunk", '"1TiB"', "larger than the machine's data memory"),
    ("machine", "memory_limit", '"100B"', "below one page"),
    ("machine", "memory_limit", "0", "must not be zero"),
    ("machine", "memory_limit", '"32MiB"', "no room for the page cache beside machine.anon"),
    ("machine", "anon", "-1", "must not be negative"),
    ("machine", "anon", '"-1MiB"', "not a size"),
    ("machine", "anon", '"1.5"', "must be whole"),
    ("machine", "anon", '"0x10b"', "ambiguous"),
    ("machine", "min_free", '"6000B"', "not a whole number of 4 KiB pages"),
    ("machine", "memory", "0", "non-zero multiple of 128 KiB"),
    ("machine", "block_size", '"1GiB"', "larger than the tag storage"),
    ("machine", "alloc_policy", "1", "expected one of"),
    ("machine", "alloc_policy", '["random"]', "expected one of"),
    ("page_cache", "read_ahead", '"1TiB"', "larger than the machine's data memory"),
    ("tagged", "process_size", '"1GiB"', "larger than the machine's data memory"),
    ("tagged", "process_size", "0", "must not be zero"),
    ("tagged", "shares", "[0.1, 0.1]", "names a share twice"),
    ("tagged", "shares", "[nan]", "fractions in [0, 1)"),
    ("tagged", "shares", "[inf]", "fractions in [0, 1)"),
    ("tagged", "shares", "[1]", "fractions in [0, 1)"),
    ("tagged", "shares", "[-0.1]", "fractions in [0, 1)"),
    ("tagged", "shares", "[true]", "fractions in [0, 1)"),
    ("tagged", "shares", "[]", "fractions in [0, 1)"),
    ("tagged", "shares", "0.1", "fractions in [0, 1)"),
    ("tagged", "churn_events", "-1", "between 0 and"),
    ("files", "count", "0", "between 1 and"),
    ("files", "count", "100000000", "between 1 and"),
    ("files", "mean_size", "0", "must not be zero"),
    ("workload", "events", "0", "between 1 and"),
    ("workload", "read_size", "0", "must not be zero"),
    ("workload", "read_size", '"1GiB"', "larger than the largest file"),
    ("workload", "zipf_alpha", "-0.5", "between 0 and 5"),
    ("designs", "backends", '["idle", "idle"]', "names one twice"),
    ("designs", "backends", '[["idle"]]', "non-empty list"),
    ("designs", "policies", "[]", "non-empty list"),
    ("costs", "page_copy", "-1", "between 0 and"),
    ("costs", "page_copy", "1e13", "between 0 and"),
])
def test_nonsense_values(tmp_path, table, key, value, what):
    dotted = f"{table}.{key}" if table else key
    refused(tmp_path, with_key(table, key, value), f"{dotted} = ", what)


@pytest.mark.parametrize("text, key", [
    ("machine = 5\n", "machine = 5"),
    ("[[tagged]]\nshares = [0.1]\n", "tagged = [{'shares': [0.1]}]"),
    ("costs = [1]\n", "costs = [1]"),
])
def test_a_section_that_is_not_a_table(tmp_path, text, key):
    refused(tmp_path, text, key, "expected a table")


def test_a_process_larger_than_memory(tmp_path):
    refused(tmp_path, with_key("tagged", "process_size", '"65MiB"'), "tagged.process_size",
            "larger than the machine's data memory")


# -- the units rule -----------------------------------------------------------------------------

def test_one_units_rule():
    # A plain number counts pages, whatever its spelling; a unit counts bytes.
    assert parse_size(16) == parse_size("16") == parse_size("0x10") == 64 << 10
    assert parse_size("0x10 B") == 16 and parse_size("4096B") == 4096
    assert parse_size("64KiB") == parse_size("64K") == parse_size("64 kb") == 64 << 10
    assert parse_size("1.5GiB") == 3 << 29
    assert parse_pages("64KiB") == parse_pages(16) == 16
    # An address is a byte address, as the devicetree writes it.
    assert parse_address("0x80000000") == parse_address(0x80000000) == 2 * GIB
    assert parse_address("2GiB") == 2 * GIB
    for bad in ("1.5", "0x100b", "-4KiB", "", "4 XB", 1.0, True, None, [4], "9" * 30):
        with pytest.raises(ValueError):
            parse_size(bad)
    with pytest.raises(ValueError, match="too large"):
        parse_size(1 << 60)


def test_plain_integers_are_pages_in_the_scenario(tmp_path):
    p = write(tmp_path, scenario_text(MACHINE.replace('"64MiB"', "16384")
                                      .replace('"60MiB"', '"0x3c00"')))
    scn = load_scenario(p)
    assert scn.machine.layout.data_pages == 16384 and scn.anon_pages == 0x3C00


def test_plain_integers_are_pages_in_the_options():
    # --capacity 0x10 and --capacity 16 are the same 16 pages; 0x10 B is less than a page.
    assert cli._capacity("16") == cli._capacity("0x10") == cli._capacity("64KiB") == 16
    with pytest.raises(TagcacheError, match="must be at least 1 page"):
        cli._capacity("0x10 B")
    with pytest.raises(TagcacheError, match="not a whole number of 4 KiB pages"):
        cli._capacity("6000B")


def test_the_example_documents_the_rule():
    head = (ROOT / "examples" / "scenario.toml").read_text()[:1200]
    assert "a plain number counts 4 KiB pages" in head and "counts bytes" in head


# -- 2. machines too big ------------------------------------------------------------------------

@pytest.fixture
def available_4gib(monkeypatch):
    """This computer has 4 GiB available, whatever it really has."""
    monkeypatch.setattr(layout_mod, "mem_available", lambda: 4 * GIB)


def test_a_16_tib_machine_is_refused_with_the_estimate(tmp_path, available_4gib):
    msg = refused(tmp_path, with_key("machine", "memory", '"16TiB"'), "machine.memory = '16TiB'",
        "4,429,185,024 simulated pages", "needs about 165 GiB", "4 GiB available (MemAvailable)")
    assert "40 B a page" in msg


def test_a_16_tib_machine_is_refused_on_this_computer_too(tmp_path):
    # 256 TiB: more than any test machine has, without the fixture.
    refused(tmp_path, with_key("machine", "memory", '"256TiB"'), "simulated pages",
            "(MemAvailable)")


def test_dram_banks_far_apart_are_refused_before_any_allocation(tmp_path, available_4gib):
    msg = refused(tmp_path, explicit(REGION, '[["0x80000000", "66MiB"], '
                                             '["0xF000000000000", "4MiB"]]'),
                  "machine.dram", "holes between DRAM banks", "(MemAvailable)")
    assert "1,030,791,627,776 simulated pages" in msg


def test_banks_beyond_52_bits(tmp_path):
    refused(tmp_path, explicit(REGION, '[["0x80000000", "66MiB"], '
                                       '["0xFFFFFFFFFFFF0000", "4MiB"]]'),
            "dram[1]", "52-bit physical address space")


def test_a_simulation_too_big_for_its_events_or_files(tmp_path, available_4gib):
    refused(tmp_path, with_key("workload", "events", "1000000000"), "events x 2 trace(s)",
            "needs about", "4 GiB available")
    text = with_key("files", "count", "10000000").replace('mean_size = "2MiB"',
                                                          'mean_size = "1GiB"')
    refused(tmp_path, text, "page-cache slots x 64 B", "4 GiB available")


def test_the_default_scenario_fits_in_a_small_budget(monkeypatch):
    monkeypatch.setattr(layout_mod, "mem_available", lambda: 256 << 20)
    load_scenario()                       # about 70 MiB by the estimate


def test_cli_too_big_is_one_line_exit_2(tmp_path, capsys, available_4gib):
    p = write(tmp_path, with_key("machine", "memory", '"16TiB"'))
    assert main(["run", "--config", str(p)]) == 2
    one_error(capsys, str(p), "machine.memory", "needs about", "MemAvailable")


# -- 3. options ---------------------------------------------------------------------------------

@pytest.fixture
def small(tmp_path) -> Path:
    return write(tmp_path, scenario_text(), "small.toml")


HEADER = "# tracer: nop\n#\n"
LINE = "{comm}-{pid} [000] ..... {t:.6f}: {event}\n"


def ftrace(tmp_path: Path, kmem: bool, pfn: int = 0x40000) -> Path:
    """A small ftrace capture: a file read, and with ``kmem`` 'app' allocating a user page."""
    lines, t = [HEADER], 1.0
    events = []
    if kmem:
        events.append(("app", 100, f"mm_page_alloc: page=0000000000000001 pfn=0x{pfn:x} "
                                   "order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE"))
    for i in range(4):
        events.append(("app", 100, f"mm_filemap_add_to_page_cache: dev 254:0 ino 10 "
                                   f"pfn=0x{0x70000 + i:x} ofs={i * 4096} order=0"))
    events.append(("app", 100, "mm_filemap_get_pages: dev=254:0 ino=10 ofs=0-16383"))
    for comm, pid, ev in events:
        lines.append(LINE.format(comm=comm, pid=pid, t=t, event=ev))
        t += 0.001
    p = tmp_path / ("kmem.trace" if kmem else "plain.trace")
    p.write_text("".join(lines))
    return p


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-0.1", "1", "1.5", "lots", ""])
def test_tagged_share_must_be_a_fraction(capsys, value):
    assert main(["run", "--tagged-share", value]) == 2
    one_error(capsys, f"--tagged-share {value}", "fraction in [0, 1)")


def test_tagged_share_beyond_the_anonymous_memory(small, capsys):
    assert main(["run", "--config", str(small), "--tagged-share", "0.99"]) == 2
    one_error(capsys, "--tagged-share 0.99", "more than machine.anon holds")
    assert main(["run", "--config", str(small), "--tagged-share", "0.1",
                 "--tagged-share", "0.1"]) == 2
    one_error(capsys, "names a share twice")


def test_capacity_zero_for_run(tmp_path, small, capsys):
    tr = ftrace(tmp_path, kmem=False)
    for value in ("0", "0KiB", "0x0", "100B"):
        assert main(["run", "--config", str(small), "--trace", str(tr), "--capacity",
                     value]) == 2
        one_error(capsys, f"--capacity {value}", "at least 1 page")
    assert main(["run", "--config", str(small), "--trace", str(tr), "--capacity", "-5"]) == 2
    one_error(capsys, "--capacity -5", "not a size")


def test_validate_capacity_zero_is_refused_not_replaced(tmp_path, capsys):
    mini = ROOT / "tests" / "data" / "captures" / "mini-grep.trace.zst"
    assert main(["validate", str(mini), "--capacity", "0"]) == 2
    one_error(capsys, "--capacity 0", "at least 1 page")
    assert main(["validate", str(mini), "--read-ahead", "-1"]) == 2
    one_error(capsys, "--read-ahead -1", "not a size")


def test_tag_comm_needs_tagged_trace(tmp_path, small, capsys):
    tr = ftrace(tmp_path, kmem=True)
    assert main(["run", "--config", str(small), "--trace", str(tr), "--tag-comm", "app"]) == 2
    one_error(capsys, "--tag-comm needs --tagged trace")
    assert main(["run", "--config", str(small), "--tag-comm", "app"]) == 2
    one_error(capsys, "--tag-comm needs --tagged trace")


def test_tagged_trace_needs_kmem_events(tmp_path, small, capsys):
    tr = ftrace(tmp_path, kmem=False)
    assert main(["run", "--config", str(small), "--trace", str(tr), "--tagged", "trace",
                 "--capacity", "64"]) == 2
    one_error(capsys, "--tagged trace", str(tr), "no kmem mm_page_alloc events",
              "--with-alloc")


def test_tagged_trace_other_mistakes(tmp_path, small, capsys, available_4gib):
    tr = ftrace(tmp_path, kmem=True)
    assert main(["run", "--config", str(small), "--trace", str(tr), "--tagged", "trace",
                 "--tag-comm", "nosuch", "--capacity", "64"]) == 2
    one_error(capsys, "--tag-comm nosuch", "no such task", "its tasks: app")
    assert main(["run", "--config", str(small), "--trace", str(tr), "--tagged", "trace",
                 "--tagged-share", "0.1", "--capacity", "64"]) == 2
    one_error(capsys, "--tagged-share does not go with --tagged trace")
    far = ftrace(tmp_path, kmem=True, pfn=1 << 38)           # a PFN at 1 PiB
    assert main(["run", "--config", str(small), "--trace", str(far), "--tagged", "trace",
                 "--capacity", "64"]) == 2
    one_error(capsys, "--tagged trace", "PFN 0x4000000000", "needs about", "MemAvailable")


# -- 4. internal errors -------------------------------------------------------------------------

def test_an_internal_error_is_one_line_exit_70(small, capsys, monkeypatch):
    def boom(*a, **kw):
        raise RuntimeError("the model fell over\nin two lines")

    monkeypatch.setattr(cli, "run_scenario", boom)
    assert main(["run", "--config", str(small)]) == 70
    out, err = capsys.readouterr()
    assert err == ("tagcache: internal error: RuntimeError: the model fell over in two lines "
                   "(rerun with --debug for the traceback)\n")


def test_debug_prints_the_traceback(small, capsys, monkeypatch):
    def boom(*a, **kw):
        raise KeyError("slot")

    monkeypatch.setattr(cli, "run_scenario", boom)
    assert main(["--debug", "run", "--config", str(small)]) == 70
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "in boom" in err
    assert err.splitlines()[-1] == "tagcache: internal error: KeyError: 'slot'"


def test_user_errors_stay_one_line_with_debug(capsys):
    assert main(["--debug", "run", "--tagged-share", "nan"]) == 2
    one_error(capsys, "--tagged-share nan")


# -- 5. --progress without a terminal -----------------------------------------------------------

PROGRESS = re.compile(r"^tagcache: [\d,]+ / [\d,]+ events \(\d+%\), \d+\.\d s$")


def test_progress_lines_when_stderr_is_not_a_terminal(small, capsys, monkeypatch):
    monkeypatch.setattr(cli, "PROGRESS_INTERVAL_S", 0.0)
    assert main(["run", "--config", str(small), "--no-check", "--progress"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 2 and all(PROGRESS.match(ln) for ln in lines), lines
    assert "(100%)" in lines[-1]


def test_no_progress_by_default_without_a_terminal(small, capsys):
    assert main(["run", "--config", str(small), "--no-check"]) == 0
    assert capsys.readouterr().err == ""


# -- SIGINT during start-up ---------------------------------------------------------------------

def _command() -> list[str]:
    script = Path(sys.executable).parent / "tagcache"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tagcache.cli"]


def _numpy_mapped(pid: int) -> bool:
    """Whether the process has begun importing numpy (its C core is mapped): by then the
    command's own start-up handler is in place (cli.py installs it before any heavy import)."""
    try:
        return "_multiarray_umath" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
@pytest.mark.parametrize("delay", [0.0, 0.03, 0.1, 0.25, 0.6])
def test_sigint_during_start_up_is_one_line_exit_130(small, delay):
    # SIGINT at its default, as from a terminal: a background job of a script (a CI run)
    # inherits it ignored, and the command rightly keeps an ignored SIGINT ignored.
    proc = subprocess.Popen([*_command(), "run", "--config", str(small), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 30
        while not _numpy_mapped(proc.pid) and proc.poll() is None:
            assert time.monotonic() < deadline, "the command never started importing"
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, err) == (130, "tagcache: interrupted\n")


def test_sigint_is_left_alone_when_ignored(small):
    """A command started with SIGINT ignored (a background job of a script) keeps it so."""
    proc = subprocess.Popen([*_command(), "run", "--config", str(small), "--no-progress",
                             "--no-check"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                        signal.SIG_IGN))
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and err == ""


def test_the_command_flushes_everything_before_it_leaves(small):
    """The command ends the process itself once its output is flushed (cli._exit): the JSON
    written to a pipe is whole, the status 0; a reader that goes away early (| head) gets
    status 1 and no traceback."""
    out = subprocess.run([*_command(), "run", "--config", str(small), "--no-progress",
                          "--no-check", "--json", "-"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["results"]
    proc = subprocess.Popen([*_command(), "run", "--config", str(small), "--no-progress",
                             "--no-check", "--json", "-"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()               # the reader is gone before the command writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 1
    assert "Traceback" not in err
