# shellcheck shell=bash
# Sourced by the bench scripts: one way to time a command.
#
# measure LOG CMD...: syncs, runs CMD under GNU time with its output in LOG (printed and
# the script stopped if CMD fails), and sets SECS (wall), CPU_SECS (user + system) and
# PEAK_MIB (peak RSS). Needs GNU time (/usr/bin/time) and bc.
measure() {
    local log=$1 stats
    shift
    stats=$(mktemp)
    sync
    /usr/bin/time -f "%e %U %S %M" -o "$stats" "$@" >"$log" 2>&1 ||
        { cat "$log"; rm -f "$stats"; exit 1; }
    local user sys kib
    read -r SECS user sys kib <"$stats"
    rm -f "$stats"
    CPU_SECS=$(echo "$user + $sys" | bc -l)
    PEAK_MIB=$((kib / 1024))
}
