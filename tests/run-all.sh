#!/usr/bin/env bash
# Runs every test: unit (cmocka), integration (the real daemon over HTTP with
# Python's xmlrpc.client, JSON-RPC and the npm xen-api client), short fuzzing
# runs of the request decoders, and the end-to-end suite on Xen under QEMU
# when XENAPID_E2E is not 0.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
tests/integration/setup-node.sh
status=0
(cd build && ctest --output-on-failure -j2 --timeout 900) || status=1
tests/fuzz/run.sh || status=1
tests/e2e/run.sh || status=1
exit $status
