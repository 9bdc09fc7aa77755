#!/usr/bin/env bash
# Side-by-side figures for issue 3: chatvault and restic on the same generated tree, in
# the same run, on this machine. Prints first backup, no-change re-backup, restore and
# peak memory for each tool.
#
#   benches/scripts/fs_vs_restic.sh [DAYS] [WORKDIR]
#
# DAYS of the workload generator's `bench` preset (24 days ≈ 2 GiB: chat logs and a
# media store). WORKDIR defaults to a fresh directory under /tmp and is removed at the
# end unless KEEP=1. Needs restic (Debian package `restic`) and GNU time.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh
source benches/scripts/measure.sh
DAYS=${1:-24}
WORK=${2:-$(mktemp -d /tmp/chatvault-bench.XXXXXX)}
mkdir -p "$WORK"
# The CLI on its own line: with --example, cargo builds only the examples named.
cargo build --release -q -p chatvault-cli
cargo build --release -q -p chatvault-workload --example write_server
BIN="$CARGO_TARGET_DIR/release"
SRC="$WORK/src"
[ -d "$SRC" ] || "$BIN/examples/write_server" "$SRC" "$DAYS" 1 bench >/dev/null
BYTES=$(du -sb --apparent-size "$SRC" | cut -f1)
FILES=$(find "$SRC" -type f | wc -l)
echo "tree: $SRC, $FILES files, $((BYTES / 1048576)) MiB"

export CHATVAULT_PASSWORD=bench RESTIC_PASSWORD=bench
export CHATVAULT_REPO="$WORK/cv-repo" CHATVAULT_CACHE_DIR="$WORK/cv-cache"
export RESTIC_REPOSITORY="$WORK/restic-repo" RESTIC_CACHE_DIR="$WORK/restic-cache"
rm -rf "$CHATVAULT_REPO" "$CHATVAULT_CACHE_DIR" "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR" \
    "$WORK"/out-*

# run NAME CMD...: runs CMD under GNU time, prints "NAME seconds peak-KiB".
run() {
    local name=$1
    shift
    measure "$WORK/$name.log" "$@"
    printf '%-26s %8.2f s %8.1f MB/s %7d MiB peak\n' "$name" "$SECS" \
        "$(echo "$BYTES / $SECS / 1000000" | bc -l)" "$PEAK_MIB"
}

"$BIN/chatvault" init >/dev/null
restic init -q >/dev/null
run "chatvault backup" "$BIN/chatvault" --no-progress backup "$SRC"
run "restic backup" restic backup -q "$SRC"
run "chatvault re-backup" "$BIN/chatvault" --no-progress backup "$SRC"
run "restic re-backup" restic backup -q "$SRC"
run "chatvault restore" "$BIN/chatvault" --no-progress restore latest --target "$WORK/out-cv"
run "restic restore" restic restore latest -q --target "$WORK/out-restic"
diff -r "$SRC" "$WORK/out-cv$SRC" && echo "chatvault restore: identical"
diff -r "$SRC" "$WORK/out-restic$SRC" && echo "restic restore: identical"
echo "repository size: chatvault $(du -sm "$CHATVAULT_REPO" | cut -f1) MiB," \
    "restic $(du -sm "$RESTIC_REPOSITORY" | cut -f1) MiB"
[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
