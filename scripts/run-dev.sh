#!/usr/bin/env bash
# Builds routerd and the plugins it loads (not the tests or benchmarks) and
# starts it on conf.d/dev.ini: type a line, get a reply from the mock
# backend ("@42 hi" talks as chat 42). Ctrl-D or Ctrl-C stops.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "run-dev: $*" >&2; }

say "checking the build dependencies (scripts/deps.sh)"
scripts/deps.sh
say "configuring build/ (cmake)"
if ! out=$(cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DROUTERD_WERROR=ON 2>&1); then
    echo "$out" >&2
    say "cmake failed"
    exit 1
fi
# A cold build takes a minute or two: show each file as it is compiled, the
# whole output only when something fails.
say "building routerd and its plugins"
log=build/run-dev-build.log
set +e
cmake --build build --target routerd -j"$(nproc)" 2>&1 | tee "$log" |
    { grep --line-buffered -E '^\[ *[0-9]+%\] (Building|Linking)' >&2 || true; }
rc=${PIPESTATUS[0]}
set -e
if [[ $rc -ne 0 ]]; then
    cat "$log" >&2
    say "build failed (output kept in $log)"
    exit "$rc"
fi
say "built; type a message and press Enter (Ctrl-D to stop)"
exec ./build/routerd -c "${ROUTERD_CONFIG:-conf.d/dev.ini}" "$@"
