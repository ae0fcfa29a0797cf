#!/bin/bash
# dom0's PID 1 after switch_root (started by dom0-init.sh with the host root as
# / (read-only virtfs, under a tmpfs overlay unless XENLAB_OVERLAY=0), fresh
# tmpfs on /run /var/log /var/lib/xen /var/lib/xenstored /tmp, and the run's
# work share on /srv).
#
# Brings up Xen's tooling (modules, xenfs, oxenstored, xen-init-dom0,
# xenconsoled), runs the test script named by run.sh, stores its output and exit
# code in the work share, then powers dom0 off.  Progress lines go to the
# console and to /srv/status ("NAME UPTIME" per line), which run.sh reads.
#
# As PID 1 this must never exit: every path ends in poweroff.
set -u
export PATH=/usr/lib/xen-4.17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LANG=C LC_ALL=C
export HOME=/tmp/home
umask 022

W=/srv
# shellcheck disable=SC1091
. "$W/lab.env"

say() { echo "xenlab-stage2: $*"; }
status() {
  echo "$1 $(cut -d' ' -f1 /proc/uptime)" >> "$W/status"
  say "$1"
}
power_off() {
  sync
  /bin/busybox poweroff -f
  sleep 5
  echo o > /proc/sysrq-trigger
  while :; do sleep 60; done
}
trap power_off EXIT
fail() {
  say "ERROR: $*"
  echo "$*" > "$W/tooling-error"
  status tooling-failed
  collect_logs
  power_off
}
collect_logs() {
  mkdir -p "$W/logs"
  cp -a /var/log/xen "$W/logs/" 2>/dev/null || true
  dmesg > "$W/logs/dmesg.txt" 2>/dev/null || true
  xl dmesg > "$W/logs/xen-dmesg.txt" 2>/dev/null || true
}
# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s, bounded.
wait_for() {
  local secs="$1" what="$2"; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || { say "timed out after ${secs}s waiting for $what"; return 1; }
    sleep 0.2
  done
}

status stage2-start
mkdir -p "$HOME" "$W/logs"
hostname xenlab-dom0 2>/dev/null || true

# Make the unpacked kernel's modules the ones plain `modprobe` (and the kernel's
# own module autoloading) finds: tmpfs over /lib/modules, bind of the cache's copy.
mount -t tmpfs -o mode=0755 tmpfs /lib/modules || fail "tmpfs on /lib/modules"
mkdir -p "/lib/modules/$XENLAB_KVER"
mount --bind -o ro "$XENLAB_MODROOT/lib/modules/$XENLAB_KVER" "/lib/modules/$XENLAB_KVER" \
  || fail "bind modules of $XENLAB_KVER"
[ "$(uname -r)" = "$XENLAB_KVER" ] || fail "dom0 runs $(uname -r), lab.env says $XENLAB_KVER"

ip link set lo up || fail "lo up"

# nf_tables and sch_tbf too, as on a host that has run them once: the kernel would load them on
# xenapid's first VIF rule (a VM.start's record, under its store's write lock) or first rate limit,
# and under nested emulation a modprobe through the 9p root takes seconds (the first VM.start's
# record took 1.4 s with little CPU in a lab run alone).
mods=(xen-evtchn xenfs xen-privcmd xen-gntdev xen-gntalloc xen-blkback xen-netback bridge loop 8021q nf_tables sch_tbf)
for m in "${mods[@]}"; do
  modprobe "$m" || fail "modprobe $m"
done

mountpoint -q /proc/xen || mount -t xenfs xenfs /proc/xen || fail "mount xenfs"
grep -q control_d /proc/xen/capabilities 2>/dev/null \
  || fail "not running as Xen's dom0 (/proc/xen/capabilities lacks control_d)"
mkdir -p /var/run/xen /var/run/xenstored /var/lib/xenstored /var/lib/xen /var/log/xen \
  "$XENLAB_CONSOLE_DIR"

status xenstored-start
oxenstored --pid-file=/var/run/xen/xenstored.pid >/var/log/xen/oxenstored.out 2>&1 \
  || fail "oxenstored failed: $(cat /var/log/xen/oxenstored.out)"
wait_for 30 "xenstore" xenstore-read / || fail "xenstored does not answer"
xen-init-dom0 >/var/log/xen/xen-init-dom0.out 2>&1 \
  || fail "xen-init-dom0 failed: $(cat /var/log/xen/xen-init-dom0.out)"
xenconsoled --pid-file=/var/run/xen/xenconsoled.pid --log=guest --log-dir="$XENLAB_CONSOLE_DIR" \
  >/var/log/xen/xenconsoled.out 2>&1 || fail "xenconsoled failed: $(cat /var/log/xen/xenconsoled.out)"
wait_for 10 "xenconsoled pid file" test -s /var/run/xen/xenconsoled.pid || fail "xenconsoled did not start"
xl info > "$W/logs/xl-info.txt" 2>&1 || fail "xl info failed: $(cat "$W/logs/xl-info.txt")"

# Optional port forward from the host (run.sh XENLAB_HOSTFWD): QEMU's user-mode
# network on a virtio NIC, with its fixed addresses (restrict=on: nothing leaves it).
if [ -n "${XENLAB_HOSTFWD:-}" ]; then
  modprobe virtio_net || fail "modprobe virtio_net"
  nic=""
  for p in /sys/class/net/*; do
    [ "$(basename "$(readlink -f "$p/device/driver" 2>/dev/null)")" = virtio_net ] && nic="$(basename "$p")"
  done
  [ -n "$nic" ] || fail "no virtio NIC for XENLAB_HOSTFWD"
  { ip link set "$nic" up && ip addr add 10.0.2.15/24 dev "$nic"; } || fail "configure $nic"
fi

status tooling-ready

# ---- the test script ------------------------------------------------------
export XENLAB_WORK="$W/work" XENLAB_LOGS="$W/logs"
export XENLAB_KERNEL XENLAB_GUEST_KERNEL XENLAB_GUEST_INITRD XENLAB_GUEST_DISK XENLAB_GUEST_ISO XENLAB_KVER XENLAB_CONSOLE_DIR XENLAB_REPO XENLAB_LAB_DIR XENLAB_DEADLINE
mkdir -p "$XENLAB_WORK"
args=()
[ -s "$W/script.args" ] && mapfile -d '' -t args < "$W/script.args"
say "running $XENLAB_SCRIPT ${args[*]:-}"
status script-start
cd "$XENLAB_WORK" || fail "cd $XENLAB_WORK"
runner=()
[ -x "$XENLAB_SCRIPT" ] || runner=(bash)
# Stop the script in time to collect logs before run.sh's own deadline (the
# emulated machine's clock is the host's, so the epoch deadline carries over).
limit=$(( ${XENLAB_DEADLINE:-0} - $(date +%s) - 15 ))
if [ "${XENLAB_DEADLINE:-0}" -gt 0 ]; then
  [ "$limit" -gt 5 ] || limit=5
  say "script time limit ${limit}s"
  timeout --kill-after=5 "$limit" "${runner[@]}" "$XENLAB_SCRIPT" "${args[@]}" > "$W/script.log" 2>&1 < /dev/null
else
  "${runner[@]}" "$XENLAB_SCRIPT" "${args[@]}" > "$W/script.log" 2>&1 < /dev/null
fi
rc=$?
cd /
echo "$rc" > "$W/rc"
status "script-end rc=$rc"

# Leave no domain running (their backends would keep loop devices busy) and
# keep the toolstack's logs for the host.
for d in $(xl list 2>/dev/null | awk 'NR > 1 && $2 != 0 { print $2 }'); do
  timeout 20 xl destroy "$d" >/dev/null 2>&1 || true
done
collect_logs
status power-off
power_off
