#!/usr/bin/env bash
# Runs every test: the build matrix (every optimisation level and clang, with
# -Werror), unit (cmocka), integration (the real daemon over HTTP with Python's
# xmlrpc.client, JSON-RPC and the npm xen-api client), the integration tests
# again against an ASan+UBSan build of the daemon, short fuzzing runs of the
# request decoders, and the end-to-end suite on Xen under QEMU when
# XENAPID_E2E is not 0. Prints the time each stage took.
#
#   XENAPID_MATRIX=0    skip the build matrix
#   XENAPID_ASAN=0      skip the sanitizer run
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
tests/integration/setup-node.sh
status=0
times=()
stage() { # NAME COMMAND...: runs it, notes its time, and a failure without stopping the rest
    local name=$1 t0=$SECONDS rc=0
    shift
    "$@" || rc=$?
    [ "$rc" -eq 0 ] || status=1
    times+=("$(printf '%-10s %4ss %s' "$name" $((SECONDS - t0)) "$([ "$rc" -eq 0 ] && echo ok || echo FAILED)")")
}

if [ "${XENAPID_MATRIX:-1}" != 0 ]; then
    stage matrix tests/build-matrix.sh
fi
stage ctest bash -c 'cd build && ctest --output-on-failure -j2 --timeout 900'
if [ "${XENAPID_ASAN:-1}" != 0 ]; then
    # The harness fails a test on any sanitizer report in the daemon's log
    # ("runtime error:", "ERROR: AddressSanitizer", LeakSanitizer) and on a
    # non-zero exit at stop; tests/ubsan.supp and tests/lsan.supp say what is
    # knowingly let through, and why.
    stage asan bash -c 'set -e
        cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DXENAPID_SANITIZE=ON -DXENAPID_WERROR=ON >/dev/null
        nice cmake --build build-asan -j"$(nproc)" --target programs >build-asan/build.log 2>&1 ||
            { tail -n 40 build-asan/build.log; exit 1; }
        cd build-asan && ctest --output-on-failure -j2 --timeout 900 -R "^(integration|node|compat)_"'
fi
stage fuzz tests/fuzz/run.sh
stage e2e tests/e2e/run.sh
printf '%s\n' "${times[@]}"
exit $status
