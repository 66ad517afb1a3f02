#!/usr/bin/env bash
# Runs routerd under valgrind through a short console session and fails on
# any memory error or leak. Usage: scripts/valgrind-smoke.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-build}/routerd"
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
out=$(printf 'hello\n@42 second chat\n/persona\n' |
    ROUTERD_STATE_DIR="$state" ROUTERD_ADMIN_LISTEN=127.0.0.1:0 \
    valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
        --show-leak-kinds=definite,indirect "$bin" -c conf.d/dev.ini 2>"$state/err") || {
    cat "$state/err" >&2; echo "valgrind: failed" >&2; exit 1; }
grep -q "hello" <<<"$out" || { echo "valgrind run produced no reply" >&2; cat "$state/err" >&2; exit 1; }
echo "valgrind: clean"
