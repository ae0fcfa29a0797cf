#!/usr/bin/env bash
# The end-to-end suite on real Xen: sets up the Xen lab (Xen 4.17 + Debian dom0
# under QEMU, tests/e2e/lab/), builds xenapid if needed, boots the lab and runs
# tests/e2e/dom0-suite.sh in dom0, which starts xenapid --backend libxl there
# and drives it with tests/e2e/suite.py over XML-RPC: a file SR and VDI, a PV
# guest from a template with a disk and a NIC, its console, pause, reboot,
# shutdown, suspend/resume, hot-plug, a restart of xenapid, a host plugin
# (tests/e2e/plugins/xenstore.py) reading and writing the guest's xenstore,
# destroy; an HVM guest (qemu-xen, its VNC socket, its console); then the
# VM.start vs `xl create` benchmark.
#
#   tests/e2e/run.sh
#
# Prints a PASS/FAIL line per step, the benchmark table, and last a line
# "N passed, M failed". Exit status 0 only if every step passed.
#
# Environment:
#   XENAPID_E2E=0       skip the suite (prints so and exits 0)
#   XENAPID_E2E_TIMEOUT hard limit of the whole command in seconds (default 1500;
#                       the HVM steps hvm-disk-boot, hvm-hard-reboot, hvm-cd-boot add 4-6 min
#                       beside another lab)
#   XENAPID_E2E_NO_BUILD=1  use build/xenapid as it is
#   XENAPID_E2E_STORM=N guests in the opt-in boot-storm step (default 20)
#   XENAPID_E2E_STRACE=1  xenapid runs under `strace -f -tt -T` (logs/e2e/xenapid.strace.*;
#                       slows it: for finding where a phase waits, not for benchmarks)
#   XENAPID_E2E_STRACE_CALLS=SET  the same, tracing strace's -e trace=SET instead of the
#                       network and fsync calls (such as "all": what a VM.start's thread calls)
#   XENAPID_E2E_ONLY=STEP,STEP...  run only those steps of suite.py (while
#                       working on them; the others are reported as skipped)
#   XENAPID_E2E_ALSO=STEP,STEP...  run those opt-in steps (OPT_IN in suite.py)
#                       beside the default list
#   XENLAB_*            passed on to the lab (see tests/e2e/lab/README.md)
# Logs of the run: the run folder it names at the end, var/xenlab/runs/<id>/
# (script.log: the suite's output; logs/e2e/: xenapid.log with epoch timestamps,
# hotplug-trace.log, xl-create-*.log, benchmark.json, results.json; logs/xen/:
# libxl/xl logs; console/guest-*.log: guest consoles; console.log: Xen + dom0),
# and var/e2e/ (run.out, build.log, host-load.log).
set -uo pipefail
cd "$(dirname "$0")/../.."
repo="$(pwd)"

say() { echo "e2e: $*"; }

if [ "${XENAPID_E2E:-1}" = 0 ]; then
  say "skipped (XENAPID_E2E=0)"
  exit 0
fi

budget="${XENAPID_E2E_TIMEOUT:-1500}"
case "$budget" in ''|*[!0-9]*) say "XENAPID_E2E_TIMEOUT must be whole seconds"; exit 2 ;; esac
t_begin=$SECONDS
left() { echo $((budget - (SECONDS - t_begin))); }

finish() { # PASSED FAILED WHY...
  local p="$1" f="$2"; shift 2
  [ $# -eq 0 ] || say "$*"
  say "total $((SECONDS - t_begin)) s"
  echo "$p passed, $f failed"
  [ "$f" = 0 ] && exit 0
  exit 1
}

# ---- 1. the lab ----------------------------------------------------------------
say "setting up the Xen lab (tests/e2e/lab/setup.sh)"
if ! timeout --kill-after=10 "$(( $(left) > 600 ? 600 : $(left) ))" tests/e2e/lab/setup.sh; then
  echo "FAIL  lab-setup: tests/e2e/lab/setup.sh failed (see its output above)"
  finish 0 1
fi
echo "PASS  lab-setup ($((SECONDS - t_begin)) s)"

# ---- 2. xenapid, with the libxl backend -------------------------------------------
if [ "${XENAPID_E2E_NO_BUILD:-0}" != 1 ]; then
  say "building xenapid (scripts/build.sh)"
  t=$SECONDS
  mkdir -p var/e2e
  if ! timeout --kill-after=10 "$(( $(left) > 60 ? $(left) - 60 : 1 ))" scripts/build.sh -DXENAPID_LIBXL=ON > var/e2e/build.log 2>&1; then
    tail -n 40 var/e2e/build.log
    echo "FAIL  build: scripts/build.sh failed (var/e2e/build.log)"
    finish 1 1
  fi
  echo "PASS  build ($((SECONDS - t)) s)"
fi
bin="${XENAPID_BUILD_DIR:-build}/xenapid"
if [ ! -x "$bin" ] || ! nm -D --undefined-only "$bin" 2>/dev/null | grep -c libxl_ctx_alloc >/dev/null; then
  echo "FAIL  build: $bin is missing or was built without the libxl backend"
  finish 1 1
fi

# ---- 3. Xen under QEMU, the suite in dom0 -------------------------------------------
lab_timeout=$(( $(left) - 10 ))
if [ "$lab_timeout" -lt 240 ]; then
  echo "FAIL  lab-run: only $lab_timeout s left of the ${budget} s budget"
  finish 2 1
fi
# Xen prints HVM guests' firmware lines (hvmloader, SeaBIOS) only at this log level: the HVM step reads them.
export XENLAB_XEN_ARGS="${XENLAB_XEN_ARGS:-guest_loglvl=all}"
# dom0 reads the host's files through a cached 9p share: run a snapshot of the
# binary, so that a rebuild on the host during the run cannot change it under dom0.
mkdir -p var/e2e
cp -f "$bin" var/e2e/xenapid.tmp && mv -f var/e2e/xenapid.tmp var/e2e/xenapid
# the device script xenapid looks for beside itself
if [ -x "$(dirname "$bin")/xenapid-hotplug" ]; then
  cp -f "$(dirname "$bin")/xenapid-hotplug" var/e2e/xenapid-hotplug.tmp && mv -f var/e2e/xenapid-hotplug.tmp var/e2e/xenapid-hotplug
fi
# and the nbdkit plugin of VHD disks, which xenapid-hotplug looks for beside itself
if [ -f "$(dirname "$bin")/nbdkit-xenapid-vhd-plugin.so" ]; then
  cp -f "$(dirname "$bin")/nbdkit-xenapid-vhd-plugin.so" var/e2e/plugin.tmp && mv -f var/e2e/plugin.tmp var/e2e/nbdkit-xenapid-vhd-plugin.so
fi
# the libvirt step's LD_PRELOAD shim for libvirtd (tests/e2e/steps_libvirt.py), also found beside it
if [ -f "$(dirname "$bin")/libvirt-physinfo.so" ]; then
  cp -f "$(dirname "$bin")/libvirt-physinfo.so" var/e2e/libvirt-physinfo.so.tmp && mv -f var/e2e/libvirt-physinfo.so.tmp var/e2e/libvirt-physinfo.so
fi
# and the xl baselines' slow clock for libxl's limits (tests/e2e/shim/libxl_slowclock.c)
if [ -f "$(dirname "$bin")/libxl-slowclock.so" ]; then
  cp -f "$(dirname "$bin")/libxl-slowclock.so" var/e2e/libxl-slowclock.so.tmp && mv -f var/e2e/libxl-slowclock.so.tmp var/e2e/libxl-slowclock.so
fi
out="var/e2e/run.out"
# Timings under emulation depend on what else the machine runs: say so.
others="$(pgrep -c "^qemu-system-x86" 2>/dev/null || true)"
say "host: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)$([ "${others:-0}" = 0 ] || echo ", $others other QEMU process(es) running")"
[ "${others:-0}" = 0 ] || say "WARNING: other QEMU instances share the CPUs: the run will be slower and its benchmark noisier"
say "booting Xen + dom0 and running the suite in dom0 (limit ${lab_timeout}s; XENAPID_E2E_TIMEOUT=$budget for the whole)"
# Sample the host's load while the lab runs, to tell a slow run from a loaded machine.
sampler_log="var/e2e/host-load.log"
: > "$sampler_log"
# It ends with this script even when the script is killed (a timeout's SIGKILL): a sampler
# left behind would keep whatever its caller gave run.sh (such as a lock's descriptor) forever.
run_pid=$$
( while sleep 5 && kill -0 "$run_pid" 2>/dev/null; do
    n="$(pgrep -c "^qemu-system-x86" 2>/dev/null || true)"
    echo "$(cut -d' ' -f1 /proc/loadavg) $(( ${n:-1} > 0 ? ${n:-1} - 1 : 0 ))" >> "$sampler_log"
  done ) &
sampler=$!
timeout --kill-after=20 "$((lab_timeout + 5))" \
  tests/e2e/lab/run.sh --timeout "$lab_timeout" tests/e2e/dom0-suite.sh --bin "$repo/var/e2e/xenapid" \
    ${XENAPID_E2E_ONLY:+--only "$XENAPID_E2E_ONLY"} ${XENAPID_E2E_ALSO:+--also "$XENAPID_E2E_ALSO"} ${XENAPID_E2E_STORM:+--storm "$XENAPID_E2E_STORM"} \
    ${XENAPID_E2E_STRACE:+--strace} ${XENAPID_E2E_STRACE_CALLS:+--strace-calls "$XENAPID_E2E_STRACE_CALLS"} 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true

# The suite's own count, and what went wrong around it.
summary="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)"
passed=1   # lab-setup
[ "${XENAPID_E2E_NO_BUILD:-0}" = 1 ] || passed=2   # and build
failed=0
if [ -n "$summary" ]; then
  passed=$((passed + $(echo "$summary" | cut -d' ' -f1)))
  failed=$((failed + $(echo "$summary" | cut -d' ' -f3)))
fi
run_dir="$(sed -n 's/^xenlab: run folder //p' "$out" | tail -n 1)"
run_dir="${run_dir:-var/xenlab/runs/latest}"
case "$rc" in
  0) [ -n "$summary" ] || { echo "FAIL  suite: no result line from the suite"; failed=$((failed + 1)); } ;;
  1) [ "$failed" -gt 0 ] || { echo "FAIL  suite: exited 1 without a failed step"; failed=$((failed + 1)); } ;;
  2) echo "FAIL  xenapid-start: xenapid did not start in dom0 (see $run_dir/logs/e2e/xenapid.log)"
     [ "$failed" -gt 0 ] || failed=1 ;;
  124) echo "FAIL  lab-run: timeout (${lab_timeout}s): the suite was stopped; see $run_dir"; failed=$((failed + 1)) ;;
  125) echo "FAIL  lab-run: Xen/dom0 did not boot or Xen's tooling did not start; see $run_dir/console.log"; failed=$((failed + 1)) ;;
  126) echo "FAIL  lab-run: QEMU did not start"; failed=$((failed + 1)) ;;
  3) echo "FAIL  lab-run: the lab is not set up"; failed=$((failed + 1)) ;;
  *) echo "FAIL  lab-run: exit status $rc; see $run_dir"; failed=$((failed + 1)) ;;
esac
awk -v cpus="$(nproc)" '{ n++; if ($1 > m) m = $1; s += $1; if ($2 > 0) o++ } END {
  if (n) printf "e2e: host during the run: load average mean %.1f, max %.1f (%d CPUs); other QEMU instances running in %d%% of the samples\n", s / n, m, cpus, 100 * o / n }' "$sampler_log"
say "logs: $run_dir (script.log, logs/e2e/xenapid.log, logs/xen/, console/)"
finish "$passed" "$failed"
