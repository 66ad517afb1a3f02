#!/usr/bin/env bash
# The telegram transport, the a2a backend and the OTLP sink over TLS: the
# fake Bot API, the fake agent and a collector (tests/support/collector.py)
# each behind a TLS front (tests/support/tls_proxy.py) whose certificate a
# private CA signed. With ca_file the replies and the traces arrive, and
# handles that connect after the first resume the TLS session it made
# (each plugin's handles share one); with another CA nothing is sent; an
# unreadable ca_file fails at start.
# Usage: test_tls.sh ROUTERD SRC PLUGIN_DIR FAKES
set -euo pipefail
bin=$1 src=$2 plugins=$3 fakes=$4
tmp=$(mktemp -d)
rpid="" pids=()
cleanup() {
    [[ -n $rpid ]] && kill "$rpid" 2>/dev/null && wait "$rpid" 2>/dev/null || true
    [[ ${#pids[@]} -gt 0 ]] && kill "${pids[@]}" 2>/dev/null || true
    stop_fakes
    rm -rf "$tmp"
}
trap cleanup EXIT
. "$src/tests/kit/kit_lib.sh"
command -v openssl >/dev/null || { echo "openssl not installed: skipped"; exit 77; }

# A CA, and a certificate for localhost and 127.0.0.1 signed by it; a
# second CA that signed nothing here.
mkca() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=$2" -keyout "$tmp/$1.key" -out "$tmp/$1.pem" 2>/dev/null
}
mkca ca "routerd test CA"
mkca other "some other CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$tmp/srv.key" -out "$tmp/srv.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tmp/ext"
openssl x509 -req -in "$tmp/srv.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
    -days 2 -extfile "$tmp/ext" -out "$tmp/srv.pem" 2>/dev/null

start_fakes "$fakes"
ready() { # NAME: its program printed READY in $tmp/NAME.out
    wait_for 20 grep -q '^READY$' "$tmp/$1.out" || { echo "$1 did not start: $(cat "$tmp/$1.out")"; exit 1; }
}
front() { # NAME UPSTREAM_URL: a TLS front on a free port, in $port
    local up=${2#http://}
    up=${up%%/*}
    port=$(free_port)
    python3 "$src/tests/support/tls_proxy.py" --port "$port" --cert "$tmp/srv.pem" \
        --key "$tmp/srv.key" --upstream "$up" --log "$tmp/$1.jsonl" >"$tmp/$1.out" 2>&1 &
    pids+=($!)
    ready "$1"
}
front tg "$TELEGRAM_API_BASE"
tg_port=$port
front agent "$A2A_BASE_URL"
agent_port=$port
col_port=$(free_port)
python3 "$src/tests/support/collector.py" --port "$col_port" --log "$tmp/traces.log" >"$tmp/collector.out" 2>&1 &
pids+=($!)
ready collector
front otlp "http://127.0.0.1:$col_port"
otlp_port=$port

manifest() { # CA_FILE STATE_DIR
    cat <<EOF
[router]
admin_listen = 127.0.0.1:$(free_port)
state_dir = $2
rate_limit_per_minute = 0

[transport.tg]
plugin = telegram
token = 123456:kit-token
api_base = https://localhost:$tg_port
ca_file = $1
timeout = 1
throttle = off

[backend.echo]
plugin = a2a
url = https://localhost:$agent_port
rpc_url = https://localhost:$agent_port/rpc
ca_file = $1

[sink.traces]
plugin = otlp
endpoint = https://localhost:$otlp_port
ca_file = $1
sample_ratio = 1
interval_ms = 100

[persona.default]
backend = echo
chats = *
EOF
}
run() { # MANIFEST LOG
    "$bin" -c "$1" --plugin-dir "$plugins" >"$2" 2>&1 &
    rpid=$!
}
stop() { # LOG: a clean drain exits 0 (and a sanitizer's report would not)
    local rc=0
    kill -TERM "$rpid" 2>/dev/null
    wait "$rpid" 2>/dev/null || rc=$?
    rpid=""
    [[ $rc -eq 0 ]] || fail "routerd exited $rc: $(tail -5 "$1")"
}

# An unreadable ca_file is refused before anything starts.
manifest "$tmp/missing.pem" "$tmp/s0" >"$tmp/m0.ini"
rc=0
out=$("$bin" -c "$tmp/m0.ini" --plugin-dir "$plugins" --check-config 2>&1) || rc=$?
[[ $rc -ne 0 ]] || fail "check-config accepted a missing ca_file"
grep -q "ca_file: cannot read $tmp/missing.pem" <<<"$out" || fail "missing ca_file not named: $out"

# The right CA: 40 messages over 20 chats, every one answered.
mkdir -p "$tmp/s1"
manifest "$tmp/ca.pem" "$tmp/s1" >"$tmp/m1.ini"
run "$tmp/m1.ini" "$tmp/r1.log"
for i in $(seq 1 40); do fake send $((1000 + i % 20)) "hello $i"; done
fake wait 40 30000
[[ $REPLY == "count 40" ]] || fail "replies over TLS: $REPLY (log: $(tail -5 "$tmp/r1.log"))"
stop "$tmp/r1.log"
fake_replies
grep -q "^1005 echo: hello 25$" <<<"$REPLIES" || fail "reply text: $(head -3 <<<"$REPLIES")"
# Each connection here is a different handle's first (none closes), so
# without the share every one would be a full handshake. A TLS 1.3
# ticket is used once (OpenSSL's client policy): connections opened
# together before the last one's new ticket arrives make full handshakes,
# so only the first is known to be full.
resumed_some() { # NAME
    local conns full
    conns=$(wc -l <"$tmp/$1.jsonl")
    full=$(grep -c '"resumed": false' "$tmp/$1.jsonl" || true)
    [[ $conns -ge 3 ]] || fail "$1: only $conns TLS connections; the test needs several handles connecting"
    head -1 "$tmp/$1.jsonl" | grep -q '"resumed": false' || fail "$1: the first connection resumed a session"
    [[ $full -lt $conns ]] || fail "$1: no TLS session resumed in $conns connections: the handles share none"
    grep -q '"version": "TLSv1.3"' "$tmp/$1.jsonl" || fail "$1: not TLS 1.3: $(head -1 "$tmp/$1.jsonl")"
}
resumed_some tg
resumed_some agent
grep -q '^/v1/traces [1-9]' "$tmp/traces.log" 2>/dev/null || fail "no trace reached the collector over TLS"
[[ $(wc -l <"$tmp/otlp.jsonl") -ge 1 ]] || fail "the traces did not come through the TLS front"

# Another CA: the certificate is refused and no reply goes out.
mkdir -p "$tmp/s2"
manifest "$tmp/other.pem" "$tmp/s2" >"$tmp/m2.ini"
fake send 2001 "not over an untrusted connection"
run "$tmp/m2.ini" "$tmp/r2.log"
sleep 3
fake wait 41 500
[[ $REPLY == "count 40" ]] || fail "a reply went out over an untrusted certificate: $REPLY"
stop "$tmp/r2.log"
grep -qi "certificate" "$tmp/r2.log" || fail "the refused certificate is not logged: $(tail -5 "$tmp/r2.log")"
finish_test "telegram, a2a and otlp over TLS"
