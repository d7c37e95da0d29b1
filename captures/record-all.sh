#!/bin/sh
# Re-make every capture of this directory and the small one of the tests (root, tracefs
# mounted; see README.md).
#   captures/record-all.sh [INPUT_DIR [OUT_DIR]]
# INPUT_DIR: default /tmp/tagcache-inputs (made by make-inputs.py). OUT_DIR: default this
# directory, and tests/data/captures for mini-grep; given, every capture goes there.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
I=${1:-/tmp/tagcache-inputs}
out=${2:-$here}
mini_out=${2:-$(cd "$here/.." && pwd)/tests/data/captures}
tagcache=${TAGCACHE:-$here/../.venv/bin/tagcache}
python3 "$here/make-inputs.py" "$I"
mkdir -p "$out" "$mini_out"

"$tagcache" record sqlite-point-queries --limit 16MiB --out-dir "$out" -- \
    sh -c "sqlite3 $I/bench.db < $I/queries.sql > /dev/null"
"$tagcache" record git-log-p --limit 16MiB --out-dir "$out" -- \
    sh -c "git -C $I/repo log -p > /dev/null"
"$tagcache" record git-log-p-12m --limit 12MiB --out-dir "$out" -- \
    sh -c "git -C $I/repo log -p > /dev/null"
"$tagcache" record git-log-p-ra128 --limit 8MiB --read-ahead 128KiB --out-dir "$out" -- \
    sh -c "git -C $I/repo log -p > /dev/null"
"$tagcache" record small-files-md5sum --limit 8MiB --out-dir "$out" -- \
    sh -c "cd $I/tree && for pass in 1 2; do find . -type f | sort | xargs md5sum > /dev/null; done"
"$tagcache" record tree-rescan --limit 16MiB --out-dir "$out" -- \
    sh -c "cd $I/bigtree && for pass in 1 2 3; do tar cf - . | cat > /dev/null; done"
"$tagcache" record mini-grep --limit 4MiB --out-dir "$mini_out" -- \
    sh -c "cd $I/mini && for pass in 1 2; do grep -r 0000 . > /dev/null; done"
