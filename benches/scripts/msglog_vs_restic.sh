#!/usr/bin/env bash
# Side-by-side figures for issue 4: 30 days of a generated chat server backed up daily by
# chatvault (`msglog backup`) and by restic, in the same run, on this machine.
#
#   benches/scripts/msglog_vs_restic.sh [DAYS] [WORKDIR]
#
# Day 0 of the workload generator's `bench` preset is backed up first; then, DAYS times,
# the server advances one day and every tool backs it up again. Four repositories:
# chatvault and restic on the whole data directory (logs + media store), and on the
# message logs alone. Per day it prints each tool's time, peak memory and repository
# growth (bytes on disk); at the end the repository sizes against the sum of the daily
# inputs, and the time to restore one conversation's last week.
# Needs restic (Debian package `restic`) and GNU time. WORKDIR is removed unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh
source benches/scripts/measure.sh
DAYS=${1:-30}
WORK=${2:-$(mktemp -d /tmp/chatvault-msglog-bench.XXXXXX)}
mkdir -p "$WORK"
# The CLI on its own line: with --example, cargo builds only the examples named.
cargo build --release -q -p chatvault-cli
cargo build --release -q -p chatvault-workload --example write_server
BIN="$CARGO_TARGET_DIR/release"
SRC="$WORK/server"
rm -rf "$SRC" "$WORK"/cv-* "$WORK"/restic-* "$WORK"/out-*
"$BIN/examples/write_server" "$SRC" 1 1 bench >/dev/null

export CHATVAULT_PASSWORD=bench RESTIC_PASSWORD=bench
export CHATVAULT_CACHE_DIR="$WORK/cv-cache" RESTIC_CACHE_DIR="$WORK/restic-cache"
CV_ALL="$WORK/cv-all" CV_LOGS="$WORK/cv-logs"
RS_ALL="$WORK/restic-all" RS_LOGS="$WORK/restic-logs"
"$BIN/chatvault" -r "$CV_ALL" init >/dev/null
"$BIN/chatvault" -r "$CV_LOGS" init >/dev/null
restic -r "$RS_ALL" init -q >/dev/null
restic -r "$RS_LOGS" init -q >/dev/null

size() { du -sb "$1" | cut -f1; }
# timed NAME CMD...: runs CMD under GNU time; sets SECS and PEAK_MIB.
timed() {
    local name=$1
    shift
    measure "$WORK/$name.log" "$@"
}

cv_all() { "$BIN/chatvault" -r "$CV_ALL" --no-progress msglog backup "$SRC" --name server; }
cv_logs() {
    "$BIN/chatvault" -r "$CV_LOGS" --no-progress msglog backup "$SRC" --name logs \
        -e "$SRC/media" -e "$SRC/.workload-state.json"
}
rs_all() { restic -r "$RS_ALL" backup -q "$SRC"; }
rs_logs() { restic -r "$RS_LOGS" backup -q "$SRC/logs"; }
export -f cv_all cv_logs rs_all rs_logs
export BIN SRC CV_ALL CV_LOGS RS_ALL RS_LOGS

printf '%-4s %10s %10s | %-30s | %-30s | %-24s | %-24s\n' day "logs+" "media+" \
    "chatvault all: s, MiB, +bytes" "restic all: s, MiB, +bytes" \
    "chatvault logs: s, +bytes" "restic logs: s, +bytes"
INPUT=0
TOT=(0 0 0 0 0 0 0 0)
for day in $(seq 0 "$DAYS"); do
    LOGS0=$(size "$SRC/logs") MEDIA0=$(size "$SRC/media")
    if [ "$day" -gt 0 ]; then
        "$BIN/examples/write_server" --advance "$SRC" 1 >/dev/null
    fi
    LOGS1=$(size "$SRC/logs") MEDIA1=$(size "$SRC/media")
    INPUT=$((INPUT + $(size "$SRC")))
    row=()
    i=0
    for tool in cv_all rs_all cv_logs rs_logs; do
        case $tool in
            cv_all) repo=$CV_ALL ;; rs_all) repo=$RS_ALL ;;
            cv_logs) repo=$CV_LOGS ;; rs_logs) repo=$RS_LOGS ;;
        esac
        before=$(size "$repo")
        timed "$tool" bash -c "$tool"
        added=$(($(size "$repo") - before))
        row+=("$SECS" "$PEAK_MIB" "$added")
        if [ "$day" -gt 0 ]; then
            TOT[$i]=$(echo "${TOT[$i]} + $SECS" | bc -l)
            TOT[$((i + 1))]=$((TOT[$((i + 1))] + added))
        fi
        i=$((i + 2))
    done
    printf '%-4s %10d %10d | %6.2f s %5d MiB %12d | %6.2f s %5d MiB %12d | %6.2f s %12d | %6.2f s %12d\n' \
        "$day" $((LOGS1 - LOGS0)) $((MEDIA1 - MEDIA0)) "${row[@]:0:3}" "${row[@]:3:3}" \
        "${row[6]}" "${row[8]}" "${row[9]}" "${row[11]}"
done

echo
echo "over the $DAYS daily incrementals (day 0 excluded):"
ratio() { echo "scale=2; $1 / $2" | bc -l; }
printf '  whole directory: chatvault %.1f s, %d MiB added; restic %.1f s, %d MiB added; time %s, bytes %s of restic\n' \
    "${TOT[0]}" $((TOT[1] >> 20)) "${TOT[2]}" $((TOT[3] >> 20)) \
    "$(ratio "${TOT[0]}" "${TOT[2]}")" "$(ratio "${TOT[1]}" "${TOT[3]}")"
printf '  message logs:    chatvault %.1f s, %d KiB added; restic %.1f s, %d KiB added; bytes %s of restic\n' \
    "${TOT[4]}" $((TOT[5] >> 10)) "${TOT[6]}" $((TOT[7] >> 10)) "$(ratio "${TOT[5]}" "${TOT[7]}")"
echo "  sum of the daily inputs: $((INPUT >> 20)) MiB"
echo "  repositories: chatvault $(($(size "$CV_ALL") >> 20)) MiB, restic $(($(size "$RS_ALL") >> 20)) MiB" \
    "(logs only: chatvault $(($(size "$CV_LOGS") >> 20)) MiB, restic $(($(size "$RS_LOGS") >> 20)) MiB)"

# Restore one busy conversation's last week.
CONV=$(find "$SRC/logs" -name '*.jsonl' -printf '%s %h\n' | sort -n | tail -1 | cut -d' ' -f2)
TENANT=$(basename "$(dirname "$CONV")") CID=$(basename "$CONV")
timed cv-week "$BIN/chatvault" -r "$CV_ALL" --no-progress msglog restore \
    --tenant "$TENANT" --conversation "$CID" --last 7d --target "$WORK/out-cv"
echo "restore $TENANT/$CID, last 7 days: chatvault $SECS s ($(cat "$WORK/cv-week.log" | tail -1))"
timed rs-week restic -r "$RS_ALL" restore latest -q --target "$WORK/out-restic" --include "$CONV"
echo "restore $TENANT/$CID (restic cannot cut by time: every month file of it): restic $SECS s"
[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
