#!/usr/bin/env bash
# Peak memory of `chatvault backup` (and restic's, for reference) as the tree grows:
# N small files spread over directories of 1000, then one large stream. Issue 3 asks for
# memory that stays flat in tree size and file size.
#
#   benches/scripts/fs_memory.sh [FILES...]      default: 100000 1000000
#   STREAM_GIB=20 benches/scripts/fs_memory.sh   also a 20 GiB single stream (--stdin)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh
source benches/scripts/measure.sh
# The CLI on its own line: with --example, cargo builds only the examples named.
cargo build --release -q -p chatvault-cli
cargo build --release -q -p chatvault-workload --example write_corpus
BIN="$CARGO_TARGET_DIR/release"
WORK=$(mktemp -d /tmp/chatvault-mem.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export CHATVAULT_PASSWORD=bench RESTIC_PASSWORD=bench
[ $# -gt 0 ] || set -- 100000 1000000

peak() { # peak NAME CMD...: prints seconds and peak RSS of CMD
    local name=$1
    shift
    measure "$WORK/log" "$@"
    printf '%-40s %8.1f s %7d MiB peak\n' "$name" "$SECS" "$PEAK_MIB"
}

for n in "$@"; do
    tree="$WORK/tree-$n"
    python3 - "$tree" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"{i // 1000 // 100:03d}", f"{i // 1000:04d}")
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"{i:07d}.txt"), "w") as f:
        f.write(f"message {i} " * (1 + i % 40))
PY
    export CHATVAULT_REPO="$WORK/cv-$n" CHATVAULT_CACHE_DIR="$WORK/cache-$n"
    export RESTIC_REPOSITORY="$WORK/restic-$n" RESTIC_CACHE_DIR="$WORK/restic-cache-$n"
    "$BIN/chatvault" init >/dev/null
    restic init -q >/dev/null
    peak "chatvault backup, $n files" "$BIN/chatvault" --no-progress backup "$tree"
    peak "chatvault re-backup, $n files" "$BIN/chatvault" --no-progress backup "$tree"
    peak "restic backup, $n files" restic backup -q "$tree"
    rm -rf "$tree" "$CHATVAULT_REPO" "$RESTIC_REPOSITORY"
done

if [ -n "${STREAM_GIB:-}" ]; then
    export CHATVAULT_REPO="$WORK/cv-stream" CHATVAULT_CACHE_DIR="$WORK/cache-stream"
    "$BIN/chatvault" init >/dev/null
    peak "chatvault backup --stdin, $STREAM_GIB GiB" bash -c \
        "'$BIN/examples/write_corpus' /dev/stdout $((STREAM_GIB * 1024)) | '$BIN/chatvault' --no-progress backup --stdin"
fi
