#!/usr/bin/env bash
# Soak test: steady load through the fakes (or a --driver) for DURATION
# seconds, reporting every interval the messages sent and answered, the
# queue depth and routerd's resident memory, then the round-trip latency
# percentiles. Exits 1 if a message stays unanswered after the drain or
# routerd stops early.
#
# Usage: scripts/soak.sh DURATION [options]
#   --rate N          messages per second (default 20)
#   --chats N         distinct chats the load is spread over (default 200)
#   --interval S      report interval in seconds (default 5)
#   --routerd BIN --plugin-dir DIR --manifest FILE --driver CMD   as smoke.sh
#   --csv FILE        also write the samples as CSV
set -uo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 1 && $1 =~ ^[0-9]+$ ]] || { sed -n '2,15p' "$0" >&2; exit 64; }
duration=$1; shift
rate=20 chats=200 interval=5 csv=""
bin=build/routerd
[[ -x $bin ]] || bin=$(command -v routerd || echo build/routerd)
plugin_dir="" manifest=conf.d/staging.ini driver=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --rate) rate=$2; shift 2 ;;
    --chats) chats=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --routerd) bin=$2; shift 2 ;;
    --plugin-dir) plugin_dir=$2; shift 2 ;;
    --manifest) manifest=$2; shift 2 ;;
    --driver) driver=$2; shift 2 ;;
    --csv) csv=$2; shift 2 ;;
    *) echo "soak: unknown option $1" >&2; exit 64 ;;
    esac
done
[[ -n $driver ]] || driver=build/tests/routerd_fakes
# The driver serves the bot token routerd is given.
export TELEGRAM_BOT_TOKEN=${TELEGRAM_BOT_TOKEN:-123456:soak-token}
tmp=$(mktemp -d)
rpid=""
cleanup() {
    [[ -n $rpid ]] && kill -KILL "$rpid" 2>/dev/null
    [[ -n ${DRV_PID:-} ]] && { echo quit >&"${DRV[1]}"; wait "$DRV_PID"; } 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
coproc DRV { exec $driver; }
while read -r -t 30 l <&"${DRV[0]}"; do
    case $l in
    TELEGRAM_API_BASE=*) export TELEGRAM_API_BASE=${l#*=} ;;
    A2A_BASE_URL=*) export A2A_BASE_URL=${l#*=} ;;
    READY) break ;;
    esac
done
[[ -n ${TELEGRAM_API_BASE:-} ]] || { echo "soak: driver did not start" >&2; exit 1; }
drv() { echo "$*" >&"${DRV[1]}"; read -r -t 60 REPLY <&"${DRV[0]}"; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export ROUTERD_ADMIN_LISTEN=127.0.0.1:$port ROUTERD_STATE_DIR=$tmp/state
export ROUTERD_CHAT_HASH_KEY=${ROUTERD_CHAT_HASH_KEY:-soak-hash-key}
export OTEL_EXPORTER_OTLP_ENDPOINT=${OTEL_EXPORTER_OTLP_ENDPOINT:-http://127.0.0.1:9}
args=(-c "$manifest")
[[ -n $plugin_dir ]] && args+=(--plugin-dir "$plugin_dir")
"$bin" "${args[@]}" >/dev/null 2>"$tmp/log" &
rpid=$!
admin=http://127.0.0.1:$port
for ((i = 0; i < 300; i++)); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$admin/healthz") == 200 ]] && break
    sleep 0.1
done
[[ $(curl -s -o /dev/null -w '%{http_code}' "$admin/healthz") == 200 ]] ||
    { echo "soak: routerd not ready"; tail -5 "$tmp/log"; exit 1; }

metric() { grep -E "^$1 " <<<"$2" | awk '{print $2}'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$rpid/status" 2>/dev/null; }
echo "soak: ${duration}s at ${rate} msg/s over ${chats} chats (routerd pid $rpid)"
printf '%6s %8s %8s %6s %9s\n' t_s sent replied queue rss_kib
[[ -n $csv ]] && echo "t_s,sent,replied,queue_depth,rss_kib" >"$csv"
sent=0 start=$(date +%s%N) next_report=$interval rss_max=0 rss_first=""
sample() {
    local m replied q r
    m=$(curl -sf "$admin/metrics")
    replied=$(metric routerd_round_trip_seconds_count "$m")
    q=$(metric routerd_queue_depth "$m")
    r=$(rss_kib)
    [[ -z $rss_first ]] && rss_first=$r
    (( r > rss_max )) && rss_max=$r
    printf '%6s %8s %8s %6s %9s\n' "$1" "$sent" "${replied:-?}" "${q:-?}" "${r:-?}"
    [[ -n $csv ]] && echo "$1,$sent,${replied:-},${q:-},${r:-}" >>"$csv"
}
sample 0
while :; do
    now=$(date +%s%N)
    elapsed_ms=$(( (now - start) / 1000000 ))
    (( elapsed_ms >= duration * 1000 )) && break
    # Catch up to the schedule: rate messages per second since the start.
    due=$(( elapsed_ms * rate / 1000 + 1 ))
    # Pipelined: all due commands first, then their acknowledgements.
    batch=0
    while (( sent + batch < due )); do
        n=$((sent + batch))
        echo "send $(( 1000 + n % chats )) soak message $n" >&"${DRV[1]}"
        batch=$((batch + 1))
    done
    for ((k = 0; k < batch; k++)); do read -r -t 60 REPLY <&"${DRV[0]}"; done
    sent=$((sent + batch))
    if (( elapsed_ms >= next_report * 1000 )); then
        sample "$next_report"
        next_report=$((next_report + interval))
    fi
    kill -0 $rpid 2>/dev/null || { echo "soak: routerd stopped early"; tail -5 "$tmp/log"; exit 1; }
    sleep 0.02
done
# Everything sent gets its answer.
drv wait "$sent" 60000
answered=${REPLY#count }
sample "$duration"
m=$(curl -sf "$admin/metrics")
kill -TERM $rpid
rc=0; wait $rpid || rc=$?
rpid=""
# Percentiles from the round-trip histogram (linear within a bucket, as
# histogram_quantile does).
grep '^routerd_round_trip_seconds_bucket' <<<"$m" |
    sed -E 's/.*le="([^"]+)"\} (.*)/\1 \2/' | awk -v n="$sent" '
    { le[NR] = $1; c[NR] = $2 } END {
        total = c[NR]
        split("0.5 0.9 0.99", qs, " ")
        for (k = 1; k <= 3; k++) {
            rank = qs[k] * total; prev = 0; plo = 0
            for (i = 1; i <= NR; i++) {
                if (c[i] >= rank) {
                    hi = (le[i] == "+Inf") ? plo : le[i]
                    v = (c[i] == prev) ? hi : plo + (hi - plo) * (rank - prev) / (c[i] - prev)
                    printf "latency p%s: %.1f ms\n", qs[k] * 100, v * 1000; break
                }
                prev = c[i]; plo = le[i]
            }
        }
    }'
echo "sent $sent ($((sent / (duration > 0 ? duration : 1))) msg/s achieved), answered $answered, RSS ${rss_first:-?} -> max ${rss_max} KiB, exit $rc"
[[ $answered -ge $sent && $rc -eq 0 ]] || { echo "soak: FAIL"; exit 1; }
echo "soak: PASS"
