#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang, AddressSanitizer
# and UBSan in ./build-fuzz, then runs each one briefly over a scratch copy of
# its seed corpus tests/fuzz/corpus/<name> (fuzz_<name>.c). Prints one line per
# target; exits non-zero if any target crashes, leaks, times out or fails to build.
#
#   FUZZ_SECONDS   time per target (default 20)
#   FUZZ_JOBS      targets run in parallel (default 2)
#   FUZZ_BUILD_DIR build directory (default build-fuzz)
set -uo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-20}
jobs=${FUZZ_JOBS:-2}
build=${FUZZ_BUILD_DIR:-build-fuzz}
cc=${FUZZ_CC:-clang}

if ! command -v "$cc" >/dev/null 2>&1; then
    echo "fuzz: $cc not found" >&2
    exit 1
fi

targets=()
for src in tests/fuzz/fuzz_*.c; do
    [ -e "$src" ] || continue
    targets+=("$(basename "$src" .c)")
done
if [ ${#targets[@]} -eq 0 ]; then
    echo "fuzz: no targets in tests/fuzz" >&2
    exit 1
fi

mkdir -p "$build"
[ -e "$build/.gitignore" ] || printf '*\n' >"$build/.gitignore" # a build tree, never committed
# CMake instruments all the code (not only the fuzz_*.c files) with
# -fsanitize=fuzzer-no-link when XENAPID_FUZZ is on, so the fuzzer sees which
# decoder paths an input reaches; clang builds with the same -Werror as gcc.
if ! CC="$cc" cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DXENAPID_FUZZ=ON -DXENAPID_SANITIZE=ON -DXENAPID_WERROR=ON \
        >"$build/configure.log" 2>&1; then
    cat "$build/configure.log" >&2
    echo "fuzz: configuring $build failed" >&2
    exit 1
fi
if ! cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" >"$build/build.log" 2>&1; then
    tail -n 40 "$build/build.log" >&2
    echo "fuzz: building the fuzz targets failed (full log: $build/build.log)" >&2
    exit 1
fi

work="$build/fuzz-run"
rm -rf "$work"
mkdir -p "$work"

# Runs one target; its exit status is libFuzzer's (0: no crash).
run_one() {
    local t=$1 name=${1#fuzz_}
    local corpus="$work/$name-corpus" log="$work/$t.log"
    mkdir -p "$corpus" "$work/$name-artifacts"
    [ -d "tests/fuzz/corpus/$name" ] && cp -R "tests/fuzz/corpus/$name/." "$corpus/"
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        "$build/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$work/$name-artifacts/" "$corpus" >"$log" 2>&1
}

pids=()
status=0
i=0
for t in "${targets[@]}"; do
    run_one "$t" 2>/dev/null &
    pids+=($!)
    i=$((i + 1))
    if [ $((i % jobs)) -eq 0 ]; then
        for p in "${pids[@]}"; do wait "$p" || true; done
        pids=()
    fi
done
for p in "${pids[@]}"; do wait "$p" || true; done

# Verdicts from the logs (exit statuses of background jobs were collected above only to wait).
for t in "${targets[@]}"; do
    name=${t#fuzz_}
    log="$work/$t.log"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -n1 | grep -Eo '[0-9]+')
    seeds=$(ls "tests/fuzz/corpus/$name" 2>/dev/null | wc -l)
    corp=$(ls "$work/$name-corpus" | wc -l)
    crashes=$(ls "$work/$name-artifacts" 2>/dev/null | wc -l)
    if [ "$crashes" -eq 0 ] && grep -q "^Done [0-9]* runs" "$log"; then
        printf 'fuzz %-14s ok    %9s runs in %ss, coverage %s, corpus %s -> %s\n' \
            "$t" "${runs:-?}" "$seconds" "${cov:-?}" "$seeds" "$corp"
    else
        status=1
        printf 'fuzz %-14s FAIL  after %s runs: %s (log %s, inputs in %s)\n' "$t" "${runs:-?}" \
            "$(grep -Em1 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY' "$log" || echo 'no Done line')" \
            "$log" "$work/$name-artifacts"
        grep -E -A25 'ERROR: |runtime error' "$log" | head -n 40 >&2
    fi
done
exit $status
