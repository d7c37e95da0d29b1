#!/bin/sh
# Re-make the capture corpus (README.md, "The corpus"): 13 program classes, each recorded three
# times in a row as NAME-1, NAME-2, NAME-3. Root, tracefs mounted
# (`mount -t tracefs nodev /sys/kernel/tracing` if /sys/kernel/tracing is empty).
#   captures/record-corpus.sh [INPUT_DIR [OUT_DIR]]
# INPUT_DIR: default /tmp/tagcache-corpus-inputs (made here by make-corpus-inputs.py, which
# keeps what it already made). OUT_DIR: default captures/corpus.
# CORPUS_ONLY="NAME ...": record only those classes. Each recording waits until no other
# `tagcache record` runs. Exits 1 if any command exited non-zero or lost events (the
# recordings are kept).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
I=${1:-/tmp/tagcache-corpus-inputs}
out=${2:-$here/corpus}
tagcache=${TAGCACHE:-$here/../.venv/bin/tagcache}
python3 "$here/make-corpus-inputs.py" "$I"
PY=$(cat "$I/python-path")
mkdir -p "$out"
failed=0

# record NAME LIMIT [FLAGS...] -- CMD...: three recordings, one after another
record() {
    name=$1
    limit=$2
    shift 2
    case " ${CORPUS_ONLY:-$name} " in *" $name "*) ;; *) return 0 ;; esac
    for k in 1 2 3; do
        while pgrep -f "tagcache record" > /dev/null; do sleep 5; done
        if [ "$name" = pip-install ]; then rm -rf "$I/pip-target"; fi
        "$tagcache" record "$name-$k" --limit "$limit" --out-dir "$out" "$@" > /dev/null
        python3 - "$out/$name-$k.json" <<'EOF' || failed=1
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{s['name']}: exit {s['exit_code']}, {s['seconds']:.2f} s, "
      f"lost {s['trace_overrun_events']}, cache_peak {s['kernel']['cache_peak']}")
sys.exit(s["exit_code"] != 0 or s["trace_overrun_events"] != 0)
EOF
    done
}

record sqlite-random 24MiB -- \
    sh -c "sqlite3 $I/corpus.db < $I/sqlite-random.sql > /dev/null"
record sqlite-heap 42MiB --with-alloc -- \
    env MALLOC_MMAP_THRESHOLD_=65536 "$PY" "$I/sqlite-heap.py"
record stdlib-read 40MiB -- \
    sh -c "cd $I/stdlib && for pass in 1 2; do find . -name '*.py' -type f | xargs cat > /dev/null; done"
record tar-library 80MiB -- \
    sh -c "cd $I && for pass in 1 2; do tar cf - library | cat > /dev/null; done"
record git-log-all 28MiB --read-ahead 128KiB -- \
    sh -c "git -C $I/repo.git -c core.deltaBaseCacheLimit=16m log -p --all > /dev/null"
record gcc-build 48MiB -- \
    sh -c "cd $I/cproj && make -s clean && make -s -j1"
record xz-compress 12MiB -- \
    sh -c "cd $I/xz-set && xz -T1 -0 -c * > /dev/null && zstd -q -3 -c * > /dev/null"
record small-files 8MiB -- \
    sh -c "cd $I/smallfiles && for pass in 1 2 3; do find . -type f -name '*.txt' -print0 | xargs -0 cat > /dev/null; done"
# held back from tuning: pip-install, python-import, sqlite-mmap, sort-heap, convert-images
record pip-install 76MiB -- \
    env PATH=/usr/bin:/bin "$PY" -m pip install -q --isolated --no-index --find-links "$I/wheels" \
    --target "$I/pip-target" --no-cache-dir --disable-pip-version-check --root-user-action=ignore \
    requests urllib3 idna certifi charset-normalizer six
record python-import 36MiB -- \
    sh -c "for run in 1 2 3 4 5; do $PY $I/imports.py; done"
record sqlite-mmap 24MiB --read-ahead 128KiB -- \
    sh -c "sqlite3 $I/corpus.db < $I/sqlite-mmap.sql > /dev/null"
record sort-heap 40MiB --with-alloc -- \
    env LC_ALL=C sort -S 32M --parallel=1 -T "$I/sort-tmp" "$I/sort-input.txt" -o /dev/null
record convert-images 48MiB -- \
    sh -c "cd $I/images && for f in *.png; do MAGICK_THREAD_LIMIT=1 /usr/bin/convert \$f -resize 50% jpg:- > /dev/null; done"
exit $failed
