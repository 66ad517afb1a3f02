#!/usr/bin/env bash
# Series for alerts and dashboards: every routerd_* metric the shipped
# rules and dashboard read exists from the first scrape (production-shaped
# router against the fakes), backend failures at 0 for every class, the
# queue wait histogram measures waiting for a worker, and the Alertmanager
# example routes as documented (amtool).
# Usage: test_kit_metrics.sh ROUTERD SRC PLUGIN_DIR FAKES
set -euo pipefail
bin=$1 src=$2 plugins=$3 fakes_bin=$4
tmp=$(mktemp -d)
. "$src/tests/kit/kit_lib.sh"
trap 'kill $rpid 2>/dev/null || true; stop_fakes; rm -rf "$tmp"' EXIT
rpid=""
start_fakes "$fakes_bin"
prom=$src/packaging/prometheus

# ---- a production-shaped router: every needed series at the first scrape --
port=$(free_port)
export TELEGRAM_BOT_TOKEN=123456:kit-token ROUTERD_CHAT_HASH_KEY=k ROUTERD_STATE_DIR=$tmp/state
export ROUTERD_ADMIN_LISTEN=127.0.0.1:$port OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9
"$bin" -c "$src/conf.d/production.ini" --plugin-dir "$plugins" >"$tmp/out" 2>"$tmp/err" &
rpid=$!
wait_http "http://127.0.0.1:$port/healthz" 200 30 || fail "production.ini never ready: $(cat "$tmp/err")"
m=$(curl -sf "http://127.0.0.1:$port/metrics")
for k in transient fatal timeout protocol empty; do
    grep -qx "routerd_backend_failures_total{backend=\"helper\",classification=\"$k\"} 0" <<<"$m" ||
        fail "no routerd_backend_failures_total{classification=$k} at 0"
done
grep -qx 'routerd_queue_wait_seconds_count 0' <<<"$m" || fail "no routerd_queue_wait_seconds at 0"
# Names read by the rules and the dashboard (recording rules excluded).
names=$( { grep -o 'routerd_[a-z0-9_]*' "$prom/routerd-alerts.yml"; grep -o 'routerd_[a-z0-9_]*' "$prom/routerd-dashboard.json"; } |
    sed -E 's/_(bucket|sum|count)$//' | sort -u)
# Label values only the Bot API decides (method, HTTP code) cannot exist
# before the first error; the panel shows "no data" until then.
skip=routerd_telegram_api_errors_total
for n in $names; do
    [[ $n == "$skip" ]] && continue
    grep -qE "^${n}(_bucket|_sum|_count)?(\{| )" <<<"$m" || fail "series $n missing at start"
done
kill -TERM $rpid; wait $rpid || fail "production.ini did not stop cleanly"
rpid=""

# ---- queue wait: one worker, three chats, 300 ms each ----------------------
port=$(free_port)
cat >"$tmp/q.ini" <<INI
[router]
admin_listen = 127.0.0.1:$port
state_dir = $tmp/q
workers = 1
rate_limit_per_minute = 0
[transport.console]
plugin = console
[backend.mock]
plugin = mock
latency_ms = 300
[sink.metrics]
plugin = prometheus
[persona.p]
backend = mock
chats = *
INI
mkfifo "$tmp/in"
"$bin" -c "$tmp/q.ini" --plugin-dir "$plugins" <"$tmp/in" >"$tmp/qout" 2>"$tmp/qerr" &
rpid=$!
exec 3>"$tmp/in"
wait_http "http://127.0.0.1:$port/healthz" 200 30 || fail "queue router not ready"
printf '@1 a\n@2 b\n@3 c\n' >&3
three() { [[ $(wc -l <"$tmp/qout") -ge 3 ]]; }
wait_for 30 three || fail "no replies: $(cat "$tmp/qerr")"
m=$(curl -sf "http://127.0.0.1:$port/metrics")
count=$(sed -n 's/^routerd_queue_wait_seconds_count //p' <<<"$m")
sum=$(sed -n 's/^routerd_queue_wait_seconds_sum //p' <<<"$m")
[[ "$count" == 3 ]] || fail "queue wait count $count, want 3"
# The second waits ~0.3 s, the third ~0.6 s behind the single worker.
awk -v s="$sum" 'BEGIN { exit !(s >= 0.75 && s < 10) }' || fail "queue wait sum $sum, want about 0.9 s"
exec 3>&-
wait $rpid || fail "queue router exit $?"
rpid=""

# ---- Alertmanager example -------------------------------------------------
if command -v amtool >/dev/null; then
    amtool check-config "$prom/alertmanager-routes.yml" >/dev/null || fail "amtool check-config"
    route() { amtool config routes test --config.file="$prom/alertmanager-routes.yml" "$@" 2>/dev/null; }
    [[ $(route alertname=RouterdBackendFatalFailures severity=page job=routerd) == routerd-oncall ]] || fail "page route"
    [[ $(route alertname=RouterdQueueWaitHigh severity=ticket job=routerd) == routerd-tickets ]] || fail "ticket route"
    [[ $(route alertname=RouterdBackendFatalFailures severity=page job=routerd-staging) == routerd-staging ]] || fail "staging route"
    # Every alert of the rules has a severity the routes know.
    for sev in $(sed -n 's/^ *severity: //p' "$prom/routerd-alerts.yml" | sort -u); do
        [[ $(route alertname=RouterdX severity="$sev" job=routerd) == routerd-oncall || $sev != page ]] || fail "severity $sev"
        [[ $sev == page || $sev == ticket ]] || fail "alert severity $sev has no route"
    done
else
    fail "amtool missing (scripts/deps.sh --test installs prometheus-alertmanager)"
fi
finish_test "metrics for alerts"
