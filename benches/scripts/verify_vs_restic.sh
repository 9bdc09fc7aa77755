#!/usr/bin/env bash
# Verification throughput for issue 6: `chatvault check --read-data` and
# `chatvault drill --verify-only` against `restic check --read-data`, on the same generated
# tree backed up by both tools, in paired rounds (the three commands back to back, so a
# noisy shared machine slows all three alike). Prints each round and the median of each.
#
#   benches/scripts/verify_vs_restic.sh [DAYS] [WORKDIR] [ROUNDS]
#
# DAYS of the workload generator's `bench` preset (24 days ≈ 2 GiB: chat logs and a
# media store). WORKDIR defaults to a fresh directory under /tmp; an existing WORKDIR with
# `src`, `cv-repo` and `restic-repo` is reused as it is (no new backup). It is removed at
# the end unless KEEP=1. Needs restic (Debian package `restic`) and GNU time.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh
source benches/scripts/measure.sh
DAYS=${1:-24}
WORK=${2:-$(mktemp -d /tmp/chatvault-verify.XXXXXX)}
ROUNDS=${3:-3}
mkdir -p "$WORK"
# The CLI on its own line: with --example, cargo builds only the examples named.
cargo build --release -q -p chatvault-cli
cargo build --release -q -p chatvault-workload --example write_server
BIN="$CARGO_TARGET_DIR/release"
SRC="$WORK/src"
[ -d "$SRC" ] || "$BIN/examples/write_server" "$SRC" "$DAYS" 1 bench >/dev/null

export CHATVAULT_PASSWORD=bench RESTIC_PASSWORD=bench
export CHATVAULT_REPO="$WORK/cv-repo" CHATVAULT_CACHE_DIR="$WORK/cv-cache"
export RESTIC_REPOSITORY="$WORK/restic-repo" RESTIC_CACHE_DIR="$WORK/restic-cache"
if [ ! -f "$CHATVAULT_REPO/config" ] || [ ! -f "$RESTIC_REPOSITORY/config" ]; then
    rm -rf "$CHATVAULT_REPO" "$CHATVAULT_CACHE_DIR" "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR"
    "$BIN/chatvault" init >/dev/null
    restic init -q >/dev/null
    "$BIN/chatvault" -q --no-progress backup "$SRC" >/dev/null
    restic backup -q "$SRC" >/dev/null
fi
BYTES=$(du -sb --apparent-size "$SRC" | cut -f1)
echo "tree: $((BYTES / 1048576)) MiB; repositories: chatvault" \
    "$(du -sm "$CHATVAULT_REPO" | cut -f1) MiB, restic $(du -sm "$RESTIC_REPOSITORY" | cut -f1) MiB"

# run NAME CMD...: runs CMD under GNU time; appends "seconds cpu-seconds" to WORK/NAME.times.
run() {
    local name=$1
    shift
    measure "$WORK/last.log" "$@"
    echo "$SECS $CPU_SECS" >>"$WORK/$name.times"
    printf '  %-30s %7.2f s %8.1f MB/s  (cpu %6.2f s)\n' "$name" "$SECS" \
        "$(echo "$BYTES / $SECS / 1000000" | bc -l)" "$CPU_SECS"
}

rm -f "$WORK"/*.times
for round in $(seq "$ROUNDS"); do
    echo "round $round (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    run "chatvault check --read-data" "$BIN/chatvault" --no-progress check --read-data
    run "restic check --read-data" restic check --read-data -q
    run "chatvault drill --verify-only" "$BIN/chatvault" --no-progress drill --verify-only
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "medians over $ROUNDS rounds (wall time; the ratio is restic's time over chatvault's):"
RESTIC=$(cut -d' ' -f1 "$WORK/restic check --read-data.times" | median)
for name in "chatvault check --read-data" "restic check --read-data" "chatvault drill --verify-only"; do
    t=$(cut -d' ' -f1 "$WORK/$name.times" | median)
    printf '  %-30s %7.2f s %8.1f MB/s  %5.2fx restic\n' "$name" "$t" \
        "$(echo "$BYTES / $t / 1000000" | bc -l)" "$(echo "$RESTIC / $t" | bc -l)"
done
[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
