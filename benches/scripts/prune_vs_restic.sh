#!/usr/bin/env bash
# Prune figures for issue 5: chatvault and restic on the same data, in the same run.
#
#   benches/scripts/prune_vs_restic.sh [DAYS] [KEEP] [PRESET] [WORKDIR]
#
# Backs up DAYS daily states of the workload generator's server (PRESET: tiny, default
# or bench; by default 30 days of `bench`, about 2.5 GB) into a chatvault and a restic
# repository, one snapshot per day, then forgets all but the newest KEEP (default 10)
# and times each tool's prune on its own repository: chatvault `prune` after `forget
# --keep-last KEEP`, restic `prune` after `restic forget --keep-last KEEP` (restic's
# `forget --prune` is the same two steps). Prints wall time, peak RSS (GNU time) and
# bytes freed, then checks both repositories. PAIRS=N repeats each prune N times on
# fresh copies of the repositories, alternating the tools, because this machine is
# shared and noisy. WORKDIR defaults to a fresh directory under /tmp, removed at the end
# unless KEEP_WORK=1; a kept WORKDIR passed again skips the backups and the forget and
# only repeats the prunes. Needs restic (Debian package `restic`) and GNU time.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh
source benches/scripts/measure.sh
DAYS=${1:-30}
KEEP=${2:-10}
PRESET=${3:-bench}
WORK=${4:-$(mktemp -d /tmp/chatvault-prune.XXXXXX)}
PAIRS=${PAIRS:-2}
mkdir -p "$WORK"
# The CLI on its own line: with --example, cargo builds only the examples named.
cargo build --release -q -p chatvault-cli
cargo build --release -q -p chatvault-workload --example write_server
BIN="$CARGO_TARGET_DIR/release"
SRC="$WORK/src"

export CHATVAULT_PASSWORD=bench RESTIC_PASSWORD=bench
CV_REPO="$WORK/cv-repo" RESTIC_REPO="$WORK/restic-repo"
export CHATVAULT_CACHE_DIR="$WORK/cv-cache" RESTIC_CACHE_DIR="$WORK/restic-cache"

cv() { CHATVAULT_REPO="$1" "$BIN/chatvault" --no-progress "${@:2}"; }
rs() { RESTIC_REPOSITORY="$1" restic -q "${@:2}"; }

# timed NAME CMD...: runs CMD under GNU time; prints "NAME seconds peak-MiB".
timed() {
    local name=$1
    shift
    measure "$WORK/$name.log" "$@"
    printf '%-22s %8.2f s %7d MiB peak\n' "$name" "$SECS" "$PEAK_MIB"
}

size() { du -sb "$1" | cut -f1; }

if [ ! -e "$WORK/ready" ]; then
rm -rf "$SRC" "$CV_REPO" "$RESTIC_REPO" "$CHATVAULT_CACHE_DIR" "$RESTIC_CACHE_DIR"
cv "$CV_REPO" init >/dev/null
rs "$RESTIC_REPO" init >/dev/null
for day in $(seq 1 "$DAYS"); do
    if [ "$day" = 1 ]; then
        "$BIN/examples/write_server" "$SRC" 1 1 "$PRESET" 2>/dev/null
    else
        "$BIN/examples/write_server" --advance "$SRC" 1 2>/dev/null
    fi
    cv "$CV_REPO" backup --host bench "$SRC" >/dev/null
    rs "$RESTIC_REPO" backup --host bench "$SRC" >/dev/null
done
echo "data: $DAYS days of the $PRESET server, $(($(size "$SRC") / 1048576)) MiB," \
    "$(find "$SRC" -type f | wc -l) files"
echo "repositories: chatvault $(($(size "$CV_REPO") / 1048576)) MiB," \
    "restic $(($(size "$RESTIC_REPO") / 1048576)) MiB"
cv "$CV_REPO" forget --keep-last "$KEEP" >/dev/null
rs "$RESTIC_REPO" forget --keep-last "$KEEP" >/dev/null
touch "$WORK/ready"
fi
echo "forgot all but the newest $KEEP snapshots; pruning ($PAIRS paired runs, alternating)"

for pair in $(seq 1 "$PAIRS"); do
    for tool in chatvault restic; do
        if [ "$tool" = chatvault ]; then
            rm -rf "$WORK/cv-run" "$WORK/cv-run-cache"
            cp -a "$CV_REPO" "$WORK/cv-run"
            before=$(size "$WORK/cv-run")
            CHATVAULT_CACHE_DIR="$WORK/cv-run-cache" timed "chatvault prune #$pair" \
                env CHATVAULT_REPO="$WORK/cv-run" "$BIN/chatvault" --no-progress prune
            after=$(size "$WORK/cv-run")
        else
            rm -rf "$WORK/rs-run" "$WORK/rs-run-cache"
            cp -a "$RESTIC_REPO" "$WORK/rs-run"
            before=$(size "$WORK/rs-run")
            RESTIC_CACHE_DIR="$WORK/rs-run-cache" timed "restic prune #$pair" \
                env RESTIC_REPOSITORY="$WORK/rs-run" restic -q prune
            after=$(size "$WORK/rs-run")
        fi
        echo "    freed $(((before - after) / 1048576)) MiB ($before -> $after bytes)"
    done
done
CHATVAULT_CACHE_DIR="$WORK/cv-run-cache" cv "$WORK/cv-run" check --read-data >/dev/null &&
    echo "chatvault check --read-data after prune: ok"
RESTIC_CACHE_DIR="$WORK/rs-run-cache" rs "$WORK/rs-run" check --read-data >/dev/null &&
    echo "restic check --read-data after prune: ok"
[ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"
