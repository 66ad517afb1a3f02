#!/usr/bin/env bash
# The state stores side by side in one run: routerd's burst benchmark with
# SQLite (state_sync = full, then normal) and with PostgreSQL (a local
# server that tests/support/pg.sh starts: unix socket, fsync off), plus
# where PostgreSQL's share of the time goes: its server CPU and its
# transactions and row writes per message.
# Usage: bench/store.sh [BUILD_DIR] [MESSAGES] [CHATS]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
n=${2:-20000}
chats=${3:-500}
b="$build/bench/bench_e2e"
[[ -x "$b" ]] || { echo "build $b first (cmake --build build --target bench_e2e)" >&2; exit 1; }

echo "== sqlite, state_sync = full"
"$b" --client routerd burst "$n" "$chats"
echo "== sqlite, state_sync = normal"
BENCH_SYNC=normal "$b" --client routerd burst "$n" "$chats"
echo "== postgresql (local server, unix socket, fsync off)"
"$src/tests/support/pg.sh" run bash -c '
    q() { psql -X -At -F " " "$ROUTERD_TEST_PG_URL" -c "$1"; }
    stats() { q "select xact_commit, tup_inserted + tup_updated + tup_deleted from pg_stat_database where datname = current_database()"; }
    # The postmaster reaps the backends: its own plus its children'"'"'s CPU.
    cpu() { awk "{print \$14 + \$15 + \$16 + \$17}" "/proc/$(head -1 "$ROUTERD_TEST_PG_DIR/data/postmaster.pid")/stat"; }
    read -r c0 w0 <<<"$(stats)"
    t0=$(cpu)
    BENCH_ROUTER="store = postgresql
store_url = $ROUTERD_TEST_PG_URL" "$1" --client routerd burst "$2" "$3"
    sleep 1.5 # statistics are flushed when the backend exits
    read -r c1 w1 <<<"$(stats)"
    t1=$(cpu)
    hz=$(getconf CLK_TCK)
    awk -v c=$((c1 - c0)) -v w=$((w1 - w0)) -v t=$((t1 - t0)) -v hz="$hz" -v n="$2" "BEGIN {
        printf \"  PostgreSQL: server CPU %.2f s, %.2f transactions and %.2f row writes per message\n\",
               t / hz, c / n, w / n }"
' _ "$b" "$n" "$chats"
