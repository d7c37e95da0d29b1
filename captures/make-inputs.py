"""Build the inputs of the captures in this directory (deterministic: fixed seeds, fixed dates).

    python3 captures/make-inputs.py /tmp/tagcache-inputs

creates under that directory:
  bench.db      sqlite database, table kv(id INTEGER PRIMARY KEY, v BLOB), 64,000 rows of
                1,000 random bytes (about 63 MiB), page size 4096
  queries.sql   5,000 random point queries "SELECT length(v) FROM kv WHERE id = N;"
  repo/         git repository: 200 commits, each rewriting 6 of 60 files of 16 KiB of random
                hex text, then packed (git gc --aggressive is not used: plain git gc)
  tree/         3,000 small files of 1-8 KiB of random bytes in 30 directories (about 13 MiB)
  bigtree/      medium files of 1-512 KiB of random bytes in 10 directories, 40 MiB in all
  mini/         200 text files of 1-24 KiB (random hex lines) in 4 directories, about 2.4 MiB
                (the small capture of tests/data/captures)
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path


def make_db(d: Path) -> None:
    db = d / "bench.db"
    if db.exists():
        db.unlink()
    rnd = random.Random(1)
    con = sqlite3.connect(db)
    con.execute("PRAGMA page_size = 4096")
    con.execute("CREATE TABLE kv (id INTEGER PRIMARY KEY, v BLOB)")
    con.executemany("INSERT INTO kv VALUES (?, ?)",
                    ((i, rnd.randbytes(1000)) for i in range(64_000)))
    con.commit()
    con.close()
    q = random.Random(2)
    (d / "queries.sql").write_text("".join(
        f"SELECT length(v) FROM kv WHERE id = {q.randrange(64_000)};\n" for _ in range(5_000)))


def make_repo(d: Path) -> None:
    repo = d / "repo"
    subprocess.run(["rm", "-rf", str(repo)], check=True)
    repo.mkdir()
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org")

    def git(*args: str, date: int | None = None) -> None:
        e = env if date is None else dict(env, GIT_AUTHOR_DATE=f"{date} +0000",
                                          GIT_COMMITTER_DATE=f"{date} +0000")
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=e,
                       stdout=subprocess.DEVNULL)

    git("init", "-q", "-b", "main")
    rnd = random.Random(3)
    for c in range(200):
        for f in (range(60) if c == 0 else rnd.sample(range(60), 6)):
            (repo / f"f{f:02d}.txt").write_text("\n".join(
                rnd.randbytes(32).hex() for _ in range(16 * 1024 // 65)) + "\n")
        git("add", "-A")
        git("commit", "-q", "-m", f"commit {c}", date=1_700_000_000 + 60 * c)
    git("gc", "-q")


def make_tree(d: Path) -> None:
    tree = d / "tree"
    subprocess.run(["rm", "-rf", str(tree)], check=True)
    rnd = random.Random(4)
    for i in range(3_000):
        sub = tree / f"d{i % 30:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"file{i:04d}.bin").write_bytes(rnd.randbytes(rnd.randrange(1024, 8193)))


def make_bigtree(d: Path) -> None:
    tree = d / "bigtree"
    subprocess.run(["rm", "-rf", str(tree)], check=True)
    rnd = random.Random(5)
    total, i = 0, 0
    while total < 40 * 1024 * 1024:
        size = min(rnd.randrange(1024, 512 * 1024 + 1), 40 * 1024 * 1024 - total)
        sub = tree / f"d{i % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"file{i:03d}.bin").write_bytes(rnd.randbytes(size))
        total += size
        i += 1


def make_mini(d: Path) -> None:
    tree = d / "mini"
    subprocess.run(["rm", "-rf", str(tree)], check=True)
    rnd = random.Random(6)
    for i in range(200):
        sub = tree / f"d{i % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        lines = rnd.randrange(1024, 24 * 1024 + 1) // 65
        (sub / f"f{i:03d}.txt").write_text(
            "".join(rnd.randbytes(32).hex() + "\n" for _ in range(max(1, lines))))


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/tagcache-inputs")
    out.mkdir(parents=True, exist_ok=True)
    make_db(out)
    make_repo(out)
    make_tree(out)
    make_bigtree(out)
    make_mini(out)
    subprocess.run(["sync"], check=True)
