"""Build the inputs of the capture corpus (captures/corpus/; see README.md, "The corpus").

    python3 captures/make-corpus-inputs.py [/tmp/tagcache-corpus-inputs]

Deterministic where it generates (fixed seeds, fixed commit dates); copies of files installed
on this machine where a class needs a real tree (the Python standard library, a few packages
of site-packages). Needs python3, git, gcc/make (only to check the C project builds),
ImageMagick's real convert (`apt-get install imagemagick`: /usr/bin/convert; the stand-in at
/usr/local/bin/convert cannot resize) and, once, PyPI for the wheels of pip-install (pip
download, kept in the input dir afterwards). Each part is made only if missing, so a second
run is quick; delete a part to make it again.

Creates under the input dir (about 500 MiB in all):
  python-path       the interpreter the Python classes run (PYTHON below), one line
  corpus.db         sqlite database, table kv(id INTEGER PRIMARY KEY, v BLOB): 163,840 rows of
                    1,000 random bytes, page size 4096, about 162 MiB
  sqlite-random.sql 12,000 point queries "SELECT length(v) FROM kv WHERE id = N;", N Zipf-like
                    (s = 0.8 over ranks 1..163,840, ranks mapped to ids by a fixed shuffle)
  sqlite-mmap.sql   PRAGMA mmap_size=268435456; then 750 queries of the same kind (seed 12)
  sqlite-heap.py    4 query phases (python3 + sqlite3 module) of 1,200 Zipf-like queries each
                    (s = 1.0, sqlite-heap-keys.txt), the heap grown and shrunk between them
                    (8, 24, 8, 20 MiB of bytearrays written page by page)
  stdlib/           copy of PYTHON's standard library (lib/python3.11 without site-packages
                    and __pycache__)
  library/          copy of numpy, numpy.libs, scipy.libs and cryptography from PYTHON's
                    site-packages (117 MiB, 1,699 files)
  repo.git          bare git repository: 3 branches, 950 commits of generated source-like text
                    (fast-import, fixed dates), repacked (-a -d -f): one 8.8 MiB pack
  cproj/            C project: 40 .c files and main.c, 12 headers, a Makefile (gcc -O2, one
                    program)
  xz-set/           16 files, 32 MiB: generated text, logs, CSV and some random bytes
  smallfiles/       3,000 text files of 1-8 KiB in 100 directories two levels deep
  wheels/           requests, urllib3, idna, certifi, charset-normalizer, six (pinned wheels)
  imports.py        imports 76 standard modules (282 modules loaded in all)
  sort-input.txt    16.7 MiB, 440,000 text lines (words and numbers): sort -S 32M spills it to
                    two temporary files
  sort-tmp/         sort's temporary directory (-T)
  images/           16 PNG images, 1600x1200, 8-bit, ImageMagick plasma fractals (fixed seeds)
  pip-target/       (made by record-corpus.sh: pip-install's --target, removed before each run)
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

PYENV_PYTHON = "/root/.pyenv/versions/3.11.7/bin/python3.11"
PYTHON = os.environ.get("CORPUS_PYTHON") or (
    PYENV_PYTHON if os.path.exists(PYENV_PYTHON) else "/usr/bin/python3")
CONVERT = "/usr/bin/convert"

DB_ROWS = 163_840
WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi "
         "rho sigma tau upsilon phi chi psi omega read write open close page cache folio inode "
         "block index table value count limit buffer queue list node tree hash map set key "
         "error return struct static const unsigned long int char void size offset length "
         "memory device kernel thread process signal timer clock lock mutex atomic flag").split()


def py_out(code: str) -> str:
    return subprocess.run([PYTHON, "-c", code], check=True, capture_output=True,
                          text=True).stdout.strip()


def zipf_ids(seed: int, n: int, s: float = 0.8) -> list[int]:
    cum, acc = [], 0.0
    for r in range(1, DB_ROWS + 1):
        acc += r ** -s
        cum.append(acc)
    ids = list(range(DB_ROWS))
    random.Random(11).shuffle(ids)          # rank -> id, the same for every query file
    ranks = random.Random(seed).choices(range(DB_ROWS), cum_weights=cum, k=n)
    return [ids[r] for r in ranks]


def make_db(d: Path) -> None:
    db = d / "corpus.db"
    if not db.exists():
        tmp = d / "corpus.db.tmp"
        tmp.unlink(missing_ok=True)
        rnd = random.Random(10)
        con = sqlite3.connect(tmp)
        con.execute("PRAGMA page_size = 4096")
        con.execute("CREATE TABLE kv (id INTEGER PRIMARY KEY, v BLOB)")
        con.executemany("INSERT INTO kv VALUES (?, ?)",
                        ((i, rnd.randbytes(1000)) for i in range(DB_ROWS)))
        con.commit()
        con.close()
        tmp.rename(db)
    (d / "sqlite-random.sql").write_text("".join(
        f"SELECT length(v) FROM kv WHERE id = {i};\n" for i in zipf_ids(2, 12_000)))
    (d / "sqlite-mmap.sql").write_text("PRAGMA mmap_size=268435456;\n" + "".join(
        f"SELECT length(v) FROM kv WHERE id = {i};\n" for i in zipf_ids(12, 750)))
    (d / "sqlite-heap-keys.txt").write_text(
        "".join(f"{i}\n" for i in zipf_ids(22, 4_800, 1.0)))
    (d / "sqlite-heap.py").write_text(SQLITE_HEAP)


SQLITE_HEAP = '''\
"""Point queries in phases; between phases the heap grows or shrinks (MiB of bytearrays
that are written page by page). Run with MALLOC_MMAP_THRESHOLD_=65536 so that freed chunks go
back to the kernel at once."""
import sqlite3
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
keys = [int(k) for k in (here / "sqlite-heap-keys.txt").read_text().split()]
con = sqlite3.connect(f"file:{here / 'corpus.db'}?mode=ro", uri=True)
SCHEDULE = [8, 24, 8, 20]   # MiB of heap in each phase
per = len(keys) // len(SCHEDULE)
heap = []
total = 0
for phase, mib in enumerate(SCHEDULE):
    while len(heap) > mib:
        heap.pop()
    while len(heap) < mib:
        chunk = bytearray(1 << 20)
        chunk[::4096] = bytes([phase + 1]) * (len(chunk) // 4096)
        heap.append(chunk)
    con.execute("BEGIN")              # one read transaction per phase
    for k in keys[phase * per:(phase + 1) * per]:
        total += con.execute("SELECT length(v) FROM kv WHERE id = ?", (k,)).fetchone()[0]
    con.commit()
con.close()
if total != per * len(SCHEDULE) * 1000:
    sys.exit(f"unexpected total {total}")
'''


def copy_stdlib(d: Path) -> None:
    dst = d / "stdlib"
    if dst.exists():
        return
    src = Path(py_out("import sysconfig; print(sysconfig.get_paths()['stdlib'])"))
    shutil.copytree(src, dst, symlinks=True,
                    ignore=shutil.ignore_patterns("site-packages", "__pycache__"))


def copy_library(d: Path) -> None:
    dst = d / "library"
    if dst.exists():
        return
    src = Path(py_out("import sysconfig; print(sysconfig.get_paths()['purelib'])"))
    tmp = d / "library.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for name in ("numpy", "numpy.libs", "scipy.libs", "cryptography"):
        shutil.copytree(src / name, tmp / name, symlinks=True)
    tmp.rename(dst)


def source_text(rnd: random.Random, lines: int) -> list[str]:
    out = []
    for _ in range(lines):
        indent = "    " * rnd.randrange(4)
        words = " ".join(rnd.choices(WORDS, k=rnd.randrange(2, 9)))
        out.append(f"{indent}{words} = {rnd.randrange(10 ** rnd.randrange(1, 9))};"
                   f" /* {rnd.randbytes(rnd.randrange(4, 16)).hex()} */\n")
    return out


def make_repo(d: Path) -> None:
    repo = d / "repo.git"
    if repo.exists():
        return
    tmp = d / "repo.git.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(tmp)], check=True)
    rnd = random.Random(30)
    nfiles = 150
    files: dict[str, list[str]] = {}
    stream: list[bytes] = []
    mark = 0

    def blob(text: str) -> int:
        nonlocal mark
        mark += 1
        data = text.encode()
        stream.append(b"blob\nmark :%d\ndata %d\n%s\n" % (mark, len(data), data))
        return mark

    heads: dict[str, int] = {}
    t = 1_700_000_000
    for c in range(950):
        branch = "main" if c < 300 else ("main", "dev", "topic")[c % 3]
        if c == 0:
            changed = [f"src/m{i:03d}.c" for i in range(nfiles)]
            for f in changed:
                files[f] = source_text(rnd, rnd.randrange(100, 400))
        else:
            changed = [f"src/m{i:03d}.c" for i in rnd.sample(range(nfiles), rnd.randrange(1, 9))]
            for f in changed:
                lines = files[f]
                for _ in range(rnd.randrange(1, 9)):     # a few hunks per file
                    at = rnd.randrange(len(lines) + 1)
                    drop = rnd.randrange(0, 16)
                    lines[at:at + drop] = source_text(rnd, rnd.randrange(1, 21))
        marks = {f: blob("".join(files[f])) for f in changed}
        mark += 1
        msg = f"commit {c} on {branch}\n".encode()
        body = [b"commit refs/heads/%s\nmark :%d\n" % (branch.encode(), mark),
                b"committer t <t@example.org> %d +0000\n" % (t + 60 * c),
                b"data %d\n%s" % (len(msg), msg)]
        if branch in heads:
            body.append(b"from :%d\n" % heads[branch])
        elif heads:
            body.append(b"from :%d\n" % heads["main"])
        body += [b"M 100644 :%d %s\n" % (m, f.encode()) for f, m in marks.items()]
        stream.append(b"".join(body) + b"\n")
        heads[branch] = mark
    subprocess.run(["git", "-C", str(tmp), "fast-import", "--quiet"], check=True,
                   input=b"".join(stream))
    # fast-import's own deltas are poor: delta everything again, as git gc --aggressive would
    # (one thread: the same pack bytes every time)
    one = ["-c", "pack.threads=1"]
    subprocess.run(["git", "-C", str(tmp), *one, "repack", "-a", "-d", "-f", "-q"], check=True)
    subprocess.run(["git", "-C", str(tmp), *one, "gc", "-q"], check=True)
    tmp.rename(repo)


def make_cproj(d: Path) -> None:
    proj = d / "cproj"
    if proj.exists():
        return
    tmp = d / "cproj.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    rnd = random.Random(40)
    nh, nc = 12, 40
    for h in range(nh):
        decls = "".join(f"int h{h}_f{i}(int a, const char *s);\n" for i in range(40))
        structs = "".join(
            f"struct h{h}_s{i} {{ int a; long b[{rnd.randrange(1, 9)}]; char name[32]; }};\n"
            for i in range(20))
        macros = "".join(f"#define H{h}_M{i}(x) ((x) * {rnd.randrange(2, 99)} + {i})\n"
                         for i in range(30))
        (tmp / f"h{h:02d}.h").write_text(
            f"#ifndef H{h}_H\n#define H{h}_H\n#include <stddef.h>\n#include <stdint.h>\n"
            f"{macros}{structs}{decls}#endif\n")
    for c in range(nc):
        inc = "".join(f'#include "h{h:02d}.h"\n' for h in sorted(rnd.sample(range(nh), 4)))
        funcs = []
        for i in range(rnd.randrange(3, 7)):
            body = []
            for j in range(rnd.randrange(3, 8)):
                op = rnd.choice(["+", "-", "^", "|", "*"])
                body.append(f"    for (int i{j} = 0; i{j} < n; i{j}++) "
                            f"{{ acc = acc {op} (t[i{j} % 64] * {rnd.randrange(1, 1000)}); "
                            f"t[(i{j} + {j}) % 64] = acc >> {rnd.randrange(1, 13)}; }}\n")
            funcs.append(f"static long c{c}_f{i}(int n, long seed)\n{{\n    long acc = seed;\n"
                         f"    long t[64];\n    memset(t, 0, sizeof t);\n{''.join(body)}"
                         f"    snprintf(buf, sizeof buf, \"%ld\", acc);\n"
                         f"    return acc + (long)strlen(buf);\n}}\n\n")
        calls = "".join(f"    acc += c{c}_f{i}(n, acc);\n" for i in range(len(funcs)))
        (tmp / f"m{c:02d}.c").write_text(
            "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
            f"{inc}\nstatic char buf[64];\n\n{''.join(funcs)}"
            f"long m{c:02d}_run(int n)\n{{\n    long acc = {c};\n{calls}    return acc;\n}}\n")
    decls = "".join(f"long m{c:02d}_run(int n);\n" for c in range(nc))
    calls = "".join(f"    acc += m{c:02d}_run(n);\n" for c in range(nc))
    (tmp / "main.c").write_text(
        f"#include <stdio.h>\n#include <stdlib.h>\n{decls}\nint main(int argc, char **argv)\n"
        f"{{\n    int n = argc > 1 ? atoi(argv[1]) : 3;\n    long acc = 0;\n{calls}"
        f"    printf(\"%ld\\n\", acc);\n    return 0;\n}}\n")
    objs = " ".join(f"m{c:02d}.o" for c in range(nc)) + " main.o"
    (tmp / "Makefile").write_text(
        f"CC = gcc\nCFLAGS = -O2 -Wall -Wno-unused-function\nOBJS = {objs}\n\n"
        "prog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n\n"
        "%.o: %.c $(wildcard *.h)\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\n"
        "clean:\n\trm -f prog $(OBJS)\n")
    subprocess.run(["make", "-s", "-C", str(tmp), "-j2"], check=True)
    subprocess.run(["make", "-s", "-C", str(tmp), "clean"], check=True)
    tmp.rename(proj)


def make_xz_set(d: Path) -> None:
    out = d / "xz-set"
    if out.exists():
        return
    tmp = d / "xz-set.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    rnd = random.Random(50)
    for i in range(16):
        size = 2 * 1024 * 1024
        kind = i % 4
        if kind == 0:       # source-like text
            text = "".join(source_text(rnd, size // 60))
        elif kind == 1:     # log lines
            text = "".join(f"2026-01-{1 + n % 28:02d} {n % 24:02d}:{n % 60:02d} "
                           f"{rnd.choice(WORDS)}[{rnd.randrange(1000)}]: "
                           f"{' '.join(rnd.choices(WORDS, k=6))} {rnd.randrange(10 ** 6)}\n"
                           for n in range(size // 70))
        elif kind == 2:     # CSV
            text = "".join(f"{n},{rnd.randrange(10 ** 9)},{rnd.random():.6f},"
                           f"{rnd.choice(WORDS)},{rnd.randbytes(4).hex()}\n"
                           for n in range(size // 40))
        else:               # half random bytes, half zeros and text
            data = rnd.randbytes(size // 2) + bytes(size // 4)
            data += "".join(source_text(rnd, size // 4 // 60)).encode()
            (tmp / f"f{i:02d}.bin").write_bytes(data[:size])
            continue
        (tmp / f"f{i:02d}.txt").write_text(text[:size])
    tmp.rename(out)


def make_smallfiles(d: Path) -> None:
    out = d / "smallfiles"
    if out.exists():
        return
    tmp = d / "smallfiles.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    rnd = random.Random(60)
    for i in range(3_000):
        sub = tmp / f"a{i % 10}" / f"b{(i // 10) % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        size = rnd.randrange(1024, 8 * 1024 + 1)
        text = "".join(source_text(rnd, size // 50 + 1))
        (sub / f"file{i:04d}.txt").write_text(text[:size])
    tmp.rename(out)


PINNED_WHEELS = ["requests==2.32.3", "urllib3==2.2.3", "idna==3.10", "certifi==2024.8.30",
                 "charset-normalizer==3.4.0", "six==1.16.0"]


def make_wheels(d: Path) -> None:
    out = d / "wheels"
    if out.exists() and len(list(out.glob("*.whl"))) == len(PINNED_WHEELS):
        return
    out.mkdir(exist_ok=True)
    subprocess.run([PYTHON, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                    "--no-deps", "--only-binary=:all:", "-d", str(out), *PINNED_WHEELS],
                   check=True)


IMPORTS = """abc argparse ast asyncio base64 bisect calendar collections concurrent.futures
configparser contextlib copy csv dataclasses datetime decimal difflib email email.mime.text
email.parser enum fnmatch fractions functools glob gzip hashlib heapq hmac html.parser
http.client http.server inspect io ipaddress itertools json logging logging.handlers lzma
mimetypes multiprocessing operator optparse pathlib pickle pprint queue random re shlex
shutil smtplib socket sqlite3 ssl statistics string struct subprocess tarfile tempfile
textwrap threading tokenize traceback typing unittest unittest.mock urllib.parse
urllib.request uuid xml.dom.minidom xml.etree.ElementTree zipfile zlib""".split()


def make_imports(d: Path) -> None:
    (d / "imports.py").write_text(
        "".join(f"import {m}\n" for m in IMPORTS) +
        "import sys\nprint(len(sys.modules), file=open('/dev/null', 'w'))\n")
    # compile the .pyc files now if the interpreter's tree lacks any
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([PYTHON, str(d / "imports.py")], check=True, env=env)


def make_sort_input(d: Path) -> None:
    out = d / "sort-input.txt"
    (d / "sort-tmp").mkdir(exist_ok=True)
    if out.exists():
        return
    rnd = random.Random(70)
    tmp = d / "sort-input.txt.tmp"
    size, target = 0, 16 * 1024 * 1024
    with open(tmp, "w") as f:
        while size < target:
            chunk = "".join(
                f"{rnd.choice(WORDS)} {rnd.choice(WORDS)} {rnd.randrange(10 ** 9)} "
                f"{rnd.choice(WORDS)} {rnd.randbytes(6).hex()}\n" for _ in range(20_000))
            f.write(chunk)
            size += len(chunk)
    tmp.rename(out)


def make_images(d: Path) -> None:
    out = d / "images"
    if out.exists():
        return
    if not os.path.exists(CONVERT):
        sys.exit(f"{CONVERT} missing: apt-get install imagemagick")
    tmp = d / "images.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for i in range(16):
        subprocess.run([CONVERT, "-seed", str(80 + i), "-size", "1600x1200", "plasma:fractal",
                        "-blur", "0x1", "-depth", "8", "-define", "png:exclude-chunks=date,time",
                        str(tmp / f"img{i:02d}.png")], check=True)
    tmp.rename(out)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/tagcache-corpus-inputs")
    out.mkdir(parents=True, exist_ok=True)
    (out / "python-path").write_text(PYTHON + "\n")
    for make in (make_db, copy_stdlib, copy_library, make_repo, make_cproj, make_xz_set,
                 make_smallfiles, make_wheels, make_imports, make_sort_input, make_images):
        print(make.__name__, flush=True)
        make(out)
    subprocess.run(["sync"], check=True)
