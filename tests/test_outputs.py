"""Outputs never destroy anything (issue 9, part 1): a device node, a FIFO and a symlink are
what they were after the tool wrote to them; an output that cannot be written is refused
before any work, in one line."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from tagcache import cli
from tagcache.cli import main
from tagcache.outputs import Output, OutputError, check_output, open_output
from tagcache.report import write_json

TINY = """
name = "tiny"
seed = 2
[machine]
memory = "16MiB"
anon = "8MiB"
min_free = "256KiB"
[designs]
backends = ["idle"]
[tagged]
shares = [0.05]
process_size = "1MiB"
churn_events = 4
[files]
count = 3
mean_size = "256KiB"
[workload]
events = 30
"""


@pytest.fixture
def tiny(tmp_path) -> Path:
    p = tmp_path / "tiny.toml"
    p.write_text(TINY)
    return p


def _run_json(tiny: Path, out: str, capsys) -> int:
    rc = main(["run", "--config", str(tiny), "--json", out])
    capsys.readouterr()
    return rc


def test_regular_file_is_replaced_whole_and_keeps_its_mode(tmp_path, tiny, capsys):
    p = tmp_path / "r.json"
    p.write_text("old")
    p.chmod(0o640)
    assert _run_json(tiny, str(p), capsys) == 0
    assert json.loads(p.read_text())["scenario"]["name"] == "tiny"
    assert stat.S_IMODE(p.stat().st_mode) == 0o640
    assert [q.name for q in tmp_path.iterdir() if q.name.startswith(".")] == []  # no temps


def test_device_node_stays_a_device(tmp_path, tiny, capsys):
    dev = tmp_path / "null"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))     # a /dev/null of our own
    before = os.stat(dev)
    assert _run_json(tiny, str(dev), capsys) == 0
    after = os.stat(dev)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert after.st_ino == before.st_ino


def test_fifo_reader_gets_the_json_and_the_fifo_stays(tmp_path, tiny, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    assert _run_json(tiny, str(fifo), capsys) == 0
    reader.join(timeout=60)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert json.loads(got[0])["scenario"]["name"] == "tiny"


def test_symlink_is_followed_not_replaced(tmp_path, tiny, capsys):
    target = tmp_path / "target.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert _run_json(tiny, str(link), capsys) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["scenario"]["name"] == "tiny"


def test_dangling_symlink_creates_its_target(tmp_path):
    target = tmp_path / "new.json"
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_json({"a": 1}, str(link))
    assert link.is_symlink() and json.loads(target.read_text()) == {"a": 1}


def test_symlink_to_standard_output_writes_through(tmp_path, capfd):
    link = tmp_path / "out"
    link.symlink_to("/proc/self/fd/1")
    write_json({"b": 2}, str(link))
    assert json.loads(capfd.readouterr().out) == {"b": 2}
    assert link.is_symlink()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "keep.json"
    p.write_text("old")
    with pytest.raises(RuntimeError), open_output(p) as fh:
        fh.write("half")
        raise RuntimeError("killed")
    assert p.read_text() == "old"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["keep.json"]


def test_output_in_place_for_a_device_commits_nothing(tmp_path):
    dev = tmp_path / "null"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    out = Output(dev)
    assert out.in_place and out.path == dev
    out.commit()
    assert stat.S_ISCHR(os.stat(dev).st_mode)


@pytest.mark.parametrize("path, why", [
    ("", "empty path"),
    ("{tmp}", "is a directory"),
    ("{tmp}/missing/x.json", "does not exist"),
    ("/proc/x.json", "cannot write in /proc"),
    ("/sys/x.json", "cannot write in /sys"),
])
def test_unwritable_output_refused_before_the_run(tmp_path, tiny, capsys, monkeypatch, path,
                                                  why):
    def no_run(*a, **k):
        raise AssertionError("the run started")

    monkeypatch.setattr(cli, "run_scenario", no_run)
    rc = main(["run", "--config", str(tiny), "--json", path.format(tmp=tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("tagcache: error: --json") and why in err
    assert not Path("/proc/x.json").exists() and not Path("/sys/x.json").exists()


def test_check_output_accepts_standard_output_and_devices(tmp_path):
    check_output("-", "--json")
    check_output(None, "--json")
    check_output("/dev/null", "--json")
    with pytest.raises(OutputError, match="is a directory"):
        check_output(tmp_path, "--json")


def test_dev_stdout_redirected_to_a_file_keeps_the_table(tmp_path, tiny):
    import subprocess
    import sys

    out = tmp_path / "both.txt"
    with open(out, "w") as fh:
        r = subprocess.run([sys.executable, "-m", "tagcache", "run", "--config", str(tiny),
                            "--json", "/dev/stdout"], stdout=fh, stderr=subprocess.PIPE,
                           timeout=120)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "page cache and I/O" in text                # the table, printed first, survived
    assert json.loads(text[text.index("\n{") + 1:])["scenario"]["name"] == "tiny"
