#!/usr/bin/env bash
# Figures for the remote-storage issue: chatvault and restic, each against a 3-node Garage
# cluster on loopback (its own bucket each) and against local directories, on the same
# generated chat-server tree in the same run.
#
#   benches/scripts/remote_vs_restic.sh [DAYS] [ROUNDS] [WORKDIR]
#
# Each round: a fresh tree of DAYS days of the workload's `bench` preset (24 days ≈ 2 GiB),
# then for the four (tool, storage) pairs in turn: first backup; one more day written;
# incremental backup; no-change re-backup; full restore (compared with the tree). With
# ROUNDS > 1 the steps alternate the tools and the medians are printed at the end. Needs
# restic (Debian), GNU time, and the test servers (scripts/install-test-servers.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh
source benches/scripts/measure.sh
DAYS=${1:-24}
ROUNDS=${2:-1}
WORK=${3:-$(mktemp -d /tmp/chatvault-remote.XXXXXX)}
mkdir -p "$WORK"
bash scripts/install-test-servers.sh >/dev/null
# The CLI on its own line: with --example, cargo builds only the examples named.
cargo build --release -q -p chatvault-cli
cargo build --release -q -p chatvault-workload --example write_server
cargo build --release -q -p chatvault-backend --example test_cluster
BIN="$CARGO_TARGET_DIR/release"
SRC="$WORK/src"
RESULTS="$WORK/results"
: >"$RESULTS"

# The cluster lives until this script closes fd 3 (at exit), then is stopped and removed.
mkfifo "$WORK/cluster.in"
"$BIN/examples/test_cluster" garage chatvault-bench restic-bench <"$WORK/cluster.in" >"$WORK/cluster.env" &
CLUSTER=$!
exec 3>"$WORK/cluster.in"
cleanup() {
    exec 3>&-
    wait "$CLUSTER" || true
    [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
until grep -q AWS_REGION "$WORK/cluster.env" 2>/dev/null; do
    kill -0 "$CLUSTER" || { echo "the Garage cluster did not start" >&2; exit 1; }
    sleep 1
done
# shellcheck disable=SC1091
source "$WORK/cluster.env"
echo "Garage cluster: 3 nodes, S3 at $S3_ENDPOINT"
export CHATVAULT_PASSWORD=bench RESTIC_PASSWORD=bench

# use TOOL STORAGE: points the tool's variables at its repository on STORAGE (on Garage, a
# fresh prefix per round).
use() {
    case "$1/$2" in
    chatvault/garage) export CHATVAULT_REPO="s3:$S3_ENDPOINT/chatvault-bench/round$round" ;;
    chatvault/local) export CHATVAULT_REPO="$WORK/cv-repo" ;;
    restic/garage) export RESTIC_REPOSITORY="s3:$S3_ENDPOINT/restic-bench/round$round" ;;
    restic/local) export RESTIC_REPOSITORY="$WORK/restic-repo" ;;
    esac
    export CHATVAULT_CACHE_DIR="$WORK/cv-cache-$2" RESTIC_CACHE_DIR="$WORK/restic-cache-$2"
}

# step NAME TOOL STORAGE: runs one step of one tool under GNU time, records and prints it.
step() {
    local name=$1 tool=$2 storage=$3 cmd
    use "$tool" "$storage"
    case "$tool/$name" in
    chatvault/init) cmd=("$BIN/chatvault" init) ;;
    chatvault/restore) cmd=("$BIN/chatvault" --no-progress restore latest --target "$WORK/out") ;;
    chatvault/*) cmd=("$BIN/chatvault" --no-progress backup "$SRC") ;;
    restic/init) cmd=(restic -o s3.region="$AWS_REGION" init) ;;
    restic/restore) cmd=(restic -o s3.region="$AWS_REGION" restore latest -q --target "$WORK/out") ;;
    restic/*) cmd=(restic -o s3.region="$AWS_REGION" backup -q "$SRC") ;;
    esac
    rm -rf "$WORK/out"
    measure "$WORK/step.log" "${cmd[@]}"
    [ "$name" = init ] && return
    local bytes
    bytes=$(du -sb --apparent-size "$SRC" | cut -f1)
    printf '%-8s %-10s %-12s %8.2f s %8.1f MB/s %6d MiB peak\n' "$storage" "$tool" "$name" \
        "$SECS" "$(echo "$bytes / $SECS / 1000000" | bc -l)" "$PEAK_MIB"
    echo "$storage $tool $name $SECS $PEAK_MIB" >>"$RESULTS"
    if [ "$name" = restore ]; then
        diff -r "$SRC" "$WORK/out$SRC" >/dev/null || { echo "$tool restore differs" >&2; exit 1; }
        rm -rf "$WORK/out"
    fi
}

for round in $(seq "$ROUNDS"); do
    rm -rf "$SRC" "$WORK"/cv-* "$WORK"/restic-*
    "$BIN/examples/write_server" "$SRC" "$DAYS" 1 bench 2>/dev/null
    # Odd rounds start with chatvault, even rounds with restic.
    tools=(chatvault restic)
    [ $((round % 2)) = 1 ] || tools=(restic chatvault)
    echo "round $round: $(du -sm --apparent-size "$SRC" | cut -f1) MiB, $(find "$SRC" -type f | wc -l) files"
    for storage in garage local; do
        for tool in "${tools[@]}"; do step init "$tool" "$storage"; done
    done
    for name in first incremental no-change restore; do
        [ "$name" = incremental ] && "$BIN/examples/write_server" --advance "$SRC" 1 2>/dev/null
        for storage in garage local; do
            for tool in "${tools[@]}"; do step "$name" "$tool" "$storage"; done
        done
    done
done

echo
echo "medians over $ROUNDS round(s): seconds, peak MiB, chatvault's speed-up over restic"
for storage in garage local; do
    for name in first incremental no-change restore; do
        med() {
            awk -v s="$storage" -v t="$1" -v n="$name" -v c="$2" \
                '$1==s && $2==t && $3==n {print $c}' "$RESULTS" | sort -g |
                awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'
        }
        cv=$(med chatvault 4) rs=$(med restic 4)
        printf '%-8s %-12s chatvault %8.2f s %5d MiB   restic %8.2f s %5d MiB   %5.2fx\n' \
            "$storage" "$name" "$cv" "$(med chatvault 5)" "$rs" "$(med restic 5)" \
            "$(echo "$rs / $cv" | bc -l)"
    done
done
