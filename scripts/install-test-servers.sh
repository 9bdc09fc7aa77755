#!/usr/bin/env bash
# Installs the S3 servers the remote-storage tests start on 127.0.0.1, once per machine,
# into a cached directory (reused when the right version is already there):
#   s3s-fs 0.14.1  single-process S3 server on a directory; enforces conditional creates
#                  (about 4 minutes to build on 2 cores). Later releases need a newer Rust.
#   garage 2.5.0   the distributed store the cluster tests run three nodes of
#                  (16-25 minutes to build on 2 cores).
# Usage: scripts/install-test-servers.sh [s3s-fs|garage|all]   (default: all)
# The directory is $CHATVAULT_TEST_BIN (default $HOME/.cache/chatvault/bin); the tests look
# there too. Builds run under `nice -n 19` so a shared machine stays usable, each in its
# own target directory under $HOME/.cache/chatvault/install-target so a failed build
# resumes where it stopped.
set -euo pipefail

BIN_DIR="${CHATVAULT_TEST_BIN:-$HOME/.cache/chatvault/bin}"
BUILD_ROOT="$HOME/.cache/chatvault/install-target"
S3S_FS_VERSION="0.14.1"
GARAGE_VERSION="2.5.0"
mkdir -p "$BIN_DIR" "$BUILD_ROOT"

# installed NAME VERSION: true when $BIN_DIR/NAME exists and its stamp names VERSION.
installed() {
  [ -x "$BIN_DIR/$1" ] && [ "$(cat "$BIN_DIR/$1.version" 2>/dev/null)" = "$2" ]
}

install_s3s_fs() {
  if installed s3s-fs "$S3S_FS_VERSION"; then return 0; fi
  echo "installing s3s-fs $S3S_FS_VERSION into $BIN_DIR (about 4 minutes)" >&2
  local start=$SECONDS
  CARGO_TARGET_DIR="$BUILD_ROOT/s3s-fs" nice -n 19 cargo install s3s-fs \
    --version "=$S3S_FS_VERSION" --locked --features binary \
    --root "$BUILD_ROOT/s3s-fs-root" --quiet
  cp "$BUILD_ROOT/s3s-fs-root/bin/s3s-fs" "$BIN_DIR/s3s-fs.tmp"
  mv "$BIN_DIR/s3s-fs.tmp" "$BIN_DIR/s3s-fs"
  echo "$S3S_FS_VERSION" >"$BIN_DIR/s3s-fs.version"
  echo "s3s-fs installed in $((SECONDS - start)) s" >&2
}

install_garage() {
  if installed garage "$GARAGE_VERSION"; then return 0; fi
  echo "installing garage $GARAGE_VERSION into $BIN_DIR (16-25 minutes on 2 cores)" >&2
  local start=$SECONDS
  CARGO_TARGET_DIR="$BUILD_ROOT/garage" nice -n 19 cargo install garage \
    --version "=$GARAGE_VERSION" --locked --no-default-features \
    --features bundled-libs,lmdb,sqlite \
    --root "$BUILD_ROOT/garage-root" --quiet
  cp "$BUILD_ROOT/garage-root/bin/garage" "$BIN_DIR/garage.tmp"
  mv "$BIN_DIR/garage.tmp" "$BIN_DIR/garage"
  echo "$GARAGE_VERSION" >"$BIN_DIR/garage.version"
  echo "garage installed in $((SECONDS - start)) s" >&2
}

case "${1:-all}" in
  s3s-fs) install_s3s_fs ;;
  garage) install_garage ;;
  all) install_s3s_fs; install_garage ;;
  *) echo "usage: $0 [s3s-fs|garage|all]" >&2; exit 2 ;;
esac
