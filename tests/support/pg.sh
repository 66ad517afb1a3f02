#!/usr/bin/env bash
# A throw-away PostgreSQL server for tests, on a unix socket in its own
# directory (no port to collide with). As root the server runs as `nobody`
# (postgres refuses root).
#
#   pg.sh start DIR     initdb DIR/data once, start; prints the conninfo
#   pg.sh stop DIR      fast shutdown
#   pg.sh kill DIR      immediate shutdown (a crash)
#   pg.sh url DIR       prints the conninfo
#   pg.sh run CMD...    fresh server in a temp dir; runs CMD with
#                       ROUTERD_TEST_PG_URL, ROUTERD_TEST_PG_DIR and
#                       ROUTERD_TEST_PG_SH set; stops and removes it
#
# Exits 77 (ctest: skipped) when the PostgreSQL server binaries are absent.
set -euo pipefail

find_bindir() {
    if [[ -n "${PG_BINDIR:-}" && -x "$PG_BINDIR/initdb" ]]; then echo "$PG_BINDIR"; return; fi
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && { echo "$d"; return; }
    done
    command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return; }
    return 1
}

BIN=$(find_bindir) || {
    echo "SKIP: PostgreSQL server binaries not found (scripts/deps.sh --test installs postgresql)" >&2
    exit 77
}

as_owner() {
    if [[ $(id -u) -eq 0 ]]; then runuser -u nobody -- "$@"; else "$@"; fi
}

url() { echo "host=$1 port=5432 user=postgres dbname=postgres"; }

start() {
    local dir=$1
    mkdir -p "$dir"
    if [[ $(id -u) -eq 0 ]]; then chown nobody "$dir"; chmod 755 "$dir"; fi
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
        as_owner "$BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
            >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses='' -k $dir -p 5432 -c fsync=off -c max_connections=60" \
        start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    url "$dir"
}

stop() { as_owner "$BIN/pg_ctl" -D "$1/data" -m "${2:-fast}" -w stop >/dev/null 2>&1 || true; }

cmd=${1:-}
shift || true
case "$cmd" in
start) start "$1" ;;
stop) stop "$1" fast ;;
kill) stop "$1" immediate ;;
url) url "$1" ;;
run)
    # As root the server runs as nobody, who must reach the directory:
    # /tmp rather than a private $TMPDIR.
    if [[ $(id -u) -eq 0 ]]; then base=/tmp; else base=${TMPDIR:-/tmp}; fi
    top=$(mktemp -d "$base/routerd-pg.XXXXXX")
    chmod 755 "$top"
    dir="$top/pg"
    trap 'stop "$dir" immediate; rm -rf "$top"' EXIT
    ROUTERD_TEST_PG_URL=$(start "$dir")
    export ROUTERD_TEST_PG_URL ROUTERD_TEST_PG_DIR="$dir" ROUTERD_TEST_PG_SH="$0"
    "$@"
    ;;
*)
    echo "usage: pg.sh start|stop|kill|url DIR | run CMD..." >&2
    exit 64
    ;;
esac
