#!/usr/bin/env bash
# Staging smoke test: starts routerd with the staging manifest against a Bot
# API and an agent (by default the test fakes, build/tests/routerd_fakes),
# sends a scripted conversation, and checks the replies, /healthz, the five
# core metrics, the JSON log fields and a clean drain. Exits 1 on any miss.
#
# Usage: scripts/smoke.sh [options]
#   --routerd BIN       routerd to test (default: build/routerd, else routerd on PATH)
#   --plugin-dir DIR    plugin directory (default: the binary's own lookup)
#   --manifest FILE     manifest (default: conf.d/staging.ini)
#   --env-file FILE     dotenv file with the secrets (TELEGRAM_BOT_TOKEN, ...)
#   --driver CMD        conversation driver (default: the fakes). Any program
#                       speaking the fakes' line protocol on stdin/stdout
#                       (tests/kit/fakes_main.c) and printing
#                       TELEGRAM_API_BASE=, A2A_BASE_URL= and READY first;
#                       for a real sandbox bot, a user-client bridge.
#   --manifest-key PEM  verify the manifest's signature like production does
#   --timeout S         seconds for start and replies (default 30)
set -uo pipefail
cd "$(dirname "$0")/.."
bin=build/routerd
[[ -x $bin ]] || bin=$(command -v routerd || echo build/routerd)
plugin_dir="" manifest=conf.d/staging.ini env_file="" driver="" key="" timeout=30
while [[ $# -gt 0 ]]; do
    case $1 in
    --routerd) bin=$2; shift 2 ;;
    --plugin-dir) plugin_dir=$2; shift 2 ;;
    --manifest) manifest=$2; shift 2 ;;
    --env-file) env_file=$2; shift 2 ;;
    --driver) driver=$2; shift 2 ;;
    --manifest-key) key=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    *) echo "smoke: unknown option $1" >&2; exit 64 ;;
    esac
done
[[ -n $driver ]] || driver=build/tests/routerd_fakes
# The driver serves the bot token routerd is given.
export TELEGRAM_BOT_TOKEN=${TELEGRAM_BOT_TOKEN:-123456:smoke-token}
tmp=$(mktemp -d)
misses=0
pass() { echo "ok    $*"; }
miss() { echo "MISS  $*"; misses=$((misses + 1)); }
rpid=""
cleanup() {
    [[ -n $rpid ]] && kill -KILL "$rpid" 2>/dev/null
    [[ -n ${DRV_PID:-} ]] && { echo quit >&"${DRV[1]}"; wait "$DRV_PID"; } 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# The driver: a fake or bridged Bot API plus agent.
coproc DRV { exec $driver; }
while read -r -t "$timeout" l <&"${DRV[0]}"; do
    case $l in
    TELEGRAM_API_BASE=*) export TELEGRAM_API_BASE=${l#*=} ;;
    A2A_BASE_URL=*) export A2A_BASE_URL=${l#*=} ;;
    READY) break ;;
    esac
done
[[ -n ${TELEGRAM_API_BASE:-} ]] || { echo "smoke: driver '$driver' did not start" >&2; exit 1; }
drv() { echo "$*" >&"${DRV[1]}"; read -r -t 60 REPLY <&"${DRV[0]}"; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export ROUTERD_ADMIN_LISTEN=127.0.0.1:$port ROUTERD_STATE_DIR=$tmp/state
export ROUTERD_CHAT_HASH_KEY=${ROUTERD_CHAT_HASH_KEY:-smoke-hash-key}
export OTEL_EXPORTER_OTLP_ENDPOINT=${OTEL_EXPORTER_OTLP_ENDPOINT:-http://127.0.0.1:9}
args=(-c "$manifest")
[[ -n $plugin_dir ]] && args+=(--plugin-dir "$plugin_dir")
[[ -n $env_file ]] && args+=(--env-file "$env_file")
[[ -n $key ]] && args+=(--manifest-key "$key")
echo "smoke: $bin ${args[*]} (admin 127.0.0.1:$port)"
"$bin" "${args[@]}" >"$tmp/stdout" 2>"$tmp/log" &
rpid=$!
admin=http://127.0.0.1:$port

# /healthz turns 200 once the handshakes are done.
ready=0
for ((i = 0; i < timeout * 10; i++)); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$admin/healthz") == 200 ]] && { ready=1; break; }
    kill -0 $rpid 2>/dev/null || break
    sleep 0.1
done
if [[ $ready == 1 ]]; then pass "/healthz 200"; else
    miss "/healthz not 200 within ${timeout}s"; tail -5 "$tmp/log"; exit 1
fi
[[ $(curl -s -o /dev/null -w '%{http_code}' "$admin/livez") == 200 ]] && pass "/livez 200" || miss "/livez"

# The scripted conversation: two chats, order kept per chat.
script=("4242 hello from the smoke test" "4343 a second chat" "4242 second message, same chat"
    "4242 third: ünïcødé and *markdown*")
for line in "${script[@]}"; do drv send "$line"; done
drv wait ${#script[@]} $((timeout * 1000))
got=${REPLY#count }
if [[ $got -ge ${#script[@]} ]]; then pass "${#script[@]} replies"; else miss "replies: $got of ${#script[@]}"; fi
echo replies >&"${DRV[1]}"
replies=""
while read -r -t 30 l <&"${DRV[0]}" && [[ $l != end ]]; do replies+="${l#reply }"$'\n'; done
# Each reply answers its message (the staging mock echoes; a real agent is
# expected to answer at all), in order within a chat.
for chat in 4242 4343; do
    want=$(printf '%s\n' "${script[@]}" | sed -n "s/^$chat //p")
    have=$(sed -n "s/^$chat //p" <<<"$replies")
    n_want=$(wc -l <<<"$want") n_have=$(grep -c . <<<"$have")
    if [[ $n_have -ne $n_want ]]; then miss "chat $chat: $n_have replies, want $n_want"; continue; fi
    if grep -q '^echo: ' <<<"$have"; then
        # The telegram transport renders Markdown (format = markdown): the
        # echoed *markdown* arrives as the word in italics, without stars.
        [[ "$have" == "$(sed -e 's/^/echo: /' -e 's/\*\([^*]*\)\*/\1/g' <<<"$want")" ]] &&
            pass "chat $chat: replies in order" ||
            miss "chat $chat: replies differ: $have"
    else
        pass "chat $chat: $n_have replies"
    fi
done

# The five core metrics, and the build identity.
m=$(curl -sf "$admin/metrics") || miss "/metrics"
metric() { grep -E "^$1(\{[^}]*\})? " <<<"$m" | head -1 | awk '{print $NF}'; }
n=$(metric routerd_round_trip_seconds_count)
[[ ${n:-0} -ge ${#script[@]} ]] 2>/dev/null && pass "routerd_round_trip_seconds ($n)" || miss "routerd_round_trip_seconds_count ${n:-absent}"
[[ -n $(metric routerd_queue_depth) ]] && pass "routerd_queue_depth" || miss "routerd_queue_depth"
if grep -q '^routerd_backend_failures_total{.*classification="fatal"} ' <<<"$m"; then
    failed=$(awk '/^routerd_backend_failures_total\{/ { s += $NF } END { print s + 0 }' <<<"$m")
    [[ $failed == 0 ]] && pass "routerd_backend_failures_total (0 failures)" ||
        miss "routerd_backend_failures_total: $failed backend failure(s) during the smoke"
else
    miss "routerd_backend_failures_total"
fi
up=$(metric routerd_uptime_seconds)
awk -v u="${up:-0}" 'BEGIN { exit !(u > 0) }' && pass "routerd_uptime_seconds ($up)" || miss "routerd_uptime_seconds"
grep -q '^routerd_rate_limit_hits_total{persona=' <<<"$m" && pass "routerd_rate_limit_hits_total" ||
    miss "routerd_rate_limit_hits_total"
grep -q '^routerd_build_info{.*manifest_sha256="[0-9a-f]\{64\}"' <<<"$m" && pass "routerd_build_info" ||
    miss "routerd_build_info"

# Drain: SIGTERM, exit 0, then the log is complete.
kill -TERM $rpid
rc=0; wait $rpid || rc=$?
rpid=""
[[ $rc -eq 0 ]] && pass "SIGTERM drained, exit 0" || miss "exit $rc after SIGTERM"

# JSON log lines: the fields every line of a reply carries, no raw chat id,
# no secret.
python3 - "$tmp/log" "$TELEGRAM_BOT_TOKEN" "$ROUTERD_CHAT_HASH_KEY" <<'PY' && pass "log fields" || miss "log fields"
import json, sys
path, token, hkey = sys.argv[1:4]
need = ["ts", "level", "event", "correlation_id", "chat_id_hash", "persona_tag", "status",
        "latency_ms", "env", "build_sha"]
text = open(path, encoding="utf-8").read()
ok = True
if token in text or hkey in text:
    print("  a secret appears in the log"); ok = False
lines = [json.loads(l) for l in text.splitlines() if l.startswith("{")]
replied = [l for l in lines if l.get("event") == "replied"]
if len(replied) < 4:
    print(f"  {len(replied)} 'replied' lines"); ok = False
for l in replied:
    missing = [k for k in need if k not in l]
    if missing:
        print(f"  'replied' line without {missing}"); ok = False; break
    if str(l["chat_id_hash"]) in ("4242", "4343"):
        print("  raw chat id in chat_id_hash"); ok = False
sys.exit(0 if ok else 1)
PY
env_seen=$(grep -o '"env":"[^"]*"' "$tmp/log" | sort -u | tr '\n' ' ')
echo "      env in logs: $env_seen"
if [[ $misses -eq 0 ]]; then echo "smoke: PASS"; exit 0; fi
echo "smoke: FAIL ($misses miss(es)); log: "; tail -20 "$tmp/log"
exit 1
