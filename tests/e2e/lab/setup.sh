#!/usr/bin/env bash
# Sets up the Xen lab: Xen 4.17 + a Debian 6.1 PV dom0 under QEMU (TCG).
#
# Idempotent: run it as often as you like; it only downloads what is missing
# and rebuilds the two small initramfs images every time (a few seconds).
#
#   tests/e2e/lab/setup.sh
#
# Environment:
#   XENLAB_CACHE   cache folder (default: <repo>/var/xenlab, git-ignored)
#   XENLAB_KVER    kernel ABI to use, e.g. 6.1.0-56-amd64 (default: the one
#                  Debian's linux-image-amd64 currently depends on)
#   XENLAB_NO_APT=1  skip host package installation and `apt-get update`
#                  (for machines where the packages are known to be there)
#
# Nothing is installed on the host but ordinary Debian packages (QEMU, busybox,
# Xen's user-space tools); the Xen hypervisor and the Linux kernel are only
# downloaded (`apt-get download`) and unpacked into the cache.
#
# Result (all under $XENLAB_CACHE):
#   lab.env               paths of everything below, sourced by run.sh
#   xen                   the multiboot Xen binary QEMU loads
#   kernel/<KVER>/        the unpacked kernel package (boot/vmlinuz-*, lib/modules/*)
#                         and vmlinux-<KVER>, its uncompressed ELF (faster guest builds)
#   dom0-initrd.gz        busybox initramfs for dom0 (see dom0-init.sh)
#   guest-initrd.gz       busybox initramfs for PV test guests (see guest-init.sh)
#   hvm-disk.img, iso/xenlab-guest.iso  BIOS-bootable disk and CD of the same (HVM guests)
#   hvm-boot.img, iso/xenlab-hvm-boot.iso  disk and CD of a one-sector HVM guest (hvm-boot.S)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
cache="${XENLAB_CACHE:-$repo/var/xenlab}"

log() { echo "xenlab-setup: $*"; }
die() { echo "xenlab-setup: ERROR: $*" >&2; exit 1; }

case "$cache" in
  *[[:space:],]*) die "XENLAB_CACHE must not contain spaces or commas (QEMU's multiboot module list is comma/space separated): $cache" ;;
esac

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# --- 1. host packages -------------------------------------------------------
host_pkgs=(qemu-system-x86 busybox-static cpio kmod xen-utils-4.17 xenstore-utils qemu-system-xen seabios libxen-dev iproute2 util-linux coreutils gzip xz-utils
           libvirt-daemon-driver-xen libvirt-clients # libvirt: the e2e libvirt-create-benchmark step
           syslinux syslinux-common isolinux xorriso mtools dosfstools fdisk binutils) # HVM disk and CD images
if [ "${XENLAB_NO_APT:-0}" != 1 ]; then
  missing=()
  for p in "${host_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null || missing+=("$p")
  done
  # apt-cache needs fresh lists to name the current kernel; update once per day at most.
  stamp=/var/lib/apt/periodic/xenlab-update-stamp
  if [ ${#missing[@]} -gt 0 ] || [ ! -e "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440 2>/dev/null)" ]; then
    log "apt-get update"
    $sudo apt-get update -q >/dev/null
    $sudo mkdir -p "$(dirname "$stamp")" && $sudo touch "$stamp"
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing host packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi
for t in qemu-system-x86_64 cpio depmod modprobe dpkg-deb apt-get gzip syslinux xorriso mcopy mkfs.vfat sfdisk as ld; do
  command -v "$t" >/dev/null || die "$t not found (install the host packages: ${host_pkgs[*]})"
done
# (grep without -q: under pipefail, busybox killed by SIGPIPE when grep -q quits early failed this test once)
if [ ! -x /bin/busybox ] || ! /bin/busybox --list | grep -x switch_root >/dev/null; then
  die "/bin/busybox (busybox-static) missing"
fi
file_is_static() { ! LC_ALL=C ldd "$1" >/dev/null 2>&1; }
file_is_static /bin/busybox || die "/bin/busybox is not statically linked: install busybox-static"
[ -x /usr/lib/xen-4.17/bin/oxenstored ] || die "xen-utils-4.17 is not installed"

# dom0 mounts tmpfs over these folders of the (read-only) host root, so they must
# exist on the host as mount points (/lib/modules: stage2 mounts the lab kernel's modules there).
for d in /var/lib/xen /var/lib/xenstored /srv /run /var/log /tmp /lib/modules; do
  [ -d "$d" ] || { log "creating mount point $d on the host"; $sudo mkdir -p "$d"; }
done

# --- 2. download + unpack Xen and the kernel -------------------------------
mkdir -p "$cache/debs" "$cache/kernel" "$cache/hypervisor" "$cache/runs"

candidate() { # PKG -> candidate version (empty if unknown)
  apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2; exit }'
}

kver="${XENLAB_KVER:-}"
if [ -z "$kver" ]; then
  # The kernel ABI linux-image-amd64's candidate depends on, e.g. 6.1.0-56-amd64.
  kver="$(apt-cache depends linux-image-amd64 2>/dev/null \
    | sed -n 's/^ *Depends: linux-image-\(6\.1\.0-[0-9]*-amd64\)$/\1/p' | head -n1)"
  if [ -z "$kver" ]; then
    # Fall back to the highest 6.1.0-N-amd64 apt knows of.
    kver="$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' \
      | sed -n 's/^linux-image-\(6\.1\.0-[0-9]*-amd64\) .*/\1/p' | sort -t- -k2,2n | tail -n1)"
  fi
  [ -n "$kver" ] || die "cannot find a linux-image-6.1.0-N-amd64 package with apt-cache (run apt-get update?)"
fi
kpkg="linux-image-$kver"
xpkg="xen-hypervisor-4.17-amd64"

fetch_deb() { # PKG -> prints path of the .deb in the cache (downloads if missing)
  local pkg="$1" ver file
  ver="$(candidate "$pkg")"
  if [ -n "$ver" ] && [ "$ver" != "(none)" ]; then
    file="$cache/debs/${pkg}_${ver//:/%3a}_amd64.deb"
    if [ ! -s "$file" ]; then
      log "downloading $pkg $ver" >&2
      # As root, apt would otherwise warn that its _apt sandbox user cannot write here.
      local sandbox=()
      [ "$(id -u)" -ne 0 ] || sandbox=(-o APT::Sandbox::User=root)
      (cd "$cache/debs" && apt-get download -q "${sandbox[@]}" "$pkg=$ver" >&2)
    fi
  else
    # apt no longer knows the package: use whatever is cached.
    file="$(ls -1 "$cache/debs/${pkg}_"*_amd64.deb 2>/dev/null | sort -V | tail -n1 || true)"
  fi
  { [ -n "$file" ] && [ -s "$file" ]; } || die "no .deb for $pkg (apt-cache knows no candidate and none is cached)"
  echo "$file"
}

unpack() { # DEB DIR: unpack DEB into DIR unless DIR already holds exactly it
  local deb="$1" dir="$2"
  if [ -f "$dir/.xenlab-unpacked" ] && [ "$(cat "$dir/.xenlab-unpacked")" = "$(basename "$deb")" ]; then
    return 0
  fi
  log "unpacking $(basename "$deb")"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  dpkg-deb -x "$deb" "$dir.tmp"
  basename "$deb" > "$dir.tmp/.xenlab-unpacked"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

kdeb="$(fetch_deb "$kpkg")"
xdeb="$(fetch_deb "$xpkg")"
kdir="$cache/kernel/$kver"
xdir="$cache/hypervisor/$(basename "$xdeb" .deb)"
unpack "$kdeb" "$kdir"
unpack "$xdeb" "$xdir"

vmlinuz="$kdir/boot/vmlinuz-$kver"
[ -f "$vmlinuz" ] || die "kernel image $vmlinuz missing from $kdeb"
[ -d "$kdir/lib/modules/$kver" ] || die "modules for $kver missing from $kdeb"
if [ ! -f "$kdir/lib/modules/$kver/modules.dep.bin" ] || [ "$kdir/lib/modules/$kver/modules.dep.bin" -ot "$kdir/.xenlab-unpacked" ]; then
  log "depmod $kver"
  depmod -b "$kdir" "$kver"
fi

# Guests boot faster from the uncompressed kernel: libxc otherwise spends ~5 s of
# emulated CPU unpacking the bzImage's xz payload in dom0 for every domain build.
vmlinux="$kdir/vmlinux-$kver"
if [ ! -s "$vmlinux" ] || [ "$vmlinux" -ot "$vmlinuz" ]; then
  log "extracting the uncompressed kernel for guests"
  rm -f "$vmlinux.tmp"
  for magic in '\xfd7zXZ\x00:xz -dc --single-stream' '\x1f\x8b\x08:gzip -dc' '\x28\xb5\x2f\xfd:zstd -dcq'; do
    off="$(LC_ALL=C grep -obUaP "${magic%%:*}" "$vmlinuz" 2>/dev/null | head -n1 | cut -d: -f1 || true)"
    [ -n "$off" ] || continue
    unpacker="${magic#*:}"
    command -v "${unpacker%% *}" >/dev/null || continue
    tail -c "+$((off + 1))" "$vmlinuz" | $unpacker > "$vmlinux.tmp" 2>/dev/null || true
    [ "$(head -c 4 "$vmlinux.tmp" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ] && break
    rm -f "$vmlinux.tmp"
  done
  if [ -s "$vmlinux.tmp" ]; then
    mv "$vmlinux.tmp" "$vmlinux"
  else
    log "WARNING: could not extract vmlinux from $vmlinuz; guests will use the bzImage"
    cp "$vmlinuz" "$vmlinux"
  fi
fi

xengz="$(ls -1 "$xdir"/boot/xen-4.17*-amd64.gz 2>/dev/null | head -n1 || true)"
[ -n "$xengz" ] || die "no boot/xen-4.17*-amd64.gz in $xdeb"
xen="$xdir/xen"
if [ ! -s "$xen" ] || [ "$xen" -ot "$xengz" ]; then
  log "gunzip $(basename "$xengz")"
  gunzip -c "$xengz" > "$xen.tmp" && mv "$xen.tmp" "$xen"
fi

# --- 3. initramfs images ---------------------------------------------------
# Modules are copied flat into /lib/modules of the image, with a load-order file
# listing them in dependency order (modprobe --show-depends), since busybox's
# insmod has no modules.dep to go by.
add_modules() { # ROOT MOD... : copy MODs and their dependencies into ROOT/lib/modules
  local root="$1"; shift
  local m line path base
  mkdir -p "$root/lib/modules"
  : > "$root/lib/modules/load-order"
  for m in "$@"; do
    modprobe -d "$kdir" -S "$kver" --show-depends "$m" > "$root/.deps" 2>&1 \
      || die "module $m not found for $kver: $(cat "$root/.deps")"
    while read -r line; do
      case "$line" in
        insmod\ *)
          path="${line#insmod }"; path="${path%% *}"
          base="$(basename "$path")"
          case "$base" in
            *.ko) cp "$path" "$root/lib/modules/$base" ;;
            *.ko.xz) xz -dc "$path" > "$root/lib/modules/${base%.xz}"; base="${base%.xz}" ;;
            *.ko.zst) zstd -dcq "$path" > "$root/lib/modules/${base%.zst}"; base="${base%.zst}" ;;
            *.ko.gz) gzip -dc "$path" > "$root/lib/modules/${base%.gz}"; base="${base%.gz}" ;;
            *) die "unexpected module file $path" ;;
          esac
          grep -qxF "$base" "$root/lib/modules/load-order" || echo "$base" >> "$root/lib/modules/load-order"
          ;;
        builtin\ *) ;;
        *) [ -z "$line" ] || die "unexpected modprobe output for $m: $line" ;;
      esac
    done < "$root/.deps"
    rm -f "$root/.deps"
  done
}

build_initrd() { # NAME INIT-SCRIPT MOD...
  local name="$1" init="$2"; shift 2
  local root out="$cache/$name-initrd.gz"
  root="$(mktemp -d "$cache/.initrd-$name.XXXXXX")"
  mkdir -p "$root"/{bin,dev,proc,sys,run,tmp,newroot,srv,lib/modules}
  cp /bin/busybox "$root/bin/busybox"
  ln -s busybox "$root/bin/sh"
  mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true   # /init redirects to it again anyway
  install -m 0755 "$init" "$root/init"
  add_modules "$root" "$@"
  (cd "$root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z \
     | cpio --null -o -H newc --quiet -R 0:0) | gzip -9n > "$out.tmp"
  mv "$out.tmp" "$out"
  rm -rf "$root"
  log "built $(basename "$out") ($(du -k "$out" | cut -f1) KiB; modules: $*)"
}

build_initrd dom0 "$here/dom0-init.sh" virtio_pci 9pnet_virtio 9p overlay
build_initrd guest "$here/guest-init.sh" xen-blkfront xen-netfront

# --- 4. bootable images for HVM guests -------------------------------------
# The lab's kernel and the guest initramfs behind a BIOS boot loader, so that HVM
# guests boot the way installed systems and install media do (SeaBIOS reads them
# through INT 13h from the emulated disk or CD) rather than through QEMU's -kernel:
#   hvm-disk.img      a raw disk, MBR (syslinux's mbr.bin) + one active FAT
#                     partition with syslinux (no loop device or mount needed: mtools)
#   iso/xenlab-guest.iso  an El Torito CD with isolinux, alone in its folder (an ISO SR's library)
# Both boot with HVM_ARGS' console (the serial port) and say where they came from
# in the kernel command line (xenlab.boot=disk|cd). pci=off acpi=off (as suite.py's
# HVM_ARGS): the kernel's PCI enumeration makes ~17,000 config-space accesses (counted
# on plain QEMU with the same kernel and image, -trace memory_region_ops_*: 329 with
# pci=off), and each is a round trip to QEMU in dom0 for an HVM guest under the lab's
# nested TCG (30-60 ms with other labs running): minutes of boot. The guest needs no
# PCI device (the loader brings the initramfs, the console is the ISA serial port);
# acpi=off keeps ACPI's AML from failing on the PCI config space it cannot reach (and
# printing it on the serial port, a trap per character); loglevel=1 keeps pci=off's
# own complaint off the port too; nopv: a plain HVM guest, no PV drivers (without PCI
# the kernel does not find Xen's platform device, which sets up the grant table, and
# xen-kbdfront's probe then panicked it in gnttab_expand), so no hvc0 either.
hvm_args="console=ttyS0 quiet loglevel=1 acpi=off pci=off nopv"
loader_cfg() { # BOOT-NAME: a syslinux/isolinux configuration that boots at once
  printf 'SERIAL 0 115200\nDEFAULT xenlab\nPROMPT 0\nTIMEOUT 0\nLABEL xenlab\n  KERNEL /vmlinuz\n  INITRD /initrd.gz\n  APPEND %s xenlab.boot=%s\n' "$hvm_args" "$1"
}
build_hvm_disk() {
  local out="$cache/hvm-disk.img" tmp part sectors kib
  tmp="$(mktemp -d "$cache/.hvm-disk.XXXXXX")"
  part="$tmp/part.img"
  # the partition: room for the kernel and initramfs, FAT16, starting at 1 MiB
  kib=$(( ($(stat -c %s "$vmlinuz") + $(stat -c %s "$cache/guest-initrd.gz")) / 1024 + 4096 ))
  sectors=$(( kib * 2 ))
  mkfs.vfat -F 16 -n XENLAB -C "$part" "$kib" >/dev/null
  loader_cfg disk > "$tmp/syslinux.cfg"
  MTOOLS_SKIP_CHECK=1 mcopy -i "$part" "$vmlinuz" ::/vmlinuz
  MTOOLS_SKIP_CHECK=1 mcopy -i "$part" "$cache/guest-initrd.gz" ::/initrd.gz
  MTOOLS_SKIP_CHECK=1 mcopy -i "$part" "$tmp/syslinux.cfg" ::/syslinux.cfg
  syslinux --install "$part"
  truncate -s $(( (2048 + sectors) * 512 )) "$tmp/disk.img"
  echo "2048,$sectors,6,*" | sfdisk -q --label dos "$tmp/disk.img" >/dev/null
  dd if=/usr/lib/syslinux/mbr/mbr.bin of="$tmp/disk.img" bs=440 count=1 conv=notrunc status=none
  dd if="$part" of="$tmp/disk.img" bs=512 seek=2048 conv=notrunc status=none
  mv "$tmp/disk.img" "$out"
  rm -rf "$tmp"
  log "built $(basename "$out") ($(( $(stat -c %s "$out") / 1024 )) KiB: MBR, syslinux, kernel, guest initramfs)"
}
build_hvm_iso() {
  local out="$cache/iso/xenlab-guest.iso" tmp
  tmp="$(mktemp -d "$cache/.hvm-iso.XXXXXX")"
  mkdir -p "$tmp/root/isolinux" "$cache/iso"
  cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$tmp/root/isolinux/"
  loader_cfg cd > "$tmp/root/isolinux/isolinux.cfg"
  cp "$vmlinuz" "$tmp/root/vmlinuz"
  cp "$cache/guest-initrd.gz" "$tmp/root/initrd.gz"
  xorriso -as mkisofs -quiet -V XENLAB -o "$tmp/guest.iso" -b isolinux/isolinux.bin -c isolinux/boot.cat \
    -no-emul-boot -boot-load-size 4 -boot-info-table "$tmp/root" 2>/dev/null
  mv "$tmp/guest.iso" "$out"
  rm -rf "$tmp"
  log "built iso/$(basename "$out") ($(( $(stat -c %s "$out") / 1024 )) KiB: isolinux, kernel, guest initramfs)"
}
# The small guest of hvm-disk-boot and hvm-cd-boot (hvm-boot.S says why not Linux): its boot
# sector as a disk's MBR (hvm-boot.img, 1 MiB) and as the no-emulation El Torito image of a CD
# beside the Linux one in the ISO SR's folder (iso/xenlab-hvm-boot.iso).
build_hvm_boot() {
  local tmp v
  tmp="$(mktemp -d "$cache/.hvm-boot.XXXXXX")"
  for v in disk cd; do
    as --32 $([ "$v" = cd ] && echo --defsym CD=1) -o "$tmp/$v.o" "$here/hvm-boot.S"
    ld -m elf_i386 -Ttext 0x7c00 --oformat binary -e _start -o "$tmp/$v.bin" "$tmp/$v.o"
    [ "$(stat -c %s "$tmp/$v.bin")" = 512 ] || die "hvm-boot.S ($v) did not assemble to one 512-byte sector"
  done
  truncate -s 1M "$tmp/boot.img"
  dd if="$tmp/disk.bin" of="$tmp/boot.img" conv=notrunc status=none
  mkdir -p "$tmp/root" "$cache/iso"
  cp "$tmp/cd.bin" "$tmp/root/boot.bin"
  xorriso -as mkisofs -quiet -V XENLAB-BOOT -o "$tmp/boot.iso" -b boot.bin -c boot.cat \
    -no-emul-boot -boot-load-size 4 "$tmp/root" 2>/dev/null
  mv "$tmp/boot.img" "$cache/hvm-boot.img"
  mv "$tmp/boot.iso" "$cache/iso/xenlab-hvm-boot.iso"
  rm -rf "$tmp"
  log "built hvm-boot.img and iso/xenlab-hvm-boot.iso (the 512-byte guest of tests/e2e/lab/hvm-boot.S)"
}
build_hvm_disk
build_hvm_iso
build_hvm_boot

# --- 5. record what was set up ----------------------------------------------
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
{
  echo "# written by tests/e2e/lab/setup.sh; sourced by run.sh"
  echo "XENLAB_CACHE=$(q "$cache")"
  echo "XENLAB_KVER=$(q "$kver")"
  echo "XENLAB_XEN=$(q "$xen")"
  echo "XENLAB_KERNEL=$(q "$vmlinuz")"
  echo "XENLAB_GUEST_KERNEL=$(q "$vmlinux")"
  echo "XENLAB_MODROOT=$(q "$kdir")"
  echo "XENLAB_DOM0_INITRD=$(q "$cache/dom0-initrd.gz")"
  echo "XENLAB_GUEST_INITRD=$(q "$cache/guest-initrd.gz")"
  echo "XENLAB_GUEST_DISK=$(q "$cache/hvm-disk.img")"
  echo "XENLAB_GUEST_ISO=$(q "$cache/iso/xenlab-guest.iso")"
  echo "XENLAB_XEN_DEB=$(q "$(basename "$xdeb")")"
  echo "XENLAB_KERNEL_DEB=$(q "$(basename "$kdeb")")"
} > "$cache/lab.env.tmp"
mv "$cache/lab.env.tmp" "$cache/lab.env"

# Keep the cache small: drop .debs and unpacked trees that are no longer current
# (a run in progress still has its own paths in its lab.env, so don't do this
# while runs are going on).
for f in "$cache"/debs/*.deb "$cache"/kernel/* "$cache"/hypervisor/*; do
  [ -e "$f" ] || continue
  case "$f" in "$kdeb"|"$xdeb"|"$kdir"|"$xdir") continue ;; esac
  log "removing stale $(basename "$f")"
  rm -rf -- "$f"
done

log "ready: Xen $(basename "$xdeb" .deb), kernel $kver, cache $cache"
