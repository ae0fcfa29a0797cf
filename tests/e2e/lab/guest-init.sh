#!/bin/sh
# /init of the lab's PV test guest (busybox only; built by setup.sh).
#
# Prints on its console (hvc0, which xenconsoled logs to guest-NAME.log):
#   XENLAB-GUEST-UP                       once, as soon as /init runs
#   XENLAB-KERNEL: <uname -r>
#   XENLAB-CMDLINE: <kernel command line>  (xl's extra= lands here)
#   XENLAB-DISK <dev>: <first 64 bytes, non-printables as '.'>
#   XENLAB-DISK-HEX <dev>: <first 64 bytes in hex>
#   XENLAB-DISK-SIZE <dev>: <size in 512-byte sectors>
#   XENLAB-DISK-AT <dev> <offset>: <64 bytes at offset, as XENLAB-DISK>
#                                          if booted with xenlab.peek=<byte offset, 512-aligned>
#   XENLAB-POKED <dev> <offset>            if booted with xenlab.poke=<dev>:<offset>:<word>,
#                                          after writing word there (fsync'd), before the
#                                          disk's lines above
#   XENLAB-DDREAD <dev> <MiB> <seconds>    if booted with xenlab.ddread=<MiB>: a sequential
#                                          read of the disk's first MiB (O_DIRECT, 1 MiB
#                                          requests), after its lines above
#   XENLAB-MAC <ifname>: <mac>
#   XENLAB-GONE <dev|ifname>               when a disk or NIC goes away
#   XENLAB-GUEST-READY                     once every Xen disk and NIC the guest was
#                                          started with has shown up (or after 60 s)
#   XENLAB-HEARTBEAT <n> <uptime>          every N s if booted with xenlab.heartbeat=N
#   XENLAB-GUEST-SHUTDOWN <poweroff|reboot> when the toolstack asks it to shut down
#   XENLAB-ECHO <line>                     for each line typed on the console
#                                          ("ddread <dev> <MiB>" typed: XENLAB-DDREAD again)
#   XENLAB-BUSY-START <n> / XENLAB-BUSY-END  around a busy loop of n s (1..60) that
#                                          the line "busy <n>" typed on the console starts
# Guest networking (the guestnet block below): booted with xenlab.ip=ADDR/LEN
# (eth0) or xenlab.ipN=ADDR/LEN (ethN), a NIC gets that static address as it
# appears (at boot or hot-plugged):
#   XENLAB-IP <ifname>: <addr/len>
# and these lines typed on the console answer with one line each:
#   ping HOST [SRC]          XENLAB-PING HOST from SRC|default: ok|fail <replies>/2
#   ipaddr add|del A/L DEV   XENLAB-IPADDR add|del A/L DEV: ok|fail
#   ipmac DEV MAC            XENLAB-IPMAC DEV MAC: ok|fail   (DEV down, new MAC, up)
#   recv PORT                XENLAB-RECV-READY PORT, then after one TCP transfer to PORT:
#                            XENLAB-RECV PORT: <bytes> bytes in <ms> ms  (accept to EOF)
#   send HOST PORT KIB       (KIB a multiple of 64) XENLAB-SEND HOST PORT: <KIB> KiB rc=<nc's exit> in <ms> ms
# Disks and NICs hot-plugged later (xl block-attach / network-attach) are
# reported with the same lines as they appear.  Then it waits forever, so that
# pause, save/restore, shutdown and reboot requests can be tested.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1

echo "XENLAB-GUEST-UP"
echo "XENLAB-KERNEL: $(uname -r)"
echo "XENLAB-CMDLINE: $(cat /proc/cmdline)"

# The kernel runs /sbin/poweroff (or /sbin/reboot) when the toolstack asks for a
# clean shutdown; make those say so and act at once (busybox's would signal an
# init that is a shell script and do nothing).
mkdir -p /sbin
for a in poweroff reboot; do
  printf '#!/bin/sh\nexec >/dev/console 2>&1\necho "XENLAB-GUEST-SHUTDOWN %s"\nsync\nexec /bin/busybox %s -f\n' "$a" "$a" > "/sbin/$a"
  chmod 755 "/sbin/$a"
done

while read -r m; do
  insmod "/lib/modules/$m" || echo "XENLAB-ERROR: insmod $m failed"
done < /lib/modules/load-order

# ---- guestnet: static addresses from the command line, ping/ipaddr/ipmac/recv/send typed on the console ----
# (all names gn_*: shell functions share the globals of the loops above and below)
gn_cs() { read -r gn_u _ < /proc/uptime; echo "${gn_u%.*}${gn_u#*.}"; }   # uptime in 1/100 s
gn_ifup() {
  gn_dev="$1"; gn_want=""
  for gn_arg in $(cat /proc/cmdline); do
    case "$gn_arg" in
      xenlab.ip=*) [ "$gn_dev" = eth0 ] && gn_want="${gn_arg#xenlab.ip=}" ;;
      "xenlab.ip${gn_dev#eth}="*) gn_want="${gn_arg#xenlab.ip${gn_dev#eth}=}" ;;
    esac
  done
  [ -n "$gn_want" ] || return 0
  if ip addr add "$gn_want" dev "$gn_dev" && ip link set "$gn_dev" up; then
    echo "XENLAB-IP $gn_dev: $gn_want"
  else
    echo "XENLAB-ERROR: ip address $gn_want on $gn_dev failed"
  fi
}
gn_okfail() { if "$@" >/dev/null 2>&1; then echo ok; else echo fail; fi; }
# The receiving end of "recv PORT": nc -e runs it with the connection on stdin.
printf '#!/bin/sh\nread -r a _ < /proc/uptime\nn=$(wc -c)\nread -r b _ < /proc/uptime\necho "XENLAB-RECV $1: $n bytes in $(( (${b%%.*}${b#*.} - ${a%%.*}${a#*.}) * 10 )) ms" > /dev/console\n' > /bin/xenlab-recv
printf '#!/bin/sh\nexec dd if=/dev/zero bs=65536 count=$(( $1 / 64 )) 2>/dev/null\n' > /bin/xenlab-zero
chmod 755 /bin/xenlab-recv /bin/xenlab-zero
gn_cmd() {
  # only addresses, names and numbers: nothing the shell would expand
  case "$1" in *[!A-Za-z0-9.:/\ -]*) return 1 ;; esac
  set -- $1
  case "$1 $#" in
    "ping 2"|"ping 3")
      # -A: the second request as soon as the first reply is in; -W 2: 2 s for replies after the last
      # request (busybox's -w does not shorten its default -W of 10 s: a ping answered by no one took
      # 11 s, not 4); so a ping that gets its replies takes two round trips, one that gets none ~3 s
      if [ $# = 3 ]; then gn_out="$(ping -c 2 -A -W 2 -w 4 -I "$3" "$2" 2>&1)"; else gn_out="$(ping -c 2 -A -W 2 -w 4 "$2" 2>&1)"; fi
      # (no sed: every fork is slow under nested emulation)
      case "$gn_out" in *" 2 packets received"*) gn_n=2 ;; *" 1 packets received"*) gn_n=1 ;; *) gn_n=0 ;; esac
      if [ "$gn_n" -gt 0 ]; then gn_st=ok; else gn_st=fail; fi
      echo "XENLAB-PING $2 from ${3:-default}: $gn_st $gn_n/2" ;;
    "ipaddr 4")
      case "$2" in add|del) ;; *) return 1 ;; esac
      echo "XENLAB-IPADDR $2 $3 $4: $(gn_okfail ip addr "$2" "$3" dev "$4")" ;;
    "ipmac 3")
      # a running netfront refuses a new MAC (no live address change): down, set, up
      gn_st=fail
      ip link set "$2" down && ip link set "$2" address "$3" && gn_st=ok
      ip link set "$2" up || gn_st=fail
      echo "XENLAB-IPMAC $2 $3: $gn_st" ;;
    "recv 2")
      case "$2" in *[!0-9]*) return 1 ;; esac
      nc -l -p "$2" -e /bin/xenlab-recv "$2" </dev/null >/dev/null 2>&1 &
      gn_hex="$(printf %04X "$2")"; gn_i=0
      while [ $gn_i -lt 50 ] && ! grep -qi ":$gn_hex [0-9A-F]*:0000 0A" /proc/net/tcp /proc/net/tcp6 2>/dev/null; do
        sleep 0.1; gn_i=$((gn_i + 1))
      done
      echo "XENLAB-RECV-READY $2" ;;
    "send 4")
      case "$3$4" in *[!0-9]*) return 1 ;; esac
      [ $(( $4 % 64 )) = 0 ] || { echo "XENLAB-ERROR: send wants a multiple of 64 KiB, not $4"; return 0; }
      gn_a="$(gn_cs)"
      # dd writes to the connection itself (nc -e): busybox nc would relay it 1 KiB a time
      timeout 120 nc -w 10 "$2" "$3" -e /bin/xenlab-zero "$4" </dev/null >/dev/null 2>&1
      gn_rc=$?
      gn_b="$(gn_cs)"
      echo "XENLAB-SEND $2 $3: $4 KiB rc=$gn_rc in $(( (gn_b - gn_a) * 10 )) ms" ;;
    *) return 1 ;;
  esac
  return 0
}
# ---- end of guestnet ----

# Lines typed on the console come back (a console proxy's input reaches the
# guest); "busy N" spins the vCPU for N seconds (its CPU time shows in the
# toolstack's statistics). Only shell builtins in the loop: no fork per turn.
busy() {
  n="$1"
  case "$n" in ''|*[!0-9]*) n=0 ;; esac
  [ "$n" -ge 1 ] && [ "$n" -le 60 ] || { echo "XENLAB-ERROR: busy wants 1..60 seconds, not '$1'"; return; }
  read -r up _ < /proc/uptime
  end=$(( ${up%.*} + n ))
  echo "XENLAB-BUSY-START $n"
  while [ "${up%.*}" -lt "$end" ]; do read -r up _ < /proc/uptime; done
  echo "XENLAB-BUSY-END"
}
# "ddread DEV MIB": the boot's xenlab.ddread read again (after the host changed
# something under the disk), answered with the same XENLAB-DDREAD line.
ddread_dev() {
  case "$1" in xvd[a-z]) ;; *) echo "XENLAB-ERROR: ddread wants xvdX, not '$1'"; return ;; esac
  case "$2" in ''|*[!0-9]*) echo "XENLAB-ERROR: ddread wants MiB, not '$2'"; return ;; esac
  read -r up _ < /proc/uptime; t0="${up%.*}${up#*.}"
  dd if="/dev/$1" of=/dev/null bs=1M count="$2" iflag=direct 2>/dev/null || echo "XENLAB-ERROR: ddread $1 failed"
  read -r up _ < /proc/uptime; t=$(( ${up%.*}${up#*.} - t0 ))
  echo "XENLAB-DDREAD $1 $2 $((t / 100)).$((t % 100 / 10))$((t % 10))"
}
gn_cr="$(printf '\r')"
( while read -r line; do
    # the trailing CR a terminal may send, without a fork (slow under nested emulation) unless one is inside
    line="${line%"$gn_cr"}"
    case "$line" in *"$gn_cr"*) line="$(echo "$line" | tr -d '\r')" ;; esac
    case "$line" in
      "busy "*) busy "${line#busy }" ;;
      "ddread "*) set -- ${line#ddread }; ddread_dev "$1" "$2" ;;
      *) gn_cmd "$line" || echo "XENLAB-ECHO $line" ;;
    esac
  done < /dev/console ) &   # (an asynchronous list's stdin is /dev/null unless redirected)

heartbeat=0
peek=""
poke=""
ddread=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    xenlab.heartbeat=*) heartbeat="${arg#xenlab.heartbeat=}" ;;
    xenlab.peek=*) peek="${arg#xenlab.peek=}" ;;
    xenlab.poke=*) poke="${arg#xenlab.poke=}" ;;
    xenlab.ddread=*) ddread="${arg#xenlab.ddread=}" ;;
  esac
done
case "$peek" in *[!0-9]*) peek="" ;; esac
case "$ddread" in *[!0-9]*) ddread="" ;; esac
case "$heartbeat" in ''|*[!0-9]*) heartbeat=0 ;; esac

seen=" "
uptime_cs() { # the uptime in hundredths of a second
  read -r up _ < /proc/uptime
  echo "${up%.*}${up#*.}"
}
report_disk() {
  d="$1"
  case "$poke" in
    "$d":*:*)
      off="${poke#*:}"; off="${off%%:*}"; word="${poke#*:*:}"
      printf '%s' "$word" | dd of="/dev/$d" bs=512 seek="$off" oflag=seek_bytes conv=notrunc,fsync 2>/dev/null \
        && echo "XENLAB-POKED $d $off" || echo "XENLAB-ERROR: poke $d failed" ;;
  esac
  echo "XENLAB-DISK $d: $(head -c 64 "/dev/$d" 2>/dev/null | tr -c ' -~' '.')"
  echo "XENLAB-DISK-HEX $d: $(head -c 64 "/dev/$d" 2>/dev/null | od -An -tx1 -v | tr -d ' \n')"
  echo "XENLAB-DISK-SIZE $d: $(cat "/sys/block/$d/size" 2>/dev/null)"
  [ -n "$peek" ] && echo "XENLAB-DISK-AT $d $peek: $(dd if="/dev/$d" bs=512 count=1 skip="$peek" iflag=skip_bytes,direct 2>/dev/null | head -c 64 | tr -c ' -~' '.')"
  if [ -n "$ddread" ]; then
    t0=$(uptime_cs)
    dd if="/dev/$d" of=/dev/null bs=1M count="$ddread" iflag=direct 2>/dev/null || echo "XENLAB-ERROR: ddread $d failed"
    t1=$(uptime_cs)
    t=$((t1 - t0))
    echo "XENLAB-DDREAD $d $ddread $((t / 100)).$((t % 100 / 10))$((t % 10))"
  fi
}
scan() {
  now=" "
  for p in /sys/block/xvd*; do
    [ -e "$p" ] || continue
    d="${p##*/}"
    [ -e "/dev/$d" ] || continue
    now="$now$d "
    case "$seen" in *" $d "*) ;; *) report_disk "$d" ;; esac
  done
  for p in /sys/class/net/eth*; do
    [ -e "$p" ] || continue
    n="${p##*/}"
    now="$now$n "
    case "$seen" in *" $n "*) ;; *) echo "XENLAB-MAC $n: $(cat "$p/address")"; gn_ifup "$n" ;; esac
  done
  for x in $seen; do
    case "$now" in *" $x "*) ;; *) echo "XENLAB-GONE $x" ;; esac
  done
  seen="$now"
}
all_ready() {
  # Every xenbus disk/NIC device has its block device / interface.
  for p in /sys/bus/xen/devices/vbd-* /sys/bus/xen/devices/vif-*; do
    [ -e "$p" ] || continue
    case "$p" in
      */vbd-*) ls "$p/block" 2>/dev/null | grep -q . || return 1 ;;
      */vif-*) ls "$p/net" 2>/dev/null | grep -q . || return 1 ;;
    esac
  done
  return 0
}

ready=0
ticks=0
beats=0
while :; do
  scan
  if [ "$ready" = 0 ] && { all_ready || [ "$ticks" -ge 120 ]; }; then
    scan
    echo "XENLAB-GUEST-READY"
    ready=1
  fi
  ticks=$((ticks + 1))
  if [ "$heartbeat" -gt 0 ] && [ $((ticks % (heartbeat * 2))) -eq 0 ]; then
    beats=$((beats + 1))
    echo "XENLAB-HEARTBEAT $beats $(cut -d' ' -f1 /proc/uptime)"
  fi
  sleep 0.5
done
