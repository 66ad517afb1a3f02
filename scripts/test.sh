#!/usr/bin/env bash
# Builds routerd and runs every test: unit (cmocka), integration (real
# binary against fake Telegram / A2A / OTLP servers on 127.0.0.1), fuzz
# corpus replays and the packaging checks.
# Usage: scripts/test.sh [--sanitize | --tsan] [ctest args...]
# --sanitize: AddressSanitizer + UBSan (build-asan); --tsan: ThreadSanitizer
# with clang (build-tsan). Either fails a test on the first report.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DROUTERD_WERROR=ON)
deps=(--test)
if [[ "${1:-}" == "--sanitize" ]]; then
    shift
    dir=build-asan
    opts=(-DCMAKE_BUILD_TYPE=Debug -DROUTERD_SANITIZE=ON -DROUTERD_WERROR=ON)
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
elif [[ "${1:-}" == "--tsan" ]]; then
    shift
    dir=build-tsan
    opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DROUTERD_TSAN=ON -DROUTERD_WERROR=ON)
    deps=(--test --ci) # clang
    # A second SIGTERM exits at once on purpose, leaving threads unjoined.
    export CC=clang TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:report_thread_leaks=0
fi
scripts/deps.sh "${deps[@]}"
cmake -S . -B "$dir" "${opts[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)"
ctest --test-dir "$dir" --output-on-failure -j2 "$@"
