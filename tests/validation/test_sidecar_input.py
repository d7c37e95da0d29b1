"""Bad capture sidecars (issue 9, part 2): one line naming the file, the key and the value,
exit status 2; and sidecar page runs follow the trace's compacted page indexes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tagcache.cli import main
from tagcache.errors import TraceError
from tagcache.sidecar import capture_facts, load_sidecar, read_ahead_pages
from tagcache.traces import read_trace

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "tests" / "data" / "captures" / "mini-grep.trace.zst"
BASE = json.loads(MINI.with_name("mini-grep.json").read_text())


def sidecar(tmp_path, data, name="s.json") -> Path:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def error_of(path) -> str:
    with pytest.raises(TraceError) as e:
        load_sidecar(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def changed(key_path: str, value):
    data = copy.deepcopy(BASE)
    *parents, last = key_path.split(".")
    target = data
    for k in parents:
        target = target[k]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return data


def test_the_committed_sidecar_loads():
    assert load_sidecar(MINI.with_name("mini-grep.json"))["name"] == "mini-grep"


@pytest.mark.parametrize("key, value, message", [
    ("folio_orders", [0, 1], "folio_orders = [0, 1]: expected an object"),
    ("folio_orders", {"x": 1}, "folio_orders key = 'x': expected a folio order"),
    ("folio_orders", {"2": "many"}, "folio_orders['2'] = 'many': expected a page count"),
    ("read_ahead_kb", {"254:0": "128"}, "read_ahead_kb['254:0'] = '128': expected KiB"),
    ("read_ahead_kb", {"254:0": -4}, "read_ahead_kb['254:0'] = -4"),
    ("read_ahead_kb", {"254:0": 2**70}, "read_ahead_kb['254:0'] = 1180591620717411303424"),
    ("read_ahead_kb", {"vda": 128}, "read_ahead_kb key = 'vda'"),
    ("read_ahead_kb", "fast", "read_ahead_kb = 'fast': expected an object"),
    ("name", 7, "name = 7: expected a string"),
    ("limit_mib", "16MiB", "limit_mib = '16MiB': expected MiB > 0"),
    ("limit_mib", 0, "limit_mib = 0"),
    ("seconds", -1.5, "seconds = -1.5: expected seconds >= 0"),
    ("seconds", True, "seconds = True"),
    ("trace_overrun_events", 1.5, "trace_overrun_events = 1.5"),
    ("command", ["grep", "-r"], "command = ['grep', '-r']: expected a string"),
    ("exit_code", "0", "exit_code = '0': expected an integer"),
    ("kernel", [], "kernel = []: expected an object"),
    ("kernel.cache_peak", "3088384", "kernel.cache_peak = '3088384': expected a byte"),
    ("kernel.cache_peak", 2**64, f"kernel.cache_peak = {2**64}"),
    ("kernel.pgpgin", KeyError, "kernel.pgpgin = None"),
    ("name", KeyError, "missing field 'name'"),
    ("buffers_growth_peak", "1MiB", "buffers_growth_peak = '1MiB': expected bytes"),
    ("resident_at_start", {"254:0:6863": [[0]]}, "resident_at_start['254:0:6863'] = [[0]]"),
    ("resident_at_start", {"254:0:6863": [[0, -2]]}, "resident_at_start['254:0:6863']"),
    ("resident_at_start", {"254:0:6863": [[2**60, 2**60]]}, "within a file"),
    ("exec_mappings", {"254:0:zz": [[0, 1]]}, "exec_mappings key = '254:0:zz'"),
    ("cow_mappings", [[0, 1]], "cow_mappings = [[0, 1]]: expected an object"),
    ("paths", {"254:0:1": 5}, "paths['254:0:1'] = 5: expected a path string"),
])
def test_bad_field_names_file_key_and_value(tmp_path, key, value, message):
    path = sidecar(tmp_path, changed(key, value))
    assert message in error_of(path)


@pytest.mark.parametrize("data, message", [
    (b"{\"name\": \"caf\xe9\"}", "not UTF-8 text: byte 13 is 0xe9"),
    (b"\xff\xfe{}", "not UTF-8 text: byte 0 is 0xff"),
    ("{\"name\": ", "line 1: not valid JSON"),
    ("", "line 1: not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ("{\"seconds\": NaN}", "NaN is not a JSON number"),
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
    ("{\"x\": " + "9" * 5000 + "}", "not valid JSON"),
])
def test_not_a_sidecar(tmp_path, data, message):
    assert message in error_of(sidecar(tmp_path, data))


def test_unreadable_sidecar(tmp_path):
    assert "cannot read capture sidecar" in error_of(tmp_path)


@pytest.mark.parametrize("key, value", [
    ("folio_orders", [1, 2]),
    ("read_ahead_kb", {"254:0": "lots"}),
    ("kernel.cache_peak", None),
])
def test_cli_validate_and_run_exit_2_with_one_line(tmp_path, capsys, monkeypatch, key, value):
    monkeypatch.setenv("TAGCACHE_CACHE_DIR", str(tmp_path / "cache"))
    trace = tmp_path / "cap.trace.zst"
    trace.write_bytes(MINI.read_bytes())
    side = sidecar(tmp_path, changed(key, value), "cap.json")
    for argv in (["validate", str(trace)],
                 ["run", "--trace", str(trace), "--backend", "idle", "--no-progress"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(side) in err[0] and key.split(".")[-1] in err[0], err
    sidecar(tmp_path, b"\x80not utf-8", "cap.json")
    assert main(["validate", str(trace)]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_fields_read_from_a_dict_are_checked_too():
    """capture_facts and read_ahead_pages take a dict from anywhere: the same checks."""
    trace = read_trace(MINI, use_cache=False)
    with pytest.raises(TraceError, match=r"sidecar of x: read_ahead_kb\['254:0'\] = 'x'"):
        read_ahead_pages(trace, {"name": "x", "read_ahead_kb": {"254:0": "x"}})
    with pytest.raises(TraceError, match=r"folio_orders = \[1\]"):
        capture_facts(trace, {"folio_orders": [1]})


def test_sidecar_runs_follow_the_compacted_pages(tmp_path):
    """A file read at page 0 and at page 2**30: the trace spans a few extents, and the
    sidecar's runs (original page numbers) land on the same pages of the trace."""
    far = 2**30
    lines = "".join(
        f"  cat-1 [000] .... 1.{i}: mm_filemap_get_pages: dev=254:0 ino=77 ofs={a}-{a + 8191}\n"
        for i, a in enumerate((0, far * 4096)))
    path = tmp_path / "far.trace"
    path.write_text(lines)
    trace = read_trace(path, use_cache=False)
    assert trace.files.span_pages[0] < 20 * 512
    (near_page, far_page) = trace.arg1.tolist()
    assert near_page == 0
    meta = {"resident_at_start": {"254:0:77": [[0, 1], [far, 2], [far + 1024, 4], [2**20, 3]]},
            "exec_mappings": {"254:0:77": [[far - 2, 6]]}}
    facts = capture_facts(trace, meta, mappings=True)
    # pages within 4 extents (8 MiB) of a read keep their place; page 2**20 is far from both
    assert facts.resident == {0: [(0, 1), (far_page, 2), (far_page + 1024, 4)]}
    assert facts.exec_vmas == {0: [(far_page - 2, far_page + 4)]}
