#!/usr/bin/env bash
# Figures for issue 17: a simulated month of a 3,000-user Mattermost server's `posts`
# table, backed up daily by `chatvault msglog backup --postgres` and by
# `pg_dump --table posts | restic backup --stdin`, the same days in the same run.
#
#   benches/scripts/postgres_vs_restic.sh [DAYS] [WORKDIR] [PRESET]
#
# A throw-away PostgreSQL server (initdb in WORKDIR, 127.0.0.1, a free port; as root it
# runs as the `postgres` user) holds the table. Day 0 of the workload generator's
# `server3k` preset (3 teams of 1,000 users, about 60,000 posts per working day; `tiny`
# for a quick run) is loaded and backed up by both tools; then, DAYS times, one more day
# (new posts, edits, soft deletions) and both backups again. Per day it prints each
# tool's bytes added to its repository and its time; at the end the medians, and the
# time to restore one busy channel's last week: chatvault into an empty table of the
# running database (`msglog restore --postgres --table`), restic by loading the last
# dump into a scratch database and copying the week out of it.
# Needs Debian's postgresql and restic (scripts/install-postgres.sh --bench) and GNU time.
# WORKDIR is removed unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh
source benches/scripts/measure.sh
bash scripts/install-postgres.sh --bench
DAYS=${1:-30}
WORK=${2:-$(mktemp -d /tmp/chatvault-pg-bench.XXXXXX)}
PRESET=${3:-server3k}
mkdir -p "$WORK"
# The CLI on its own line: with --example, cargo builds only the examples named.
cargo build --release -q -p chatvault-cli
cargo build --release -q -p chatvault-postgres --example mattermost_fill
BIN="$CARGO_TARGET_DIR/release"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

# The server: initdb and postgres as an unprivileged user, stopped on exit.
rm -rf "$WORK/pg" "$WORK"/cv-* "$WORK"/restic-*
mkdir -p "$WORK/pg"
AS=()
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$WORK/pg"
    AS=(setpriv --reuid="$(id -u postgres)" --regid="$(id -g postgres)" --clear-groups)
fi
"${AS[@]}" "$PGBIN/initdb" -D "$WORK/pg/data" -U chatvault --auth=trust -E UTF8 --no-locale \
    --no-sync >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${AS[@]}" "$PGBIN/postgres" -D "$WORK/pg/data" -p "$PORT" -k "$WORK/pg" \
    -c listen_addresses=127.0.0.1 >"$WORK/pg/server.log" 2>&1 &
PGPID=$!
stop() { kill -QUIT "$PGPID" 2>/dev/null || true; wait "$PGPID" 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq 100); do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" && break
    sleep 0.2
done
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=chatvault
"$PGBIN/createdb" mattermost
URL="postgresql://chatvault@127.0.0.1:$PORT/mattermost"

export CHATVAULT_PASSWORD=bench RESTIC_PASSWORD=bench
export CHATVAULT_CACHE_DIR="$WORK/cv-cache" RESTIC_CACHE_DIR="$WORK/restic-cache"
CV="$WORK/cv-repo" RS="$WORK/restic-repo"
"$BIN/chatvault" -r "$CV" init >/dev/null
restic -r "$RS" init -q >/dev/null
size() { du -sb "$1" | cut -f1; }

cv_backup() {
    "$BIN/chatvault" -r "$CV" --no-progress msglog backup --postgres "$URL" \
        --pg-preset mattermost --pg-clock table --name mattermost
}
rs_backup() {
    "$PGBIN/pg_dump" --table posts mattermost | restic -r "$RS" backup -q --stdin \
        --stdin-filename posts.sql
}
export -f cv_backup rs_backup
export BIN CV RS URL PGBIN

printf '%-4s %8s | %-26s | %-26s\n' day posts "chatvault: s, +bytes" "pg_dump|restic: s, +bytes"
CV_S=() CV_B=() RS_S=() RS_B=()
for day in $(seq 0 "$DAYS"); do
    "$BIN/examples/mattermost_fill" "$URL" "$day" 1 "$PRESET" >"$WORK/fill.log"
    posts=$(cut -d' ' -f1 "$WORK/fill.log")
    b0=$(size "$CV")
    measure "$WORK/cv.log" bash -c cv_backup
    cv_s=$SECS cv_b=$(($(size "$CV") - b0))
    b0=$(size "$RS")
    measure "$WORK/rs.log" bash -c rs_backup
    rs_s=$SECS rs_b=$(($(size "$RS") - b0))
    printf '%-4s %8s | %8.2f s %14d | %8.2f s %14d\n' "$day" "$posts" "$cv_s" "$cv_b" "$rs_s" "$rs_b"
    if [ "$day" -gt 0 ]; then
        CV_S+=("$cv_s") CV_B+=("$cv_b") RS_S+=("$rs_s") RS_B+=("$rs_b")
    fi
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {printf "%.2f", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
sum() { printf '%s\n' "$@" | awk '{s+=$1} END {printf "%d", s}'; }
echo
echo "over the $DAYS daily sets after day 0 (medians per day):"
printf '  chatvault msglog backup --postgres: %s s, %.0f bytes added (sum %s MiB)\n' \
    "$(median "${CV_S[@]}")" "$(median "${CV_B[@]}")" $(($(sum "${CV_B[@]}") >> 20))
printf '  pg_dump --table posts | restic:     %s s, %.0f bytes added (sum %s MiB)\n' \
    "$(median "${RS_S[@]}")" "$(median "${RS_B[@]}")" $(($(sum "${RS_B[@]}") >> 20))
echo "  repositories: chatvault $(($(size "$CV") >> 20)) MiB, restic $(($(size "$RS") >> 20)) MiB;" \
    "posts table $(psql -Atc "SELECT pg_total_relation_size('posts') >> 20" mattermost) MiB," \
    "$(psql -Atc 'SELECT count(*) FROM posts' mattermost) rows"

# One busy channel's last week, both ways.
CH=$(psql -Atc "SELECT channelid FROM posts GROUP BY channelid ORDER BY count(*) DESC LIMIT 1" mattermost)
HI=$(psql -Atc "SELECT max(createat) FROM posts" mattermost)
LO=$((HI - 7 * 86400000))
psql -qc "CREATE TABLE week_cv (LIKE posts)" mattermost
measure "$WORK/cv-week.log" "$BIN/chatvault" -r "$CV" --no-progress msglog restore \
    --tenant mattermost --conversation "$CH" --since "$LO" --until "$HI" \
    --postgres "$URL" --table week_cv
echo "restore channel $CH, last 7 days: chatvault $SECS s ($(tail -1 "$WORK/cv-week.log"))"
restore_restic() {
    createdb scratch
    restic -r "$RS" dump -q latest posts.sql | psql -q scratch >/dev/null
    psql -qc "CREATE TABLE week_rs AS SELECT * FROM posts WHERE channelid = '$CH' AND createat BETWEEN $LO AND $HI" scratch
}
export -f restore_restic
export CH LO HI
measure "$WORK/rs-week.log" bash -c restore_restic
echo "restore channel $CH, last 7 days: restic $SECS s (the whole dump into a scratch database, then the week)"
a=$(psql -Atc "SELECT md5(string_agg(row_to_json(w)::text, '' ORDER BY id)) FROM week_cv w" mattermost)
b=$(psql -Atc "SELECT md5(string_agg(row_to_json(w)::text, '' ORDER BY id)) FROM week_rs w" scratch)
[ "$a" = "$b" ] && echo "  both restores hold the same rows ($(psql -Atc 'SELECT count(*) FROM week_cv' mattermost))" ||
    echo "  the restores DIFFER" >&2
[ "${KEEP:-0}" = 1 ] || { stop; trap - EXIT; rm -rf "$WORK"; }
