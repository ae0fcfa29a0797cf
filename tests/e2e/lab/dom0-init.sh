#!/bin/sh
# /init of the lab's dom0 initramfs (built by setup.sh; busybox only).
#
# Mounts the host's root (virtfs tag "hostroot", read-only) on /newroot, puts
# tmpfs on the folders dom0 must write, mounts the run's writable work share
# (virtfs tag "xenlabwork") on /srv, moves /proc /sys /dev into the new root and
# switch_roots into the stage2 script named in /srv/lab.env (XENLAB_STAGE2),
# which runs as PID 1 with the host's own binaries.
#
# On any failure it prints XENLAB-DOM0-INIT-FAILED and powers off, so that the
# host's run.sh does not wait for its timeout.
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
  echo "XENLAB-DOM0-INIT-FAILED: $*"
  sleep 1
  poweroff -f
  sleep 10
  echo o > /proc/sysrq-trigger
  while :; do sleep 60; done
}

mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
exec 0</dev/console 1>/dev/console 2>&1
echo "xenlab-dom0-init: loading modules: $(tr '\n' ' ' < /lib/modules/load-order)"
while read -r m; do
  insmod "/lib/modules/$m" || fail "insmod $m"
done < /lib/modules/load-order

# 500 KiB messages (virtio's maximum) make 9p several times faster than the 8 KiB default.
p9opts="trans=virtio,version=9p2000.L,msize=512000"
# The host root is read-only here and (for a test run) unchanging, so let dom0
# cache it (cache=loose): Xen's hotplug scripts fork dozens of programs, and
# uncached 9p reads make `block add` overrun libxl's 10 s hotplug timeout.
# run.sh passes XENLAB_9P_CACHE as xenlab.9pcache= (none, loose, fscache, mmap)
# and XENLAB_OVERLAY as xenlab.overlay=: 1 (default) puts a tmpfs overlay on
# top of the read-only host root, so that every path is writable in dom0 (the
# changes live in dom0's RAM and are gone at power-off; the host is untouched);
# 0 leaves the root read-only but for the tmpfs folders below.
cachemode=loose
overlay=1
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    xenlab.9pcache=*) cachemode="${arg#xenlab.9pcache=}" ;;
    xenlab.overlay=*) overlay="${arg#xenlab.overlay=}" ;;
  esac
done
mkdir -p /lower /rw
if [ "$overlay" = 1 ]; then
  mount -t 9p -o "$p9opts,ro,cache=$cachemode" hostroot /lower || fail "mount hostroot (virtfs) on /lower"
  mount -t tmpfs -o mode=0755 tmpfs /rw || fail "tmpfs on /rw"
  mkdir -p /rw/upper /rw/work
  mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
    || fail "overlay on the host root"
else
  mount -t 9p -o "$p9opts,ro,cache=$cachemode" hostroot /newroot || fail "mount hostroot (virtfs) on /newroot"
fi
[ -d /newroot/srv ] || [ "$overlay" != 1 ] || mkdir -p /newroot/srv
mount -t 9p -o "$p9opts" xenlabwork /newroot/srv || fail "mount xenlabwork (virtfs) on /newroot/srv"
[ -f /newroot/srv/lab.env ] || fail "/srv/lab.env missing from the work share"

# Folders the host root has read-only but dom0 must write.  /var/run is a
# symlink to /run on Debian: mounting on it again would just stack a second tmpfs.
for d in /run /var/run /var/lib/xen /var/log /var/lib/xenstored /tmp; do
  [ -L "/newroot$d" ] && continue
  [ -d "/newroot$d" ] || [ "$overlay" != 1 ] || mkdir -p "/newroot$d"
  [ -d "/newroot$d" ] || fail "mount point $d missing on the host (run setup.sh)"
  mount -t tmpfs -o mode=0755 tmpfs "/newroot$d" || fail "tmpfs on $d"
done
chmod 1777 /newroot/tmp
if [ "$overlay" = 1 ]; then
  # Keep the overlay's parts in view: the pristine host root and dom0's changes.
  mkdir -p /newroot/run/xenlab/hostroot /newroot/run/xenlab/rw
  mount --move /lower /newroot/run/xenlab/hostroot || fail "move /lower"
  mount --move /rw /newroot/run/xenlab/rw || fail "move /rw"
fi

# devtmpfs lacks these; Xen's hotplug locking.sh stats /dev/stdin and spins
# forever without it.
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts || fail "mount devpts"
mount -t tmpfs -o mode=1777 tmpfs /dev/shm || fail "tmpfs on /dev/shm"
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr

for d in /proc /sys /dev; do
  mount --move "$d" "/newroot$d" || fail "move $d into the new root"
done

stage2="$(sed -n "s/^XENLAB_STAGE2='\(.*\)'\$/\1/p" /newroot/srv/lab.env)"
[ -n "$stage2" ] || fail "XENLAB_STAGE2 missing from /srv/lab.env"
[ -f "/newroot$stage2" ] || fail "stage2 $stage2 not found in the host root"
echo "xenlab-dom0-init: switch_root into $stage2"
exec switch_root /newroot /bin/bash "$stage2"
fail "switch_root failed"
