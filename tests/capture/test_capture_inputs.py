"""tagcache record without a capture: bad input, the checks, the choice of cgroup hierarchy,
the state file and recovery from it (on directories made to look like tracefs, a cgroup
hierarchy and sysfs)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tagcache.cli import main
from tagcache.errors import CaptureError
from tagcache.record import PREFIX, find_memory_cgroup, find_tracefs, record, recover, schema, state
from tagcache.record import readahead as readahead_mod
from tagcache.record import run as run_mod
from tagcache.record import tracefs as tracefs_mod
from tagcache.record.util import boot_id, start_time

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
    monkeypatch.setattr(tracefs_mod, "TRACEFS_CANDIDATES", (tmp_path / "a", tmp_path / "b"))
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
    assert schema.exit_code(3) == 3 and schema.exit_code(-2) == 130
    stat1 = {"cache": 100, "inactive_file": 60, "active_file": 40, "pgpgin": 7, "pgpgout": 5,
             "pgmajfault": 2}
    vm0 = {"workingset_refault_file": 10, "pgpgin": 400, "pgpgout": 0}
    vm1 = {"workingset_refault_file": 13, "pgpgin": 800, "pgpgout": 40}
    k = schema.kernel_fields(1, stat1, vm0, vm1, cache_peak=150)
    assert k == {"workingset_refault_file": 3, "pgmajfault": 2, "pgpgin": 7, "pgpgout": 5,
                 "cache": 100, "inactive_file": 60, "active_file": 40, "cache_peak": 150}
    stat2 = {"file": 200, "inactive_file": 50, "active_file": 150, "pgmajfault": 1,
             "workingset_refault_file": 9}
    k = schema.kernel_fields(2, stat2, vm0, vm1, cache_peak=150)
    kib = os.sysconf("SC_PAGE_SIZE") // 1024
    assert k["cache"] == 200 == k["cache_peak"] and k["workingset_refault_file"] == 9
    assert k["pgpgin"] == 400 // kib and k["pgpgout"] == 40 // kib


def test_compression_level() -> None:
    assert run_mod.compression_level(1000) == 19
    assert run_mod.compression_level(10_000_000) < 19


@pytest.mark.parametrize("argv, message", [
    (["record", "a/b", "--limit", "16MiB", "--", "true"], "bad capture name 'a/b'"),
    (["record", "x", "--limit", "16XB", "--", "true"], "--limit 16XB: not a size"),
    (["record", "x", "--limit", "16MiB", "--buffer-size", "lots", "--", "true"],
     "--buffer-size lots: not a size"),
    (["record", "x", "--limit", "16MiB", "--read-ahead", "1000B", "--", "true"],
     "--read-ahead 1000B: not a whole number of KiB"),
    (["record", "x", "--limit", "16MiB", "--read-ahead", "fast", "--", "true"],
     "--read-ahead fast: not a size"),
    (["record", "x", "--limit", "16MiB"], "no command to record"),
    (["record", "x", "--", "true"], "Missing option '--limit'"),
    (["record", "x", "--recover"], "--recover takes no NAME or command"),
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
    for opt, default in (("--limit", "[required, no default"), ("--with-alloc", "[default: off"),
                         ("--out-dir", "[default: the current directory]"),
                         ("--buffer-size", "[default: 128MiB]"),
                         ("--no-drop-caches", "[default: --drop-caches]"),
                         ("--read-ahead", "[default: leave them as they are]"),
                         ("--recover", "[default: off]")):
        assert opt in out and default in out, opt


# --------------------------------------------------------------------------- outputs, before CMD

@pytest.mark.parametrize("case, message", [
    ("missing", "output directory {out} does not exist"),
    ("proc", "--out-dir /proc/x.trace.zst: cannot write in /proc"),
    ("json-dir", "--out-dir {out}/x.json: is a directory"),
    ("trace-dir", "--out-dir {out}/x.trace.zst: is a directory"),
])
def test_unwritable_outputs_refused_before_cmd_runs(case: str, message: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """One line, exit 2, and CMD never ran (it would have made ``ran``)."""
    out = tmp_path / "out"
    out.mkdir()
    if case == "missing":
        out = tmp_path / "nope"
    elif case == "proc":
        out = Path("/proc")
    else:
        (out / ("x.json" if case == "json-dir" else "x.trace.zst")).mkdir()
    ran = tmp_path / "ran"
    assert main(["record", "x", "--limit", "16MiB", "--out-dir", str(out), "--", "touch",
                 str(ran)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tagcache: error: "), err
    assert message.format(out=out) in err
    assert not ran.exists()
    if case != "proc":
        assert not (tmp_path / "nope").exists()
        assert not [p for p in out.glob(".*")] if out.exists() else True  # no probe left


# --------------------------------------------------------------------------- state file, recovery

def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


class _FakeMachine:
    """tracefs instances, a cgroup root, /sys/class/bdi and /sys/dev/block under tmp_path."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.instances = tmp_path / "tracing" / "instances"
        self.cgroups = tmp_path / "cgroup"
        self.bdi = tmp_path / "bdi"
        self.dev_block = tmp_path / "dev-block"
        self.run = tmp_path / "run"
        for d in (self.instances, self.cgroups, self.bdi, self.dev_block):
            d.mkdir(parents=True)
        (self.instances.parent / "events").mkdir()
        (self.cgroups / "cgroup.procs").write_text("")
        monkeypatch.setattr(readahead_mod, "SYSFS_BDI", self.bdi)
        monkeypatch.setattr(readahead_mod, "SYSFS_DEV_BLOCK", self.dev_block)

    def device(self, dev: str, name: str, kb: int) -> None:
        (self.bdi / dev).mkdir()
        (self.bdi / dev / "read_ahead_kb").write_text(f"{kb}\n")
        (self.dev_block / dev).symlink_to(f"../devices/virtual/block/{name}")

    def kb(self, dev: str) -> int:
        return int((self.bdi / dev / "read_ahead_kb").read_text())

    def state(self, pid: int, started: int | None, **changes: object) -> Path:
        """A state file of recorder ``pid`` that set up ``changes``."""
        self.run.mkdir(mode=0o700, exist_ok=True)
        data = {"format": 1, "pid": pid, "start_time": started, "boot_id": boot_id(),
                "name": "x", **changes}
        path = self.run / f"record-{pid}-{started}.json"
        path.write_text(json.dumps(data))
        return path

    def owned(self, pid: int) -> tuple[Path, Path]:
        """An instance and a cgroup named for recorder ``pid``."""
        inst = self.instances / f"{PREFIX}{pid}-abcdef"
        cg = self.cgroups / f"{PREFIX}{pid}-abcdef"
        inst.mkdir()
        cg.mkdir()
        return inst, cg

    def changes(self, inst: Path, cg: Path, **read_ahead: dict) -> dict[str, object]:
        return {"tracefs_instance": str(inst), "cgroup": {"path": str(cg),
                                                          "root": str(self.cgroups)},
                "read_ahead_kb": read_ahead}


def test_recover_restores_a_dead_recorders_changes(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    m = _FakeMachine(tmp_path, monkeypatch)
    m.device("8:0", "sda", 256)       # the recorder set 256 over 128
    m.device("7:0", "loop0", 256)     # also 256 over 128
    m.device("254:0", "vda", 4096)    # the recorder set 256 over 8192, then someone set 4096
    m.device("7:1", "loop9", 256)     # 7:1 was loop1 when the recorder ran: another device
    dead = _dead_pid()
    inst, cg = m.owned(dead)
    tmp = tmp_path / ".x.json.k2j4.tmp"
    tmp.write_text("half")
    path = m.state(dead, 12345, **m.changes(inst, cg), temporaries=[str(tmp)])
    data = json.loads(path.read_text())
    data["read_ahead_kb"] = {
        "7:0": {"device": "loop0", "old": 128, "set": 256},
        "7:1": {"device": "loop1", "old": 128, "set": 256},
        "8:0": {"device": "sda", "old": 128, "set": 256},
        "8:16": {"device": "sdb", "old": 128, "set": 256},   # gone
        "254:0": {"device": "vda", "old": 8192, "set": 256}}
    path.write_text(json.dumps(data))
    said: list[str] = []
    assert recover(said.append, m.run) == 1
    assert said == [f"recovered from a recorder that died (pid {dead}): read_ahead_kb of "
                    f"loop0 sda restored to 128, tracefs instance {inst.name} removed, "
                    f"cgroup {cg} removed, temporary file {tmp} removed"]
    assert (m.kb("7:0"), m.kb("8:0"), m.kb("254:0"), m.kb("7:1")) == (128, 128, 4096, 256)
    assert not inst.exists() and not cg.exists() and not tmp.exists() and not path.exists()
    said.clear()
    assert recover(said.append, m.run) == 0 and said == []


def test_recover_leaves_live_owners_and_what_is_not_named(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """A live recorder's file is not touched; a dead one's instance and cgroup are removed
    only when named in its file with our prefix, right under the named root."""
    m = _FakeMachine(tmp_path, monkeypatch)
    m.device("8:0", "sda", 256)
    me = os.getpid()
    inst, cg = m.owned(me)
    live = m.state(me, start_time(me),
                   **m.changes(inst, cg, **{"8:0": {"device": "sda", "old": 128, "set": 256}}))
    dead = _dead_pid()
    other = m.instances / "someone-else"
    other.mkdir()
    nested = m.cgroups / "parent" / f"{PREFIX}{dead}-x"
    nested.mkdir(parents=True)
    unnamed_inst, unnamed_cg = m.owned(dead)   # of the dead pid, but its file names others
    bad = m.state(dead, 1, tracefs_instance=str(other),
                  cgroup={"path": str(nested), "root": str(m.cgroups)})
    said: list[str] = []
    recover(said.append, m.run)
    assert said == [f"recovered from a recorder that died (pid {dead}): nothing was left "
                    f"changed"]
    assert live.exists() and inst.exists() and cg.exists() and m.kb("8:0") == 256
    assert other.exists() and nested.exists() and unnamed_inst.exists() and unnamed_cg.exists()
    assert not bad.exists()


def test_recover_detects_pid_reuse_and_earlier_boots(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A file naming this (live) pid with another start time is a dead recorder's whose pid
    was reused; a file of an earlier boot names nothing that still exists."""
    m = _FakeMachine(tmp_path, monkeypatch)
    me = os.getpid()
    inst, cg = m.owned(me)
    reused = m.state(me, start_time(me) - 1, **m.changes(inst, cg))
    said: list[str] = []
    recover(said.append, m.run)
    assert said == [f"recovered from a recorder that died (pid {me}): tracefs instance "
                    f"{inst.name} removed, cgroup {cg} removed"]
    assert not reused.exists()
    inst, cg = m.owned(me)
    old = m.state(me, 7, **m.changes(inst, cg))
    data = json.loads(old.read_text())
    old.write_text(json.dumps(data | {"boot_id": "another-boot"}))
    said.clear()
    recover(said.append, m.run)
    assert said == [f"removed the state file of a recorder (pid {me}) of an earlier boot"]
    assert not old.exists() and inst.exists() and cg.exists()


def test_recover_keeps_what_it_cannot_undo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    """An instance that cannot be removed (here: not empty): CaptureError naming it, the
    file kept listing only that; a file that is no state file is left alone and said so."""
    m = _FakeMachine(tmp_path, monkeypatch)
    dead = _dead_pid()
    inst, cg = m.owned(dead)
    (inst / "busy").mkdir()
    path = m.state(dead, 3, **m.changes(inst, cg))
    junk = m.run / "record-1-2.json"
    junk.write_text("{not json")
    said: list[str] = []
    with pytest.raises(CaptureError, match=f"could not remove tracefs instance {inst}"):
        recover(said.append, m.run)
    assert said[0].startswith(f"{junk}: unreadable") and said[0].endswith("; left alone")
    assert said[1] == f"recovered from a recorder that died (pid {dead}): cgroup {cg} removed"
    left = json.loads(path.read_text())
    assert left["tracefs_instance"] == str(inst) and "cgroup" not in left
    assert junk.exists()


def test_state_file_lists_changes_until_undone(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with state.StateFile("cap", run) as sf:
        assert (run.stat().st_mode & 0o777) == 0o700
        data = json.loads(sf.path.read_text())
        assert data == {"format": 1, "pid": os.getpid(), "start_time": start_time(os.getpid()),
                        "boot_id": boot_id(), "name": "cap"}
        assert sf.path.name == f"record-{os.getpid()}-{data['start_time']}.json"
        sf.set("cgroup", {"path": "/x", "root": "/"})
        assert json.loads(sf.path.read_text())["cgroup"] == {"path": "/x", "root": "/"}
        sf.drop("cgroup")
        assert "cgroup" not in json.loads(sf.path.read_text())
    assert list(run.iterdir()) == []
    with pytest.raises(CaptureError, match=r"could not remove x \(what is left is listed in"):
        with state.StateFile("cap", run) as sf:
            sf.set("tracefs_instance", "/i")
            sf.failed("could not remove x")
    assert json.loads(sf.path.read_text())["tracefs_instance"] == "/i"


def test_state_directory_must_be_ours(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(CaptureError, match="is not a directory owned by"):
        state.ensure_dir(tmp_path / "link")
