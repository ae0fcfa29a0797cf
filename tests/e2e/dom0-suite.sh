#!/bin/bash
# The e2e suite's dom0 side, run inside the Xen lab by tests/e2e/run.sh:
#
#   tests/e2e/lab/run.sh tests/e2e/dom0-suite.sh
#
# Starts xenapid (--backend libxl, 127.0.0.1:8080, state dir on tmpfs,
# XENAPID_ROOT_PASSWORD set, debug log with each line timestamped), runs
# tests/e2e/suite.py against it, stops it, and copies its logs and the suite's
# results to $XENLAB_LOGS/e2e.  Exit status: the suite's (0 all passed, 1 some
# failed), 2 when xenapid could not be started.
#
# The same script runs the suite on a machine without Xen against the
# simulator (the Xen-only steps are skipped):
#
#   XENAPID_E2E_BACKEND=sim tests/e2e/dom0-suite.sh
#
# Options: --bin XENAPID (default $XENAPID_BIN, else <repo>/build/xenapid);
# --only STEP,STEP... runs only those steps of suite.py (the others are
# reported as skipped; for working on a step, not for CI); --also STEP,...
# runs those opt-in steps beside the default list; --storm N: guests
# in the boot-storm step (default 20).
# Environment: XENAPID_E2E_BACKEND (libxl in the lab, sim elsewhere);
# E2E_TRACE_HOTPLUG=0 leaves Xen's hotplug scripts as they are (by default, in
# the lab only, /etc/xen/scripts/block and vif-bridge are wrapped in dom0's RAM
# overlay to log their start and end times for the benchmark's breakdown).
#
# Internal: `dom0-suite.sh --start-daemon` starts xenapid again with the
# settings exported by the first invocation (the suite's restart step).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

# Starts xenapid in the background, its stdout+stderr timestamped into
# $E2E_DAEMON_LOG, its pid in $E2E_PIDFILE.
start_daemon() {
  local ts='import sys, time
for l in iter(sys.stdin.readline, ""):
    sys.stdout.write("%.3f %s" % (time.time(), l))
    sys.stdout.flush()'
  echo "$(date +%s.%N | cut -c1-14) ---- e2e: starting $E2E_BIN --config $E2E_CONFIG" >> "$E2E_DAEMON_LOG"
  # --strace: every thread's network and fsync calls with their times (-T), to find where a
  # phase waits (seccomp-bpf: the other calls are not stopped, so the daemon keeps its pace);
  # --strace-calls SET traces strace's -e trace=SET instead ("all": what a VM.start's thread calls)
  local wrap=()
  [ -n "${E2E_STRACE:-}" ] && wrap=(strace -f --seccomp-bpf -e trace="${E2E_STRACE_CALLS:-%network,fsync,fdatasync}" -tt -T -o "$E2E_STRACE.$(date +%s)")
  XENAPID_ROOT_PASSWORD="$E2E_PASSWORD" \
    "${wrap[@]}" "$E2E_BIN" --config "$E2E_CONFIG" --foreground \
    > >(python3 -u -c "$ts" >> "$E2E_DAEMON_LOG") 2>&1 < /dev/null &
  echo $! > "$E2E_PIDFILE"
  if [ ${#wrap[@]} -gt 0 ]; then # the daemon's pid, not strace's: the suite signals and measures it
    local p=$! c
    for _ in $(seq 100); do
      c="$(pgrep -P "$p" -x xenapid)" && { echo "$c" > "$E2E_PIDFILE"; break; }
      sleep 0.1
    done
  fi
}

if [ "${1:-}" = --start-daemon ]; then
  : "${E2E_CONFIG:?--start-daemon is for the suite, which dom0-suite.sh runs}"
  start_daemon
  exit 0
fi
bin="${XENAPID_BIN:-$repo/build/xenapid}"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --bin=*) bin="${1#--bin=}"; shift ;;
    --only) export E2E_ONLY="$2"; shift 2 ;;
    --only=*) export E2E_ONLY="${1#--only=}"; shift ;;
    --also) export E2E_ALSO="$2"; shift 2 ;;
    --storm) export E2E_STORM_GUESTS="$2"; shift 2 ;;
    --strace) export E2E_STRACE=1; shift ;;
    --strace-calls) export E2E_STRACE=1 E2E_STRACE_CALLS="$2"; shift 2 ;;
    *) echo "usage: $0 [--bin XENAPID] [--only STEP,STEP...] [--also STEP,STEP...] [--storm GUESTS] [--strace] [--strace-calls SET]" >&2; exit 2 ;;
  esac
done

say() { echo "e2e-dom0: $*"; }

backend="${XENAPID_E2E_BACKEND:-}"
if [ -n "${XENLAB_WORK:-}" ]; then
  backend="${backend:-libxl}"
  work="$XENLAB_WORK/e2e"
  logs="$XENLAB_LOGS/e2e"
  state=/run/xenapid-e2e            # tmpfs in dom0 (the suspend image lands here too)
  port=8080
  # (run.sh stops this script 15 s before its deadline; keep 60 s more to stop xenapid and keep the logs)
  deadline=$(( ${XENLAB_DEADLINE:-0} > 0 ? XENLAB_DEADLINE - 75 : $(date +%s) + 840 ))
else
  backend="${backend:-sim}"
  [ "$backend" = sim ] || { say "not in the Xen lab: only XENAPID_E2E_BACKEND=sim can run here"; exit 2; }
  work="$(mktemp -d "${TMPDIR:-/tmp}/xenapid-e2e.XXXXXX")"
  logs="$work/logs"
  state="$work/state"
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  deadline=$(( $(date +%s) + 600 ))
fi
[ -x "$bin" ] || { say "no xenapid binary at $bin (build first: scripts/build.sh)"; exit 2; }

rm -rf "$state"
mkdir -p "$work" "$logs" "$state"
export E2E_BIN="$bin"
export E2E_CONFIG="$state/xenapid.conf"
export E2E_DAEMON_LOG="$work/xenapid.log"
[ -n "${E2E_STRACE:-}" ] && export E2E_STRACE="$work/xenapid.strace"
export E2E_PIDFILE="$state/xenapid.pid"
export E2E_PASSWORD="e2e-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export E2E_URL="http://127.0.0.1:$port/"
export E2E_WORK="$work"
export E2E_BACKEND="$backend"
export E2E_DEADLINE="$deadline"
export E2E_START_CMD="$(printf '%q' "$here/dom0-suite.sh") --start-daemon"
: > "$E2E_DAEMON_LOG"

cat > "$E2E_CONFIG" <<EOF
listen = 127.0.0.1:$port
state_dir = $state
unix_socket = $state/xapi.sock
accounts_file = $state/accounts
backend = $backend
log_target = stderr
log_level = debug
auth_fail_delay_ms = 300
clean_shutdown_timeout = 120
op_wait_timeout = 60
plugin_dir = $here/plugins
plugin_pythonpath = $repo/host/python
# The time limit of driver I/O (an NFS server that stops answering: steps_nfs.py's IO_TIMEOUT).
# 60 s: under TCG with another lab running, the lvm SR's pvcreate + vgcreate took over 30 s.
storage_io_timeout = 60
EOF

if [ "$backend" = libxl ]; then
  # xenapid reads guest consoles where the lab's xenconsoled writes them.
  echo "console_log_dir = $XENLAB_CONSOLE_DIR" >> "$E2E_CONFIG"
fi

if [ "$backend" = libxl ]; then
  # Time Xen's hotplug scripts (benchmark breakdown): each is wrapped, in
  # dom0's RAM overlay only, to log "START END NAME ARGS rc=N" after running.
  # The wrapper also fails one "add" on demand (the flag file
  # $work/hotplug-fail-NAME, removed as it is used): a failed plug must be
  # rolled back; and delays one "add" by the seconds in $work/hotplug-delay-NAME
  # (removed as it is used): a script past libxl's 40 s hotplug limit.
  if [ "${E2E_TRACE_HOTPLUG:-1}" = 1 ] && [ -w /etc/xen/scripts ]; then
    export E2E_HOTPLUG_TRACE="$work/hotplug-trace.log"
    export E2E_HOTPLUG_FAIL_DIR="$work"
    : > "$E2E_HOTPLUG_TRACE"
    # wrap DEST PROGRAM NAME FLAG: DEST runs PROGRAM, logs it as NAME, fails
    # an "add" when $work/hotplug-fail-FLAG exists (FLAG is evaluated at run time)
    wrap() {
      cat > "$1" <<EOF
#!/bin/bash
# e2e: times $2 for the benchmark's breakdown
s=\$(date +%s.%N)
f=$4
if [ "\$1" = add ] && rm "$work/hotplug-fail-\$f" 2>/dev/null; then
  echo "\$s \$(date +%s.%N) $3 \$* \${XENBUS_PATH:-} rc=1 (injected failure)" >> "$E2E_HOTPLUG_TRACE"
  exit 1
fi
if [ "\$1" = add ] && d=\$(cat "$work/hotplug-delay-\$f" 2>/dev/null) && rm "$work/hotplug-delay-\$f" 2>/dev/null; then
  sleep "\$d"
fi
"$2" "\$@"
rc=\$?
echo "\$s \$(date +%s.%N) $3 \$* \${XENBUS_PATH:-} rc=\$rc" >> "$E2E_HOTPLUG_TRACE"
exit \$rc
EOF
      chmod 755 "$1"
    }
    for s in block vif-bridge; do
      f="/etc/xen/scripts/$s"
      [ -f "$f" ] && [ ! -e "$f.e2e-orig" ] || continue
      mv "$f" "$f.e2e-orig"
      wrap "$f" "$f.e2e-orig" "$s" "$s"
    done
    # xenapid's own device script (beside the daemon; the build is read-only
    # here) is wrapped the same way, through hotplug_helper; a disk's failure
    # flag keeps the name of the script it replaces (hotplug-fail-block).
    helper="$(dirname "$bin")/xenapid-hotplug"
    if [ -x "$helper" ]; then
      wrap "$work/xenapid-hotplug" "$helper" xenapid-hotplug \
        '$([ "${XENBUS_TYPE:-}" = vbd ] && echo block || echo vif-bridge)'
      echo "hotplug_helper = $work/xenapid-hotplug" >> "$E2E_CONFIG"
    fi
    say "hotplug scripts wrapped for timing: $E2E_HOTPLUG_TRACE"
  fi
fi

say "starting xenapid ($backend) on $E2E_URL, state $state"
start_daemon
end=$((SECONDS + 60))
until python3 -c "import socket, sys; socket.create_connection(('127.0.0.1', $port), timeout=0.5)" 2>/dev/null; do
  if ! kill -0 "$(cat "$E2E_PIDFILE")" 2>/dev/null || [ "$SECONDS" -ge "$end" ]; then
    say "FAIL: xenapid did not start listening; its log:"
    tail -n 40 "$E2E_DAEMON_LOG"
    cp -a "$work/." "$logs/" 2>/dev/null || true
    echo "0 passed, 1 failed"
    exit 2
  fi
  sleep 0.2
done
say "xenapid is up (pid $(cat "$E2E_PIDFILE"))"

# The lab's time limit sends SIGTERM to all of us: suite.py then reports at once,
# and this script still stops xenapid and keeps the logs.
trap 'say "SIGTERM: the run is out of time"' TERM
python3 -u "$here/suite.py"
rc=$?
trap - TERM

# Stop xenapid (its log shows how it went).
pid="$(cat "$E2E_PIDFILE" 2>/dev/null || true)"
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    say "xenapid (pid $pid) did not exit 20 s after SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
fi
sleep 0.5   # the timestamper's last lines

# Keep the small files for the host: daemon log, config, state database, suite
# results, xl config and output (the disk images stay in the run's work/ folder).
find "$work" -maxdepth 1 -type f \( -name '*.log' -o -name '*.json' -o -name '*.cfg' -o -name '*.txt' \) \
  -exec cp -a {} "$logs/" \; 2>/dev/null || true
cp -a "$E2E_CONFIG" "$logs/" 2>/dev/null || true
find "$state" -maxdepth 1 -type f ! -name '*.img' ! -name '*.sock' -exec cp -a {} "$logs/" \; 2>/dev/null || true
if [ "$backend" = libxl ]; then
  ls -la /var/lib/xen > "$logs/var-lib-xen.txt" 2>&1 || true
  xl list > "$logs/xl-list-end.txt" 2>&1 || true
fi
if [ "$rc" != 0 ]; then
  say "the suite failed (exit $rc); the daemon's last log lines:"
  tail -n 30 "$E2E_DAEMON_LOG" | sed 's/^/  | /'
fi
say "logs in $logs"
[ -n "${XENLAB_WORK:-}" ] || say "(host run: $work kept)"
exit "$rc"
