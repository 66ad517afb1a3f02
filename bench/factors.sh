#!/bin/sh
# What each choice of the benchmark manifest costs: routerd alone, one
# change at a time against the default (journal state_sync = full, typing
# on, throttle off, metrics sink, admin server on, getUpdates limit 100),
# medians of K runs of a burst of N messages over C chats.
#   bench/factors.sh [BUILD_DIR] [N] [CHATS] [K]
B=${1:-build}/bench/bench_e2e
N=${2:-5000}
C=${3:-50}
K=${4:-3}
row() {
    label=$1
    shift
    line=$(env "$@" "$B" --client routerd --repeat "$K" burst "$N" "$C" | grep '^MEDIAN')
    pick() { echo "$line" | sed -n "s/.* $1=\([^ ]*\) \[\([^]]*\)\].*/\1 [\2]/p"; }
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$(pick msgs_per_s)" \
        "$(pick cpu_ms_per_msg)" "$(pick vcsw_per_msg)" "$(pick disk_write_bytes_per_msg)" \
        "$(pick peak_rss_kib)" "$(pick load1)"
}
echo "burst $N messages over $C chats, routerd, medians of $K [min..max]"
echo
echo "| change | msgs/s | CPU ms/msg | voluntary switches/msg | disk bytes/msg | peak RSS KiB | load1 |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
row "default" X=1
row "state_sync = normal" BENCH_SYNC=normal
row "typing = off" BENCH_TYPING=off
row "no sinks" BENCH_SINKS=none
row "sinks: metrics + jsonlog" BENCH_SINKS=metrics,log
row "admin_listen = off" BENCH_ADMIN=off
row "getUpdates limit = 10" BENCH_LIMIT=10
row "a2a message_ids = random (no exactly-once record)" BENCH_A2A="message_ids = random"
row "old bench manifest (typing off, no sinks, admin off)" BENCH_TYPING=off BENCH_SINKS=none BENCH_ADMIN=off
