#!/usr/bin/env bash
# Configures and builds xenapid into ./build (or $XENAPID_BUILD_DIR). Warnings
# are errors here (developers, CI); XENAPID_WERROR=OFF turns that off, as it
# is off by default for a plain cmake build (packagers).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${XENAPID_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE:-RelWithDebInfo} \
      -DXENAPID_WERROR=${XENAPID_WERROR:-ON} "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
