#!/bin/bash
# Lab self-test, run inside dom0 by run.sh:
#
#   tests/e2e/lab/run.sh tests/e2e/lab/selftest.sh [--full]
#
# Creates a raw disk image with known bytes and a bridge xenbr0, starts a PV
# guest (the Debian kernel + the lab's guest initramfs) with that disk and one
# NIC with a fixed MAC, waits for the guest's console to show its marker, the
# disk's bytes and the MAC, then destroys it.  Prints TIMING lines.
# --full also checks, before the destroy, what the e2e tests will lean on: disk
# and NIC hot-plug and unplug, pause/unpause, a clean reboot (the guest comes
# back) and, instead of the destroy, a clean shutdown.
set -euo pipefail
full=0
[ "${1:-}" != --full ] || full=1

: "${XENLAB_WORK:?run this inside the lab: tests/e2e/lab/run.sh $0}"
name="xenlab-selftest"
mac="00:16:3e:5e:1f:01"
pattern="XENLAB-SELFTEST-DISK-$(date +%s)"
disk="$XENLAB_WORK/selftest-disk.img"
cfg="$XENLAB_WORK/$name.cfg"
conlog="$XENLAB_CONSOLE_DIR/guest-$name.log"
wait_s="${SELFTEST_WAIT:-120}"

say() { echo "selftest: $*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
failed() {
  say "FAIL: $*"
  say "---- $conlog (last 30 lines) ----"; tail -n 30 "$conlog" 2>/dev/null || true
  say "---- /var/log/xen/xl-$name.log (last 30 lines) ----"; tail -n 30 "/var/log/xen/xl-$name.log" 2>/dev/null || true
  xl list || true
  xl destroy "$name" >/dev/null 2>&1 || true
  echo "0 passed, 1 failed"
  exit 1
}

# The disk: 64 MiB sparse raw image, starting with a known line.
rm -f "$disk"
truncate -s 64M "$disk"
printf '%s\n' "$pattern" | dd of="$disk" conv=notrunc status=none

# The bridge the guest's vif is put on by /etc/xen/scripts/vif-bridge.
if ! ip link show xenbr0 >/dev/null 2>&1; then
  ip link add name xenbr0 type bridge stp_state 0 forward_delay 0
fi
ip link set xenbr0 up

cat > "$cfg" <<EOF
name = "$name"
type = "pv"
kernel = "$XENLAB_GUEST_KERNEL"
ramdisk = "$XENLAB_GUEST_INITRD"
extra = "console=hvc0 xenlab.test=selftest"
memory = 128
vcpus = 1
disk = [ "format=raw, vdev=xvda, access=rw, target=$disk" ]
vif = [ "mac=$mac, bridge=xenbr0" ]
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "destroy"
EOF

say "xl create $cfg"
t0="$(now)"
timeout 180 xl create "$cfg" || failed "xl create failed"
create_s="$(since "$t0")"
echo "TIMING xl_create_s=$create_s"
domid="$(xl domid "$name")" || failed "no domid for $name"
say "domain $name is domid $domid"

# Wait (bounded) for everything the guest should print.
want=("XENLAB-GUEST-UP" "XENLAB-DISK xvda: $pattern" "XENLAB-MAC eth0: $mac" "XENLAB-GUEST-READY")
end=$((SECONDS + wait_s))
while :; do
  missing=()
  for w in "${want[@]}"; do
    grep -qF -- "$w" "$conlog" 2>/dev/null || missing+=("$w")
  done
  [ ${#missing[@]} -gt 0 ] || break
  [ "$SECONDS" -lt "$end" ] || failed "after ${wait_s}s the guest console lacks: ${missing[*]}"
  sleep 0.5
done
echo "TIMING guest_ready_s=$(since "$t0")"
say "guest console:"
grep -E '^XENLAB-' "$conlog" | sed 's/\r$//; s/^/  /'

# Check the backend side too: blkback on a loop device, the vif on xenbr0.
xl block-list "$name"
xl network-list "$name"
[ -e "/sys/class/net/xenbr0/brif/vif$domid.0" ] || failed "vif$domid.0 is not on xenbr0"

# wait_console SECONDS TEXT [COUNT]: until TEXT is on COUNT (default 1) lines of the guest console.
wait_console() {
  local end=$((SECONDS + $1)) n
  while :; do
    n="$(grep -cF -- "$2" "$conlog" 2>/dev/null || true)"
    [ "${n:-0}" -lt "${3:-1}" ] || return 0
    [ "$SECONDS" -lt "$end" ] || failed "after $1 s the guest console lacks '$2' (x${3:-1})"
    sleep 0.5
  done
}

if [ "$full" = 1 ]; then
  disk2="$XENLAB_WORK/selftest-disk2.img"
  rm -f "$disk2"; truncate -s 16M "$disk2"
  printf '%s\n' "$pattern-SECOND" | dd of="$disk2" conv=notrunc status=none
  t="$(now)"
  timeout 60 xl block-attach "$name" "format=raw, vdev=xvdb, access=rw, target=$disk2" || failed "block-attach"
  wait_console 60 "XENLAB-DISK xvdb: $pattern-SECOND"
  echo "TIMING block_attach_s=$(since "$t")"

  mac2="00:16:3e:5e:1f:02"
  t="$(now)"
  timeout 60 xl network-attach "$name" "mac=$mac2, bridge=xenbr0" || failed "network-attach"
  wait_console 60 "XENLAB-MAC eth1: $mac2"
  echo "TIMING network_attach_s=$(since "$t")"

  t="$(now)"
  timeout 60 xl block-detach "$name" xvdb || failed "block-detach"
  wait_console 60 "XENLAB-GONE xvdb"
  echo "TIMING block_detach_s=$(since "$t")"

  t="$(now)"
  xl pause "$name" && xl list "$name" | awk 'NR == 2 { exit !($5 ~ /p/) }' || failed "pause"
  xl unpause "$name" || failed "unpause"
  echo "TIMING pause_unpause_s=$(since "$t")"

  t="$(now)"
  timeout 60 xl reboot "$name" || failed "xl reboot"
  wait_console 90 "XENLAB-GUEST-SHUTDOWN reboot"
  wait_console 120 "XENLAB-GUEST-READY" 2
  echo "TIMING reboot_s=$(since "$t")"
  say "rebooted: domid $(xl domid "$name")"

  t="$(now)"
  timeout 90 xl shutdown -w "$name" || failed "xl shutdown"
  wait_console 10 "XENLAB-GUEST-SHUTDOWN poweroff"
  echo "TIMING shutdown_s=$(since "$t")"
else
  t1="$(now)"
  timeout 60 xl destroy "$name" || failed "xl destroy failed"
  echo "TIMING xl_destroy_s=$(since "$t1")"
fi
# (after a clean shutdown, xl's per-domain monitor process destroys the domain a moment later)
end=$((SECONDS + 30))
while xl domid "$name" >/dev/null 2>&1; do
  [ "$SECONDS" -lt "$end" ] || failed "$name still exists 30 s after it was shut down"
  sleep 0.5
done
say "PASS"
echo "1 passed, 0 failed"
