# shellcheck shell=bash
# Sourced by .ci/run and scripts/demo: installs what the build needs when it is missing
# (clang/libclang for the RocksDB bindings, make for jemalloc's build) and points cargo at a target directory outside
# the clone, so RocksDB's C++ is compiled once per machine rather than once per clone.

have_libclang() {
  ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1
}

if ! command -v cargo >/dev/null 2>&1; then
  echo "chatvault needs the Rust toolchain (cargo) on PATH" >&2
  exit 1
fi
if ! command -v clang >/dev/null 2>&1 || ! have_libclang || ! command -v make >/dev/null 2>&1; then
  echo "installing clang, libclang (the RocksDB bindings) and make (jemalloc)" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang libclang-dev make >/dev/null
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chatvault/target}"
mkdir -p "$CARGO_TARGET_DIR"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
