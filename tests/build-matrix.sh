#!/usr/bin/env bash
# Builds every target (daemon, unit tests, bench tools) in each configuration the
# tree must build warning-free in, with warnings as errors (XENAPID_WERROR=ON),
# each into its own build-matrix/<name>: gcc at -O0 (Debug), -O1, -O2
# (RelWithDebInfo), -O3 (Release), -Os (MinSizeRel), -Og, with Debian's
# packaging flags (dpkg-buildflags: _FORTIFY_SOURCE, stack protector), and clang.
# Optimisation levels matter: gcc's -Wmaybe-uninitialized and -Wformat-truncation
# see different code at each one. Prints one line per configuration with its
# time; exits non-zero if any configuration fails to configure or build.
#
#   BUILD_MATRIX_DIR   where the build trees go (default build-matrix)
#   BUILD_MATRIX_ONLY  names of the configurations to build (default all)
set -uo pipefail
cd "$(dirname "$0")/.."
top=${BUILD_MATRIX_DIR:-build-matrix}
jobs=$(nproc)

# name | compiler | CMAKE_BUILD_TYPE | CMAKE_C_FLAGS (None: the flags are all there is)
configs=(
    "gcc-O0-debug|gcc|Debug|"
    "gcc-O1|gcc|None|-O1 -g"
    "gcc-O2|gcc|RelWithDebInfo|"
    "gcc-O3-release|gcc|Release|"
    "gcc-Os|gcc|MinSizeRel|"
    "gcc-Og|gcc|None|-Og -g"
    "gcc-debian|gcc|None|$(dpkg-buildflags --get CFLAGS 2>/dev/null) $(dpkg-buildflags --get CPPFLAGS 2>/dev/null)"
    "clang-O2|clang|RelWithDebInfo|"
)

mkdir -p "$top"
[ -e "$top/.gitignore" ] || printf '*\n' >"$top/.gitignore" # build trees, never committed
status=0
t_all=$SECONDS
for entry in "${configs[@]}"; do
    IFS='|' read -r name cc type flags <<<"$entry"
    if [ -n "${BUILD_MATRIX_ONLY:-}" ] && ! [[ " $BUILD_MATRIX_ONLY " == *" $name "* ]]; then
        continue
    fi
    dir="$top/$name"
    t0=$SECONDS
    if ! command -v "$cc" >/dev/null 2>&1; then
        printf 'build %-15s FAIL  %s not found\n' "$name" "$cc"
        status=1
        continue
    fi
    ldflags=""
    [ "$name" = gcc-debian ] && ldflags=$(dpkg-buildflags --get LDFLAGS 2>/dev/null)
    # A fresh cache each time: a changed flag list must not be hidden by an old one.
    rm -f "$dir/CMakeCache.txt"
    if ! CC=$cc LDFLAGS=$ldflags cmake -S . -B "$dir" -G "Unix Makefiles" -DCMAKE_BUILD_TYPE="$type" -DCMAKE_C_FLAGS="$flags" \
            -DXENAPID_WERROR=ON >"$dir.configure.log" 2>&1; then
        printf 'build %-15s FAIL  configure (log %s)\n' "$name" "$dir.configure.log"
        tail -n 20 "$dir.configure.log" >&2
        status=1
        continue
    fi
    # -k: every warning of the configuration in one run, not only the first file's.
    if nice cmake --build "$dir" -j"$jobs" -- -k >"$dir.build.log" 2>&1; then
        printf 'build %-15s ok    %3ss\n' "$name" $((SECONDS - t0))
    else
        printf 'build %-15s FAIL  %3ss (log %s)\n' "$name" $((SECONDS - t0)) "$dir.build.log"
        grep -E -A6 '(error|warning):' "$dir.build.log" | head -n 40 >&2
        status=1
    fi
done
printf 'build matrix: %ss\n' $((SECONDS - t_all))
exit $status
