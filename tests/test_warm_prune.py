"""The compiled-code folders of other versions: each import marks its own folder used, and
``python -m tagcache.engine.warm`` (run by make) removes the ones unused for a month, and
nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tagcache.engine.warm import UNUSED_DAYS, prune_caches

DAY = 86400


def _folder(path, age_days, size=1000):
    path.mkdir(parents=True)
    (path / "index.nbi").write_bytes(b"x" * size)
    t = time.time() - age_days * DAY
    os.utime(path, (t, t))
    return path


def test_only_other_versions_unused_for_a_month_are_removed(tmp_path):
    root = tmp_path / "tagcache" / "numba"
    current = _folder(root / "0123456789abcdef", 400)        # old, but this version's
    old = _folder(root / "fedcba9876543210", UNUSED_DAYS + 1, size=5000)
    recent = _folder(root / "00112233445566aa", UNUSED_DAYS - 1)
    mine = _folder(root / "notes", 400)                       # not a folder of ours
    other = _folder(tmp_path / "elsewhere" / "aaaaaaaaaaaaaaaa", 400)
    link = root / "bbbbbbbbbbbbbbbb"
    link.symlink_to(other)                                     # never followed nor removed
    removed = prune_caches(current)
    assert removed == [(old, 5000)]
    assert not old.exists()
    assert current.exists() and recent.exists() and mine.exists()
    assert link.is_symlink() and other.exists() and (other / "index.nbi").exists()


def test_a_cache_folder_the_user_chose_is_left_alone(tmp_path):
    current = _folder(tmp_path / "cache" / "mine", 0)
    old = _folder(tmp_path / "cache" / "fedcba9876543210", 400)
    assert prune_caches(current) == []
    assert old.exists()


def test_importing_the_package_marks_its_folder_used(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    code = "import os, tagcache; print(os.environ['NUMBA_CACHE_DIR'])"

    def folder():
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True).stdout.strip()

    here = folder()
    assert here.startswith(str(tmp_path / "tagcache" / "numba"))
    os.makedirs(here)
    t = time.time() - 400 * DAY
    os.utime(here, (t, t))
    assert folder() == here
    assert os.stat(here).st_mtime > time.time() - DAY


def test_the_suite_runs_from_the_compiled_code_folder():
    """Nothing loaded before the tests imports numba ahead of tagcache (a pytest
    ``filterwarnings`` naming a numba warning class once did): otherwise numba caches in the
    source tree and the suite compiles the engine again instead of using ``make``'s."""
    from numba.core import config

    assert config.CACHE_DIR and config.CACHE_DIR == os.environ.get("NUMBA_CACHE_DIR")
