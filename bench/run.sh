#!/usr/bin/env bash
# The benchmarks of xenapid (see bench/README.md): builds a Release build, then
# measures in one run
#   1. small calls per second against the bare HTTP server (the floor), and the
#      same calls over HTTPS (listen_tls) beside plain HTTP,
#   2. VM.get_all_records with 1,000 and 10,000 VMs,
#   3. durable writes (VM.set_name_label) per second,
#   4. RSS and start-up time with 10,000 VMs in the store,
# and prints a table with "goal met" / "goal MISSED" for each.
#
# Environment: BENCH_SECONDS (length of each throughput run, default 5),
# BENCH_ROUNDS (turns the floor, HTTP and HTTPS take at the small calls, default 5),
# BENCH_PIN (default 1 on 2 or more CPUs: during the small calls the server runs on
# CPU 0 and the load generator on CPU 1, so that the client's own work, its TLS
# above all, is not taken from the server's share; 0: no pinning),
# BENCH_ONLY_SMALL=1 (only part 1: small calls, floor, HTTP and HTTPS),
# BENCH_BUILD_DIR (default build/bench-release), BENCH_KEEP=1 keeps the
# temporary directory (logs, store) for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BENCH_BUILD_DIR:-$ROOT/build/bench-release}
SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-5}
PIN=${BENCH_PIN:-1}
(($(nproc) >= 2)) || PIN=0
WARM=1
PASSWORD=bench-password-0

echo "== building (Release) into $BUILD"
# -O2: -O3 (the Release default) trips a false -Wnonnull in storage/vdi.c under -Werror.
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS_RELEASE="-O2 -DNDEBUG" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target xenapid loadgen floor_server spawn_ready >/dev/null
LOADGEN=$BUILD/loadgen

TMP=$(mktemp -d /tmp/xenapid-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# kv LINE KEY: the value of key=value in a loadgen / spawn_ready line
kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p;s/^$2=\([^ ]*\).*/\1/p" <<<"$1" | head -1; }
stop_pid() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 200); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
    kill -9 "$1" 2>/dev/null || true
}

# ---- request bodies ------------------------------------------------------------
xml_call() { # METHOD PARAM...: an XML-RPC call with string parameters (raw XML if it starts with <)
    local m=$1 p
    shift
    printf '<?xml version="1.0"?><methodCall><methodName>%s</methodName><params>' "$m"
    for p in "$@"; do
        if [[ $p == "<"* ]]; then printf '<param>%s</param>' "$p"; else printf '<param><value>%s</value></param>' "$p"; fi
    done
    printf '</params></methodCall>'
}
vm_record() { # NAME: the minimal record VM.create wants
    local s='<value><struct>' k v
    for kvp in "name_label=$1" name_description= user_version=1 affinity=OpaqueRef:NULL \
        memory_static_max=268435456 memory_dynamic_max=268435456 memory_dynamic_min=268435456 \
        memory_static_min=134217728 VCPUs_max=1 VCPUs_at_startup=1 actions_after_shutdown=destroy \
        actions_after_reboot=restart actions_after_crash=restart PV_bootloader= PV_kernel= PV_ramdisk= \
        PV_args= PV_bootloader_args= PV_legacy_args= "HVM_boot_policy=BIOS order" PCI_bus= recommendations=; do
        k=${kvp%%=*} v=${kvp#*=}
        s+="<member><name>$k</name><value>$v</value></member>"
    done
    s+='<member><name>is_a_template</name><value><boolean>0</boolean></value></member>'
    for k in VCPUs_params platform other_config; do s+="<member><name>$k</name><value><struct></struct></value></member>"; done
    s+='<member><name>HVM_boot_params</name><value><struct><member><name>order</name><value>cd</value></member></struct></value></member>'
    s+='</struct></value>'
    printf '%s' "$s"
}
# A multicall of $1 VM.create calls (names bench-vm-@THREAD@-@SEQ@-i).
multicall_create() {
    local i
    printf '<?xml version="1.0"?><methodCall><methodName>system.multicall</methodName><params><param><value><array><data>'
    for ((i = 0; i < $1; i++)); do
        printf '<value><struct><member><name>methodName</name><value>VM.create</value></member>'
        printf '<member><name>params</name><value><array><data><value>@SESSION@</value>%s</data></array></value></member></struct></value>' \
            "$(vm_record "bench-vm-@SEQ@-$i")"
    done
    printf '</data></array></value></param></params></methodCall>'
}
MC_SIZE=50
multicall_create $MC_SIZE >"$TMP/create.xml"
xml_call host.get_name_label @SESSION@ @REF@ >"$TMP/small.xml"
xml_call VM.get_all_records @SESSION@ >"$TMP/gar.xml"
xml_call VM.get_all @SESSION@ >"$TMP/getall.xml"
xml_call host.get_all @SESSION@ >"$TMP/hosts.xml"
xml_call VM.set_name_label @SESSION@ @REF@ "bench-@SEQ@" >"$TMP/set.xml"
refs_of() { grep -o 'OpaqueRef:[0-9a-f-]\{36\}' "$1" | sort -u; }

# ---- the daemon ------------------------------------------------------------------
PORT=$(free_port)
TPORT=$(free_port)
STATE=$TMP/var
cat >"$TMP/xenapid.conf" <<EOF
listen = 127.0.0.1:$PORT
listen_tls = 127.0.0.1:$TPORT
state_dir = $STATE
unix_socket = $TMP/xapi.sock
accounts_file = $TMP/accounts
backend = sim
log_level = notice
EOF
DAEMON_PID=
start_daemon() { # prints the spawn_ready line; sets DAEMON_PID (so not in a subshell)
    local line
    line=$(XENAPID_ROOT_PASSWORD=$PASSWORD "$BUILD/spawn_ready" -p "$PORT" -o "$TMP/xenapid.log" -s 200 -- \
        "$BUILD/xenapid" --config "$TMP/xenapid.conf" --foreground)
    DAEMON_PID=$(kv "$line" pid)
    PIDS+=("$DAEMON_PID")
    echo "$line"
}
CLIENT_CPU=() # the load generator's CPU while the small calls are measured (BENCH_PIN)
lg() { "${CLIENT_CPU[@]}" "$LOADGEN" -p "$PORT" -L "root:$PASSWORD" "$@"; }
lgt() { "${CLIENT_CPU[@]}" "$LOADGEN" -t -p "$TPORT" -L "root:$PASSWORD" "$@"; } # over HTTPS
# pin PID CPUS: every thread of PID, and the threads it starts later, on CPUS
pin() { ((PIN)) && taskset -a -p -c "$2" "$1" >/dev/null || true; }
# The daemon's CPU time (utime + stime) in clock ticks, to charge a run with.
daemon_ticks() { awk '{print $14 + $15}' "/proc/$DAEMON_PID/stat"; }
# us_per_call TICKS_BEFORE TICKS_AFTER REQUESTS
us_per_call() { echo "scale=1; ($2 - $1) * 1000000 / $(getconf CLK_TCK) / $3" | bc; }

declare -A R
row() { printf '%-44s %14s %14s %10s  %s\n' "$@"; }

# ---- 1. small calls vs the floor --------------------------------------------------
echo "== 1. small calls (host.get_name_label) vs the floor, and over HTTPS"
FLOOR_OUT=$TMP/floor.out
"$BUILD/floor_server" -p 0 >"$FLOOR_OUT" &
FLOOR_PID=$!
PIDS+=("$FLOOR_PID")
pin "$FLOOR_PID" 0
for _ in $(seq 100); do [[ -s $FLOOR_OUT ]] && break; sleep 0.02; done
FPORT=$(kv "$(cat "$FLOOR_OUT")" port)
echo OpaqueRef:00000000-0000-0000-0000-000000000000 >"$TMP/floor.ref"

start_daemon >/dev/null
pin "$DAEMON_PID" 0
((PIN)) && CLIENT_CPU=(taskset -c 1)
lg -n 1 -f "$TMP/hosts.xml" -o "$TMP/hosts.out" >/dev/null
refs_of "$TMP/hosts.out" | head -1 >"$TMP/host.ref"
# The floor and xenapid take turns, ROUNDS times, and each side's median
# counts: this machine's speed drifts by tens of percent within a minute.
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
declare -A RUNS
for ((k = 1; k <= ROUNDS; k++)); do
    for c in 1 16; do
        line=$("${CLIENT_CPU[@]}" "$LOADGEN" -p "$FPORT" -c $c -w $WARM -d "$SECS" -f "$TMP/small.xml" -r "$TMP/floor.ref" -l floor-$c)
        echo "$line"
        RUNS[floor$c]+=" $(kv "$line" rps)"
        for proto in small https; do
            client=lg
            [[ $proto == https ]] && client=lgt
            # The daemon's CPU over the whole run, warm-up included, per call at the timed rate.
            t0=$(daemon_ticks)
            line=$($client -c $c -w $WARM -d "$SECS" -f "$TMP/small.xml" -r "$TMP/host.ref" -l $proto-$c)
            t1=$(daemon_ticks)
            cpu=$(us_per_call "$t0" "$t1" "$(echo "$(kv "$line" rps) * ($WARM + $SECS)" | bc)")
            echo "$line daemon_cpu_us_per_req=$cpu"
            RUNS[$proto$c]+=" $(kv "$line" rps)"
            RUNS[$proto${c}p50]+=" $(kv "$line" p50_us)"
            RUNS[$proto${c}p99]+=" $(kv "$line" p99_us)"
            RUNS[${proto}${c}cpu]+=" $cpu"
            RUNS[${proto}${c}lgcpu]+=" $(kv "$line" cpu_us_per_req)"
        done
    done
done
for key in "${!RUNS[@]}"; do R[$key]=$(median <<<"${RUNS[$key]}"); done
stop_pid "$FLOOR_PID"
pin "$DAEMON_PID" "0-$(($(nproc) - 1))" # the other parts use every CPU
CLIENT_CPU=()
ratio() { echo "scale=1; 100 * $1 / $2" | bc; }
verdict() { if (($(echo "$1" | bc))); then echo "goal met"; else echo "goal MISSED"; fi; }
small_rows() {
    local c r rt
    for c in 1 16; do
        r=$(ratio "${R[small$c]}" "${R[floor$c]}")
        rt=$(ratio "${R[https$c]}" "${R[small$c]}")
        row "1. host.get_name_label/s, $c connection(s)" "${R[small$c]}" "${R[floor$c]}" "$r%" "$(verdict "$r >= 50")"
        row "1. the same over HTTPS (vs plain HTTP)" "${R[https$c]}" "${R[small$c]}" "$rt%" "$(verdict "$rt >= 80")"
    done
    row "   latency p50/p99 us, 1 / 16 conns" "${R[small1p50]}/${R[small1p99]}" "${R[small16p50]}/${R[small16p99]}" "" ""
    row "   HTTPS latency p50 us, 1 / 16 conns" "${R[https1p50]}" "${R[https16p50]}" "" ""
    for c in 1 16; do
        # What the server alone can do over HTTPS per CPU second, beside plain HTTP: the rate
        # it would reach with clients elsewhere, and far steadier than rates on a busy machine.
        rt=$(ratio "${R[small${c}cpu]}" "${R[https${c}cpu]}")
        row "   daemon CPU us/call, HTTP / HTTPS, $c conn" "${R[small${c}cpu]}" "${R[https${c}cpu]}" "$rt%" \
            "(HTTPS calls per daemon CPU second vs HTTP: $(verdict "$rt >= 80"))"
        row "   loadgen CPU us/call, HTTP / HTTPS, $c conn" "${R[small${c}lgcpu]}" "${R[https${c}lgcpu]}" "" ""
    done
}
if [[ ${BENCH_ONLY_SMALL:-0} == 1 ]]; then
    echo
    echo "xenapid small calls ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, ${SECS}s per run, medians of $ROUNDS," \
        "$( ((PIN)) && echo "server on CPU 0, client on CPU 1" || echo "not pinned"); load $(cut -d' ' -f1-3 /proc/loadavg))"
    row "measure" "xenapid" "floor/goal" "ratio" "verdict"
    small_rows
    exit 0
fi

# ---- populate: 1,000 VMs ------------------------------------------------------------
populate() { # TOTAL_VMS_WANTED
    local have want=$1 n
    lg -n 1 -f "$TMP/getall.xml" -o "$TMP/vms.out" >/dev/null
    have=$(refs_of "$TMP/vms.out" | wc -l)
    n=$(((want - have + MC_SIZE - 1) / MC_SIZE))
    if ((n > 0)); then
        local t0=$(date +%s.%N)
        lg -c 16 -n "$n" -f "$TMP/create.xml" -e '<name>Status</name><value>Success' -l create >/dev/null
        echo "   created $((n * MC_SIZE)) VMs in $(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc)") s"
    fi
    lg -n 1 -f "$TMP/getall.xml" -o "$TMP/vms.out" >/dev/null
    refs_of "$TMP/vms.out" >"$TMP/vm.refs"
    echo "   $(wc -l <"$TMP/vm.refs") VMs"
}
gar() { # N: VM.get_all_records timing
    local line
    lg -n 3 -D -f "$TMP/gar.xml" -l warm >/dev/null
    line=$(lg -n "$1" -D -f "$TMP/gar.xml" -l get_all_records)
    echo "$line"
    echo "$line" >"$TMP/gar.line"
}
echo "== populating 1,000 VMs"
populate 1000
NVM1=$(wc -l <"$TMP/vm.refs")

# ---- 3. durable writes ----------------------------------------------------------------
echo "== 3. durable writes (VM.set_name_label)"
for c in 1 16; do
    line=$(lg -c $c -w $WARM -d "$SECS" -f "$TMP/set.xml" -r "$TMP/vm.refs" -l set-$c)
    echo "$line"
    R[set$c]=$(kv "$line" rps)
    R[set${c}p50]=$(kv "$line" p50_us)
    R[set${c}p99]=$(kv "$line" p99_us)
done

# ---- 2. get_all_records -----------------------------------------------------------------
echo "== 2. VM.get_all_records"
gar 20
line=$(cat "$TMP/gar.line")
R[gar1k]=$(kv "$line" p50_us) R[gar1kttfb]=$(kv "$line" ttfb_p50_us) R[gar1kbytes]=$(kv "$line" bytes_per_reply)
echo "== populating 10,000 VMs"
populate 10000
NVM10=$(wc -l <"$TMP/vm.refs")
gar 10
line=$(cat "$TMP/gar.line")
R[gar10k]=$(kv "$line" p50_us) R[gar10kttfb]=$(kv "$line" ttfb_p50_us) R[gar10kbytes]=$(kv "$line" bytes_per_reply)

# ---- 4. RSS and start-up with 10,000 VMs --------------------------------------------------------
echo "== 4. start-up and RSS with $NVM10 VMs"
stop_pid "$DAEMON_PID"
best=
for i in 1 2 3; do
    start_daemon >"$TMP/start.line"
    line=$(cat "$TMP/start.line")
    echo "$line"
    ms=$(kv "$line" ready_ms) rss=$(kv "$line" rss_kb)
    if [[ -z $best ]] || (($(echo "$ms < ${R[start]}" | bc))); then R[start]=$ms R[rss]=$rss best=1; fi
    stop_pid "$DAEMON_PID"
done
DB_KB=$(du -k "$STATE/xenapid.db" | cut -f1)

# ---- the table ----------------------------------------------------------------------------------
per1k() { echo "scale=2; $1 / 1000 / ($2 / 1000)" | bc; } # p50 us, VMs -> ms per 1,000 VMs
g1k=$(per1k "${R[gar1k]}" "$NVM1")
g10k=$(per1k "${R[gar10k]}" "$NVM10")
rss_mb=$(echo "scale=1; ${R[rss]} / 1024" | bc)
echo
echo "xenapid benchmarks ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, ${SECS}s per throughput run)"
row "measure" "xenapid" "floor/goal" "ratio" "verdict"
small_rows
row "2. get_all_records $NVM1 VMs: ms total" "$(echo "scale=2; ${R[gar1k]}/1000" | bc)" "<= $(echo "scale=0; 15 * $NVM1 / 1000" | bc)" "" "$(verdict "$g1k <= 15")"
row "   ms per 1,000 VMs / first byte ms / MB" "$g1k" "$(echo "scale=2; ${R[gar1kttfb]}/1000" | bc)" "$(echo "scale=2; ${R[gar1kbytes]}/1048576" | bc)" ""
row "2. get_all_records $NVM10 VMs: ms total" "$(echo "scale=2; ${R[gar10k]}/1000" | bc)" "<= $(echo "scale=0; 15 * $NVM10 / 1000" | bc)" "" "$(verdict "$g10k <= 15")"
row "   ms per 1,000 VMs / first byte ms / MB" "$g10k" "$(echo "scale=2; ${R[gar10kttfb]}/1000" | bc)" "$(echo "scale=2; ${R[gar10kbytes]}/1048576" | bc)" ""
row "3. VM.set_name_label/s, 1 client" "${R[set1]}" ">= 2000" "" "$(verdict "${R[set1]} >= 2000")"
row "3. VM.set_name_label/s, 16 clients" "${R[set16]}" ">= 10000" "" "$(verdict "${R[set16]} >= 10000")"
row "   latency p50/p99 us, 1 / 16 clients" "${R[set1p50]}/${R[set1p99]}" "${R[set16p50]}/${R[set16p99]}" "" ""
row "4. RSS after start, $NVM10 VMs (MB)" "$rss_mb" "<= 64" "" "$(verdict "$rss_mb <= 64")"
row "4. start-up to listening, $NVM10 VMs (ms)" "${R[start]}" "<= 300" "" "$(verdict "${R[start]} <= 300")"
row "   store size (MB)" "$(echo "scale=1; $DB_KB / 1024" | bc)" "" "" ""
