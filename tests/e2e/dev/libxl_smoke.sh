#!/bin/bash
# Developer check of the libxl backend on real Xen (not the e2e suite):
#
#   tests/e2e/lab/run.sh --timeout 1400 tests/e2e/dev/libxl_smoke.sh [--bin XENAPID] [STEPS]
#
# (--bin: a xenapid built elsewhere, e.g. a private build dir, instead of build/xenapid)
# Inside dom0: starts build/xenapid with the libxl backend on a fresh state
# dir, then drives it over XML-RPC (libxl_smoke.py): file SR + VDI with known
# bytes, network, PV VM with the lab's kernel and guest initramfs, VBD, VIF,
# start, console, pause/unpause, hot-plug, reboot, suspend/resume, daemon
# restart, guest- and outside-initiated shutdowns, shutdown. Bounded waits;
# xenapid's log goes to $XENLAB_LOGS/xenapid.log.
set -euo pipefail
: "${XENLAB_WORK:?run this inside the lab: tests/e2e/lab/run.sh $0}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="${XENLAB_REPO:-$(cd "$here/../../.." && pwd)}"

export SMOKE_BIN="$repo/build/xenapid"
if [ "${1:-}" = --bin ]; then
  SMOKE_BIN="$2"
  shift 2
fi
export SMOKE_STATE=/tmp/xenapid-smoke
export SMOKE_PORT=8080
export SMOKE_LOG="$XENLAB_LOGS/xenapid.log"
export SMOKE_SR="$XENLAB_WORK/sr"
export XENAPID_ROOT_PASSWORD=smoke-password

rm -rf "$SMOKE_STATE" "$SMOKE_SR"
mkdir -p "$SMOKE_STATE" "$SMOKE_SR"
cat > "$SMOKE_STATE/xenapid.conf" <<CONF
listen = 127.0.0.1:$SMOKE_PORT
state_dir = $SMOKE_STATE/var
unix_socket =
accounts_file = $SMOKE_STATE/accounts
backend = libxl
log_target = stderr
log_level = debug
clean_shutdown_timeout = 180
console_log_dir = $XENLAB_CONSOLE_DIR
CONF
export SMOKE_CONF="$SMOKE_STATE/xenapid.conf"
exec timeout --kill-after=5 1300 python3 -u "$here/libxl_smoke.py" "$@"
