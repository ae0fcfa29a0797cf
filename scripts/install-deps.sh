#!/usr/bin/env bash
# Installs the Debian 12 packages xenapid needs to build, run and test.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config python3 clang libclang-rt-14-dev
  libmicrohttpd-dev libxmlrpc-core-c3-dev libxml2-dev libjson-c-dev libxen-dev
  libsqlite3-dev libsystemd-dev libcurl4-openssl-dev libcmocka-dev libcrypt-dev libpam0g-dev
  libgnutls28-dev libnl-3-dev libnl-route-3-dev curl nodejs sqlite3 qemu-utils openssl
  dbus-daemon python3-dbus python3-gi pciutils libnftables-dev lvm2 nfs-common nfs-kernel-server nbdkit nbdkit-plugin-dev nbd-client open-iscsi tgt
  valgrind strace
)
# Debian's nodejs ships without npm; a machine whose nodejs bundles npm has it already.
command -v npm >/dev/null 2>&1 || pkgs+=(npm)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
