"""tagcache record without a capture: bad input, the checks, the choice of cgroup hierarchy."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tagcache.cli import main
from tagcache.errors import CaptureError
from tagcache.workloads import capture
from tagcache.workloads.capture import find_memory_cgroup, find_tracefs, record

MIB = 1 << 20


@pytest.mark.parametrize("name", ["a/b", "", ".", "..", "x/"])
def test_bad_name(name: str, tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="bad capture name"):
        record(name, 16 * MIB, ["true"], out_dir=tmp_path)


def test_empty_command(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no command to record"):
        record("x", 16 * MIB, [], out_dir=tmp_path)


def test_unknown_command_hints_at_options(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match=r"command not found: --wit-alloc \(options"):
        record("x", 16 * MIB, ["--wit-alloc", "true"], out_dir=tmp_path)


def test_small_limit_and_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="too small"):
        record("x", 4096, ["true"], out_dir=tmp_path)
    with pytest.raises(CaptureError, match="does not exist"):
        record("x", 16 * MIB, ["true"], out_dir=tmp_path / "nope")


def test_not_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(CaptureError, match="must run as root"):
        record("x", 16 * MIB, ["true"], out_dir=tmp_path)


def test_no_tracefs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(capture, "TRACEFS_CANDIDATES", (tmp_path / "a", tmp_path / "b"))
    with pytest.raises(CaptureError, match=r"no tracefs mounted at .*/a or .*/b; mount it"):
        record("x", 16 * MIB, ["true"], out_dir=tmp_path)
    (tmp_path / "b" / "instances").mkdir(parents=True)
    (tmp_path / "b" / "events").mkdir()
    assert find_tracefs() == tmp_path / "b"


def _cgroup_dir(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_memory_cgroup_choice(tmp_path: Path) -> None:
    v2_mem = _cgroup_dir(tmp_path / "v2mem", {"cgroup.controllers": "cpu io memory pids\n",
                                               "cgroup.subtree_control": "cpu memory\n"})
    v2_off = _cgroup_dir(tmp_path / "v2off", {"cgroup.controllers": "cpu memory\n",
                                               "cgroup.subtree_control": "cpu\n"})
    v2_none = _cgroup_dir(tmp_path / "v2none", {"cgroup.controllers": "",
                                                 "cgroup.subtree_control": ""})
    v1 = _cgroup_dir(tmp_path / "memory", {"memory.limit_in_bytes": "0\n"})
    cg2 = "cgroup2 {} cgroup2 rw,relatime 0 0\n"
    cg1 = "cgroup {} cgroup rw,relatime,memory 0 0\n"
    # this machine's layout: cgroup2 without the memory controller, v1 memory
    assert find_memory_cgroup(cg2.format(v2_none) + cg1.format(v1)) == (1, v1)
    assert find_memory_cgroup(cg1.format(v1) + cg2.format(v2_mem)) == (2, v2_mem)
    assert find_memory_cgroup(cg2.format(v2_off) + cg1.format(v1)) == (1, v1)
    with pytest.raises(CaptureError, match=r"not enabled .* \+memory"):
        find_memory_cgroup(cg2.format(v2_off))
    with pytest.raises(CaptureError, match="no memory cgroup"):
        find_memory_cgroup(cg2.format(v2_none) + "proc /proc proc rw 0 0\n")


def test_mount_paths_with_spaces(tmp_path: Path) -> None:
    v1 = _cgroup_dir(tmp_path / "mem ory", {"memory.limit_in_bytes": "0\n"})
    text = f"cgroup {str(v1).replace(' ', chr(92) + '040')} cgroup rw,memory 0 0\n"
    assert find_memory_cgroup(text) == (1, v1)


def test_exit_code_and_kernel_fields() -> None:
    assert capture._exit_code(3) == 3 and capture._exit_code(-2) == 130
    stat1 = {"cache": 100, "inactive_file": 60, "active_file": 40, "pgpgin": 7, "pgpgout": 5,
             "pgmajfault": 2}
    vm0 = {"workingset_refault_file": 10, "pgpgin": 400, "pgpgout": 0}
    vm1 = {"workingset_refault_file": 13, "pgpgin": 800, "pgpgout": 40}
    k = capture._kernel_fields(1, stat1, vm0, vm1, cache_peak=150)
    assert k == {"workingset_refault_file": 3, "pgmajfault": 2, "pgpgin": 7, "pgpgout": 5,
                 "cache": 100, "inactive_file": 60, "active_file": 40, "cache_peak": 150}
    stat2 = {"file": 200, "inactive_file": 50, "active_file": 150, "pgmajfault": 1,
             "workingset_refault_file": 9}
    k = capture._kernel_fields(2, stat2, vm0, vm1, cache_peak=150)
    kib = capture.PAGE_SIZE // 1024
    assert k["cache"] == 200 == k["cache_peak"] and k["workingset_refault_file"] == 9
    assert k["pgpgin"] == 400 // kib and k["pgpgout"] == 40 // kib


def test_remove_stale_only_dead_owners(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    tfs, cg = tmp_path / "tracefs", tmp_path / "cg"
    (tfs / "instances").mkdir(parents=True)
    cg.mkdir()
    names = [f"{capture.PREFIX}{dead.pid}-abc", f"{capture.PREFIX}{os.getppid()}-def",
             "someone-else"]
    for n in names:
        (tfs / "instances" / n).mkdir()
        (cg / n).mkdir()
    removed = capture.remove_stale(tfs, cg)
    assert sorted(removed) == sorted([tfs / "instances" / names[0], cg / names[0]])
    assert sorted(p.name for p in cg.iterdir()) == sorted(names[1:])


def test_compression_level() -> None:
    assert capture._compression_level(1000) == 19
    assert capture._compression_level(10_000_000) < 19


@pytest.mark.parametrize("argv, message", [
    (["record", "a/b", "--limit", "16MiB", "--", "true"], "bad capture name 'a/b'"),
    (["record", "x", "--limit", "16XB", "--", "true"], "--limit 16XB: not a size"),
    (["record", "x", "--limit", "16MiB", "--buffer-size", "lots", "--", "true"],
     "--buffer-size lots: not a size"),
    (["record", "x", "--limit", "16MiB", "--read-ahead", "1000", "--", "true"],
     "--read-ahead 1000: not a whole number of KiB"),
    (["record", "x", "--limit", "16MiB", "--read-ahead", "fast", "--", "true"],
     "--read-ahead fast: not a size"),
    (["record", "x", "--limit", "16MiB"], "no command to record"),
    (["record", "x", "--", "true"], "Missing option '--limit'"),
])
def test_cli_bad_input_is_one_line_exit_2(argv: list[str], message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv[:2], "--out-dir", str(tmp_path), *argv[2:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tagcache: error: ") and message in err


def test_cli_not_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["record", "x", "--limit", "16MiB", "--out-dir", str(tmp_path), "--",
                 "true"]) == 2
    assert capsys.readouterr().err == ("tagcache: error: tagcache record must run as root (it "
                                       "uses tracefs, a memory cgroup and drop_caches)\n")


def test_cli_help_documents_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["record", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for opt, default in (("--limit", "[required]"), ("--with-alloc", "[default: off"),
                         ("--out-dir", "[default: the current directory]"),
                         ("--buffer-size", "[default: 128MiB]"),
                         ("--no-drop-caches", "[default: --drop-caches]"),
                         ("--read-ahead", "[default: leave them as they are]")):
        assert opt in out and default in out, opt
