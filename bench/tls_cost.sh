#!/usr/bin/env bash
# What one small call (host.get_name_label) costs the daemon over HTTPS beside plain HTTP,
# in counts that a busy machine does not disturb (see bench/README.md, part 1):
#   - instructions per call in user space, under callgrind: the daemon runs N calls, then
#     2N, on fresh keep-alive connections; (Ir(2N) - Ir(N)) / N leaves out the logins
#     and the TLS handshakes;
#   - system calls per call, by strace -c -f of the daemon over N calls.
# Over 1 and 16 connections. Counts, never times: they do not change with the load.
#
# Environment: TLS_COST_CALLS (N, default 2000), BENCH_BUILD_DIR (default
# build/bench-release, built here as bench/run.sh builds it), TLS_COST_XENAPID (another
# xenapid binary to measure, e.g. one built from an older commit, with this tree's loadgen).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BENCH_BUILD_DIR:-$ROOT/build/bench-release}
N=${TLS_COST_CALLS:-2000}
PASSWORD=bench-password-0
for tool in valgrind callgrind_control callgrind_annotate strace; do
    command -v $tool >/dev/null || { echo "tls_cost: $tool is missing (scripts/install-deps.sh)" >&2; exit 1; }
done

echo "== building (Release) into $BUILD"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS_RELEASE="-O2 -DNDEBUG" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target xenapid loadgen spawn_ready >/dev/null
XENAPID=${TLS_COST_XENAPID:-$BUILD/xenapid}

TMP=$(mktemp -d /tmp/xenapid-tls-cost.XXXXXX)
DAEMON_PID=
cleanup() {
    if [[ -n $DAEMON_PID ]]; then
        kill "$DAEMON_PID" 2>/dev/null || true
        while kill -0 "$DAEMON_PID" 2>/dev/null; do sleep 0.05; done
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
TPORT=$(free_port)
cat >"$TMP/xenapid.conf" <<EOF
listen = 127.0.0.1:$PORT
listen_tls = 127.0.0.1:$TPORT
state_dir = $TMP/var
unix_socket = $TMP/xapi.sock
accounts_file = $TMP/accounts
backend = sim
log_level = notice
EOF
call() { printf '<?xml version="1.0"?><methodCall><methodName>%s</methodName><params>' "$1"; shift
    for p; do printf '<param><value>%s</value></param>' "$p"; done; printf '</params></methodCall>'; }
call host.get_name_label @SESSION@ @REF@ >"$TMP/small.xml"
call host.get_all @SESSION@ >"$TMP/hosts.xml"

# start_daemon [WRAPPER...]: sets DAEMON_PID; the host's ref goes to $TMP/host.ref
start_daemon() {
    local line
    line=$(XENAPID_ROOT_PASSWORD=$PASSWORD "$BUILD/spawn_ready" -p "$PORT" -o "$TMP/xenapid.log" -s 3000 -- \
        "$@" "$XENAPID" --config "$TMP/xenapid.conf" --foreground)
    DAEMON_PID=$(sed -n 's/^pid=\([0-9]*\).*/\1/p' <<<"$line")
    "$BUILD/loadgen" -p "$PORT" -L "root:$PASSWORD" -n 1 -f "$TMP/hosts.xml" -o "$TMP/hosts.out" >/dev/null
    grep -o 'OpaqueRef:[0-9a-f-]\{36\}' "$TMP/hosts.out" | sort -u | head -1 >"$TMP/host.ref"
}
stop_daemon() {
    kill "$DAEMON_PID"
    while kill -0 "$DAEMON_PID" 2>/dev/null; do sleep 0.05; done
    DAEMON_PID=
}
calls() { # PROTO CONNS COUNT
    local args=(-p "$PORT")
    [[ $1 == https ]] && args=(-t -p "$TPORT")
    "$BUILD/loadgen" "${args[@]}" -L "root:$PASSWORD" -c "$2" -n "$3" -f "$TMP/small.xml" -r "$TMP/host.ref" >/dev/null
}

declare -A IR MS SYS
echo "== callgrind: $N and $((2 * N)) calls a run"
start_daemon valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out"
ir_of_phase() { # PROTO CONNS COUNT: the daemon's instructions while COUNT calls run
    local f
    callgrind_control -d "$DAEMON_PID" >/dev/null # counters from here
    rm -f "$TMP"/cg.out.*
    calls "$@"
    callgrind_control -d "$DAEMON_PID" >/dev/null
    f=$(ls "$TMP"/cg.out.* | head -1)
    # the total, and memset's part: valgrind counts each byte of a "rep stosb" as an instruction,
    # so MHD's clearing of its connection memory pool for each request weighs far above its time
    callgrind_annotate --auto=no --threshold=100 "$f" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); t = $1}
        /\* .*__memset|^ *[0-9,]+ +\( *[0-9.]+%\) +[^ ]*__memset/ {gsub(",", "", $1); m += $1} END {print t, m + 0}'
    rm -f "$TMP"/cg.out.*
}
for c in 1 16; do
    for proto in http https; do
        calls $proto $c 200 >/dev/null # warm
        read -r a am < <(ir_of_phase $proto $c "$N")
        read -r b bm < <(ir_of_phase $proto $c $((2 * N)))
        IR[$proto$c]=$(((b - a) / N))
        MS[$proto$c]=$(((bm - am) / N))
        echo "   $proto, $c connection(s): ${IR[$proto$c]} instructions a call, ${MS[$proto$c]} of them memset's"
    done
done
stop_daemon

echo "== strace -c -f: $N calls"
start_daemon
for c in 1 16; do
    for proto in http https; do
        calls $proto $c 200 # warm: connections and handshakes are in the count, over N calls
        strace -c -f -p "$DAEMON_PID" -o "$TMP/strace.out" 2>/dev/null &
        sp=$!
        sleep 1 # attached to every thread
        calls $proto $c "$N"
        kill -INT $sp
        wait $sp || true
        SYS[$proto$c]=$(awk -v n="$N" '{c[$NF] = $4} END {
            split("poll recvfrom read sendmsg write setsockopt", k, " ")
            for (i = 1; i <= 6; i++) s = s sprintf("%s %.2f ", k[i], c[k[i]] / n); print s}' "$TMP/strace.out")
        echo "   $proto, $c connection(s): ${SYS[$proto$c]}"
    done
done
stop_daemon

echo
echo "xenapid TLS cost per small call ($(date -u +%Y-%m-%dT%H:%MZ), $XENAPID, $N calls; counts, not times)"
printf '%-12s %13s %13s %9s %13s %13s %9s\n' "connections" "HTTP Ir/call" "HTTPS Ir/call" "HTTPS +%" \
    "w/o memset" "w/o memset" "HTTPS +%"
for c in 1 16; do
    h=$((IR[http$c] - MS[http$c])) t=$((IR[https$c] - MS[https$c]))
    printf '%-12s %13s %13s %8s%% %13s %13s %8s%%\n' "$c" "${IR[http$c]}" "${IR[https$c]}" \
        "$(echo "scale=1; 100 * (${IR[https$c]} - ${IR[http$c]}) / ${IR[http$c]}" | bc)" "$h" "$t" \
        "$(echo "scale=1; 100 * ($t - $h) / $h" | bc)"
done
for c in 1 16; do
    echo "system calls per call, $c connection(s): HTTP ${SYS[http$c]}| HTTPS ${SYS[https$c]}"
done
