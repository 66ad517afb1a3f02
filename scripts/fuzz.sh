#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each from its seed
# corpus, for SECONDS (default 60), or for a fixed number of inputs with a
# fixed seed (--runs N: the same inputs on every machine, as CI uses).
# Usage: scripts/fuzz.sh [SECONDS | --runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--runs" ]]; then
    limit=(-runs="${2:?--runs needs a count}" -seed=1)
    what="$2 inputs"
else
    limit=(-max_total_time="${1:-60}")
    what="${1:-60}s"
fi
command -v clang >/dev/null 2>&1 || { echo "fuzz: clang is needed" >&2; exit 1; }
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DROUTERD_FUZZ=ON -DROUTERD_WERROR=ON >/dev/null
targets=$(cmake --build build-fuzz --target help | sed -n 's/^\.\.\. \(.*_fuzzer\)$/\1/p')
cmake --build build-fuzz -j"$(nproc)" --target $targets >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for f in $(find build-fuzz -name '*_fuzzer' -type f -executable | sort); do
    name=$(basename "$f" _fuzzer)
    mkdir -p "$work/$name"
    echo "fuzz: $name, $what"
    # New inputs go to a scratch directory; the seed corpus stays as committed.
    "$f" "${limit[@]}" -max_len=16384 -print_final_stats=0 \
        "$work/$name" "tests/fuzz/corpus/$name" >"$work/$name.log" 2>&1 || {
        tail -40 "$work/$name.log"; echo "fuzz: $name failed"; exit 1; }
done
echo "fuzz: no crashes"
