#!/bin/bash
# Lab self-test, run inside dom0 by run.sh:
#
#   tests/e2e/lab/run.sh tests/e2e/lab/selftest.sh
#
# Creates a raw disk image with known bytes and a bridge xenbr0, starts a PV
# guest (the Debian kernel + the lab's guest initramfs) with that disk and one
# NIC with a fixed MAC, waits for the guest's console to show its marker, the
# disk's bytes and the MAC, then destroys it.  Prints TIMING lines.
set -euo pipefail

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
ls "/sys/class/net/xenbr0/brif/" | grep -q "^vif$domid\.0$" || failed "vif$domid.0 is not on xenbr0"

t1="$(now)"
timeout 60 xl destroy "$name" || failed "xl destroy failed"
echo "TIMING xl_destroy_s=$(since "$t1")"
if xl domid "$name" >/dev/null 2>&1; then failed "$name still exists after xl destroy"; fi
say "PASS"
echo "1 passed, 0 failed"
