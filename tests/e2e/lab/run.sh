#!/usr/bin/env bash
# Boots Xen 4.17 + a Debian PV dom0 under QEMU (TCG) and runs SCRIPT inside dom0.
#
#   tests/e2e/lab/run.sh [--timeout SECS] [--verbose] SCRIPT [ARGS...]
#
# SCRIPT is a path on the host.  dom0 sees the whole host root (shared read-only
# over virtfs) at the same paths, so SCRIPT, the repository and its build tree
# are all there as they are here, except below /tmp /run /var/log /var/lib/xen
# /var/lib/xenstored and /srv, which dom0 covers with fresh tmpfs or the work
# share.  By default a tmpfs overlay makes every other path writable too
# (/etc/xenapid, /var/lib/xenapid...); such writes stay in dom0's RAM and are
# lost at power-off, the host never sees them.  Big files belong in
# $XENLAB_WORK, which is on the host's disk.  SCRIPT runs as root in dom0 once
# Xen's tooling is up (oxenstored, xenconsoled, libxl/xl, blkback, netback,
# bridge, loop, 8021q loaded, lo up), with these variables set:
#   XENLAB_WORK          writable folder for the script (its cwd), /srv/work
#   XENLAB_LOGS          writable folder whose contents the host keeps, /srv/logs
#   XENLAB_CONSOLE_DIR   where xenconsoled writes guest-NAME.log, /srv/console
#   XENLAB_GUEST_KERNEL  PV guest kernel: the Debian kernel dom0 runs, uncompressed
#                        (xl create ~5 s faster than from the bzImage)
#   XENLAB_KERNEL        the same kernel as shipped (bzImage; also bootable as PV)
#   XENLAB_GUEST_INITRD  test guest initramfs (see guest-init.sh for what it prints)
#   XENLAB_GUEST_DISK, XENLAB_GUEST_ISO  BIOS-bootable disk and CD of the same (HVM guests)
#   XENLAB_KVER          kernel version
#   XENLAB_REPO          this repository's root; XENLAB_LAB_DIR: tests/e2e/lab
# Everything under /srv is the run folder on the host:
#   $XENLAB_CACHE/runs/<id>/ (also $XENLAB_CACHE/runs/latest), holding
#   console.log (Xen + dom0 serial console), script.log (SCRIPT's stdout+stderr,
#   also streamed to this command's stdout as it runs), rc, status, work/, logs/,
#   console/.
#
# Options / environment:
#   --timeout SECS | XENLAB_TIMEOUT   whole-run limit, QEMU is killed after it (default 600)
#   --verbose | XENLAB_VERBOSE=1      also stream the serial console to stderr
#   XENLAB_CACHE      the cache setup.sh filled (default <repo>/var/xenlab)
#   XENLAB_MEM        QEMU memory in MiB (default 2048)
#   XENLAB_DOM0_MEM   dom0 memory in MiB (default 1024); the rest is for guests
#   XENLAB_SMP        emulated CPUs (default 2)
#   XENLAB_CPU        QEMU CPU model (default qemu64,+svm,+npt: HAP for PVH/HVM)
#   XENLAB_HOSTFWD    e.g. "8080:80,8443:443": forward host 127.0.0.1:8080 to dom0
#                     port 80 etc. (QEMU user network, restrict=on; dom0 10.0.2.15)
#   XENLAB_KEEP_RUNS  how many run folders to keep (default 10)
#   XENLAB_XEN_ARGS / XENLAB_DOM0_ARGS  extra Xen / dom0 kernel command line
#   XENLAB_9P_CACHE   dom0's 9p cache mode for the host root (default loose: files
#                     changed on the host during a run may not be seen in dom0)
#   XENLAB_OVERLAY    1 (default): tmpfs overlay over the host root in dom0, so
#                     all of it is writable there; 0: read-only but for the above
#
# Exit status: SCRIPT's own exit status if it ran to its end; otherwise
#   2   usage error
#   3   lab not set up (run tests/e2e/lab/setup.sh)
#   124 timeout (of the whole run, or SCRIPT stopped by its own limit, which is
#       the run's deadline less 15 s so that logs are still collected)
#   125 Xen/dom0 failed to boot or Xen's tooling failed to start
#   126 QEMU failed to start
# (so a SCRIPT should keep to exit codes below 124).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
cache="${XENLAB_CACHE:-$repo/var/xenlab}"
timeout_s="${XENLAB_TIMEOUT:-600}"
verbose="${XENLAB_VERBOSE:-0}"

log() { echo "xenlab: $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) [ $# -ge 2 ] || usage; timeout_s="$2"; shift 2 ;;
    --timeout=*) timeout_s="${1#*=}"; shift ;;
    --verbose|-v) verbose=1; shift ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -*) log "unknown option $1"; usage ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || usage
case "$timeout_s" in ''|*[!0-9]*) log "--timeout needs whole seconds"; exit 2 ;; esac
script="$(readlink -f -- "$1")"; shift
[ -f "$script" ] || { log "no such script: $1"; exit 2; }

# Paths dom0 covers with its own mounts are not the host's there.
hidden_in_dom0() {
  case "$1/" in /tmp/*|/run/*|/var/run/*|/var/log/*|/var/lib/xen/*|/var/lib/xenstored/*|/srv/*|/proc/*|/sys/*|/dev/*) return 0 ;; esac
  return 1
}
if hidden_in_dom0 "$script"; then
  log "$script is below a folder dom0 replaces with its own (tmpfs/work share); put it elsewhere"
  exit 2
fi

[ -f "$cache/lab.env" ] || { log "lab not set up: no $cache/lab.env (run tests/e2e/lab/setup.sh)"; exit 3; }
# shellcheck disable=SC1091
. "$cache/lab.env"
for f in "$XENLAB_XEN" "$XENLAB_KERNEL" "${XENLAB_GUEST_KERNEL:-}" "$XENLAB_DOM0_INITRD" "$XENLAB_GUEST_INITRD"; do
  [ -s "$f" ] || { log "lab not set up: $f missing (run tests/e2e/lab/setup.sh)"; exit 3; }
done
if hidden_in_dom0 "$(readlink -f "$cache")"; then
  log "XENLAB_CACHE=$cache is below a folder dom0 replaces with its own; put it elsewhere"
  exit 3
fi
command -v qemu-system-x86_64 >/dev/null || { log "qemu-system-x86_64 missing (run setup.sh)"; exit 3; }

# ---- the run folder (dom0's /srv) -----------------------------------------
runs="$cache/runs"
mkdir -p "$runs"
id="$(date +%Y%m%d-%H%M%S)-$$"
run="$runs/$id"
mkdir -p "$run/work" "$run/logs" "$run/console"
ln -sfn "$id" "$runs/latest"
keep="${XENLAB_KEEP_RUNS:-10}"
# shellcheck disable=SC2012
ls -1d "$runs"/2*-* 2>/dev/null | sort | head -n "-$keep" | while read -r old; do rm -rf -- "$old"; done || true

q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
start_epoch="$(date +%s)"
deadline=$((start_epoch + timeout_s))
{
  echo "XENLAB_STAGE2=$(q "$here/dom0-stage2.sh")"
  echo "XENLAB_SCRIPT=$(q "$script")"
  echo "XENLAB_KVER=$(q "$XENLAB_KVER")"
  echo "XENLAB_MODROOT=$(q "$XENLAB_MODROOT")"
  echo "XENLAB_KERNEL=$(q "$XENLAB_KERNEL")"
  echo "XENLAB_GUEST_KERNEL=$(q "$XENLAB_GUEST_KERNEL")"
  echo "XENLAB_GUEST_INITRD=$(q "$XENLAB_GUEST_INITRD")"
  echo "XENLAB_GUEST_DISK=$(q "${XENLAB_GUEST_DISK:-$cache/hvm-disk.img}")"
  echo "XENLAB_GUEST_ISO=$(q "${XENLAB_GUEST_ISO:-$cache/iso/xenlab-guest.iso}")"
  echo "XENLAB_CONSOLE_DIR=$(q /srv/console)"
  echo "XENLAB_REPO=$(q "$repo")"
  echo "XENLAB_LAB_DIR=$(q "$here")"
  echo "XENLAB_DEADLINE=$(q "$deadline")"
  echo "XENLAB_HOSTFWD=$(q "${XENLAB_HOSTFWD:-}")"
} > "$run/lab.env"
[ $# -eq 0 ] || printf '%s\0' "$@" > "$run/script.args"

# ---- QEMU ---------------------------------------------------------------------
mem="${XENLAB_MEM:-2048}"
dom0_mem="${XENLAB_DOM0_MEM:-1024}"
xen_args="console=com1 com1=115200,8n1 dom0_mem=${dom0_mem}M,max:${dom0_mem}M ${XENLAB_XEN_ARGS:-}"
dom0_args="console=hvc0 earlyprintk=xen xenlab.9pcache=${XENLAB_9P_CACHE:-loose} xenlab.overlay=${XENLAB_OVERLAY:-1} ${XENLAB_DOM0_ARGS:-}"
qemu=(qemu-system-x86_64
  -machine q35 -cpu "${XENLAB_CPU:-qemu64,+svm,+npt}" -smp "${XENLAB_SMP:-2}" -m "$mem"
  -nodefaults -no-user-config -display none -monitor none -no-reboot
  -serial "file:$run/console.log"
  -kernel "$XENLAB_XEN" -append "$xen_args"
  -initrd "$XENLAB_KERNEL $dom0_args,$XENLAB_DOM0_INITRD"
  -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
  -virtfs "local,path=$run,mount_tag=xenlabwork,security_model=none,multidevs=remap"
)
if [ -n "${XENLAB_HOSTFWD:-}" ]; then
  fwd=""
  IFS=',' read -r -a pairs <<< "$XENLAB_HOSTFWD"
  for p in "${pairs[@]}"; do
    case "$p" in
      [0-9]*:[0-9]*) fwd="$fwd,hostfwd=tcp:127.0.0.1:${p%%:*}-:${p#*:}" ;;
      *) log "XENLAB_HOSTFWD: bad entry '$p' (want HOSTPORT:DOM0PORT)"; exit 2 ;;
    esac
  done
  qemu+=(-netdev "user,id=n0,restrict=on$fwd" -device "virtio-net-pci,netdev=n0")
fi
printf '%q ' "${qemu[@]}" > "$run/qemu.cmd"; echo >> "$run/qemu.cmd"

: > "$run/console.log"
: > "$run/script.log"
: > "$run/status"
log "run folder $run"
log "booting Xen + dom0 (timeout ${timeout_s}s) to run $script"
"${qemu[@]}" > "$run/qemu.out" 2>&1 &
qpid=$!
t0="$(date +%s.%N)"

streams=()
cleanup() {
  local p
  if kill -0 "$qpid" 2>/dev/null; then
    kill "$qpid" 2>/dev/null || true
    sleep 1
    kill -9 "$qpid" 2>/dev/null || true
  fi
  for p in "${streams[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

tail -n +1 -F --pid="$qpid" "$run/script.log" 2>/dev/null &
streams+=($!)
if [ "$verbose" = 1 ]; then
  tail -n +1 -F --pid="$qpid" "$run/console.log" >&2 2>/dev/null &
  streams+=($!)
fi

elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
timed_out=0
seen=0
done_at=""
boot_s=""
while kill -0 "$qpid" 2>/dev/null; do
  # Report dom0's progress lines as they arrive.
  n="$(wc -l < "$run/status")"
  if [ "$n" -gt "$seen" ]; then
    while read -r name _; do
      case "$name" in
        tooling-ready) boot_s="$(elapsed)"; log "dom0 and Xen tooling ready after ${boot_s}s"; echo "TIMING boot_s=$boot_s" ;;
        tooling-failed) log "Xen tooling failed to start in dom0" ;;
        script-end) log "script finished after $(elapsed)s" ;;
      esac
    done < <(sed -n "$((seen + 1)),${n}p" "$run/status")
    seen="$n"
  fi
  now="$(date +%s)"
  if [ "$now" -ge "$deadline" ]; then
    timed_out=1
    log "TIMEOUT after ${timeout_s}s: killing QEMU"
    break
  fi
  # dom0 powers itself off after the script; don't wait long for it.
  if [ -z "$done_at" ] && { [ -s "$run/rc" ] || grep -q '^tooling-failed' "$run/status"; }; then
    done_at="$now"
  fi
  if [ -n "$done_at" ] && [ $((now - done_at)) -ge 30 ]; then
    log "dom0 did not power off 30s after the script ended: killing QEMU"
    break
  fi
  sleep 0.25
done
if kill -0 "$qpid" 2>/dev/null; then
  kill "$qpid" 2>/dev/null || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$qpid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$qpid" 2>/dev/null || true
fi
qrc=0
wait "$qpid" 2>/dev/null || qrc=$?
sleep 0.3   # let tail print the script's last lines
for p in "${streams[@]}"; do kill "$p" 2>/dev/null || true; done
streams=()
total_s="$(elapsed)"
echo "TIMING total_s=$total_s"

console_tail() {
  log "---- last 40 lines of $run/console.log ----"
  tail -n 40 "$run/console.log" | sed 's/\r$//' >&2 || true
  log "----"
}

if [ "$timed_out" = 1 ]; then
  console_tail
  log "FAILED: timeout (${timeout_s}s); see $run"
  exit 124
fi
if [ -s "$run/rc" ]; then
  rc="$(tr -dc '0-9' < "$run/rc")"
  rc="${rc:-125}"
  if [ "$rc" = 0 ]; then
    log "script passed (${total_s}s); logs in $run"
  else
    log "script exited with $rc; logs in $run (script.log, console/, logs/)"
    [ "$rc" != 124 ] || log "(124: the script was stopped by the run's time limit)"
  fi
  exit "$rc"
fi
if [ ! -s "$run/console.log" ] && [ "$qrc" != 0 ]; then
  log "QEMU failed to start (exit $qrc):"
  cat "$run/qemu.out" >&2 || true
  exit 126
fi
console_tail
if grep -q '^tooling-failed' "$run/status"; then
  log "FAILED: Xen tooling did not start in dom0: $(cat "$run/tooling-error" 2>/dev/null)"
elif grep -q '^stage2-start' "$run/status"; then
  log "FAILED: dom0 stopped before the script ended (QEMU exit $qrc)"
else
  log "FAILED: Xen/dom0 did not boot (QEMU exit $qrc)"
  [ ! -s "$run/qemu.out" ] || { log "QEMU said:"; cat "$run/qemu.out" >&2; }
fi
exit 125
