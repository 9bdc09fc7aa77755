#!/usr/bin/env bash
# Installs what the key store tests need, when it is missing: Debian's `softhsm2` (a real
# PKCS#11 module, /usr/lib/softhsm/libsofthsm2.so, and `softhsm2-util`; the tests make
# their own token directory, the package's system token store is not used) and `openssl`
# (the stand-in KMS of the command key slot tests). Idempotent, and quick when everything
# is there (no apt-get at all).
set -euo pipefail

want=()
command -v softhsm2-util >/dev/null 2>&1 && [ -e /usr/lib/softhsm/libsofthsm2.so ] ||
  want+=(softhsm2)
command -v openssl >/dev/null 2>&1 || want+=(openssl)
[ "${#want[@]}" -eq 0 ] && exit 0

echo "installing ${want[*]} (key store tests)" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
command -v softhsm2-util >/dev/null 2>&1 || { echo "softhsm2-util still missing" >&2; exit 1; }
