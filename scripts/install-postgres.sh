#!/usr/bin/env bash
# Installs what the PostgreSQL tests and benches need, when it is missing: Debian's
# `postgresql` package (server binaries under /usr/lib/postgresql/*/bin and the
# `postgres` system user the tests run the server as) and, with --bench, `restic`.
# Idempotent, and quick when everything is there (no apt-get at all).
set -euo pipefail

have_server() {
  ls /usr/lib/postgresql/*/bin/initdb /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 &&
    id -u postgres >/dev/null 2>&1
}

want=()
have_server || want+=(postgresql)
if [ "${1:-}" = "--bench" ]; then
  command -v restic >/dev/null 2>&1 || want+=(restic)
  command -v pg_dump >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_dump >/dev/null 2>&1 ||
    want+=(postgresql-client)
fi
[ "${#want[@]}" -eq 0 ] && exit 0

echo "installing ${want[*]} (PostgreSQL tests)" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
# The package's own cluster is not needed (the tests run initdb themselves): keep the
# post-install from creating and starting one.
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
  $SUDO mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
have_server || { echo "PostgreSQL server binaries still missing" >&2; exit 1; }
