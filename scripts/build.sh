#!/usr/bin/env bash
# Configures and builds xenapid into ./build (or $XENAPID_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${XENAPID_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
