#!/bin/sh
# Interop: routerd's a2a backend against tiny agents on the official
# @a2a-js/sdk, in 1.0, 0.3 and dual mode, with send + poll and streaming:
# plain messages, a task, a failed task, input-required and its answer,
# a second chat. In dual mode routerd is forced to speak 0.3; in rest mode
# the agent offers only the 1.0 HTTP+JSON binding (the SDK's restHandler),
# in rest03 mode only the 0.3 one (legacyRestRouter).
# FILES_BIN (a2a_interop_files) then drives the plugin in-process against
# each agent: a file part each way, a data part, choices and a pick.
# Usage: run.sh SRC_DIR WORK_DIR ROUTERD PLUGIN_DIR [FILES_BIN]
# Exits 77 (skipped) when node/npm or the packages are not available.
set -u
src=$1 work=$2 routerd=$3 plugins=$4 files_bin=${5:-}

skip() { echo "SKIP: $*"; exit 77; }
abs() { (cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"); }
command -v node >/dev/null 2>&1 || skip "node not installed"
command -v npm >/dev/null 2>&1 || skip "npm not installed"
command -v curl >/dev/null 2>&1 || skip "curl not installed"
src=$(abs "$src") routerd=$(abs "$routerd") plugins=$(abs "$plugins")
[ -z "$files_bin" ] || files_bin=$(abs "$files_bin")

mkdir -p "$work" || exit 1
cp -p "$src/package.json" "$src/package-lock.json" "$src/agent.mjs" "$work/" || exit 1
cd "$work" || exit 1
if [ ! -d node_modules/@a2a-js/sdk ] || [ package-lock.json -nt node_modules/.stamp ]; then
    timeout 180 npm ci --no-audit --no-fund --loglevel=error >npm.log 2>&1 ||
        skip "npm ci failed (offline?): $(tail -n 3 npm.log | tr '\n' ' ')"
    touch node_modules/.stamp
fi

free_port() { python3 "$src/../support/free_port.py"; } # below the ephemeral range

fail=0
agent_pid=
cleanup() { [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null; }
trap cleanup EXIT

# write_ini NAME ADMIN_LISTEN BACKEND_KEYS: NAME.ini, console in, the a2a
# backend at the agent on $port, a fresh state dir.
write_ini() {
    rm -rf "state-$1"
    cat >"$1.ini" <<INI
[router]
env = test
admin_listen = $2
state_dir = $work/state-$1
[transport.console]
plugin = console
[backend.agent]
plugin = a2a
url = http://127.0.0.1:$port
$3
[persona.p]
backend = agent
chats = *
INI
}

# start_agent MODE PORT LOG [push]: the agent, once its card is served.
start_agent() {
    node agent.mjs "$1" "$2" ${4:-} >"$3" 2>&1 &
    agent_pid=$!
    i=0
    until curl -fs "http://127.0.0.1:$2/.well-known/agent-card.json" >/dev/null; do
        i=$((i + 1))
        if [ $i -gt 100 ]; then
            echo "FAIL: agent $1 did not start"; cat "$3"; exit 1
        fi
        sleep 0.1
    done
}

for mode in 1.0 0.3 dual rest rest03; do
    port=$(free_port)
    start_agent "$mode" "$port" "agent-$mode.log"
    for stream in false true; do
        name="$mode-$stream"
        write_ini "$name" off "stream = $stream
timeout_s = 20
poll_interval_ms = 50
$([ "$mode" = dual ] && echo "dialect = 0.3")"
        printf 'hello\ntask alpha beta gamma\nask\nBob\nafter\nfail\n@7 other chat\n' |
            timeout 60 "$routerd" -c "$name.ini" --plugin-dir "$plugins" >"$name.out" 2>"$name.err"
        rc=$?
        expect=$(printf 'echo: hello\nalpha beta gamma\nWhat is your name?\nHello, Bob\necho: after\nThe agent could not complete this request.\ncannot do that\n@7 echo: other chat')
        got=$(grep -v '^@7' "$name.out"; grep '^@7' "$name.out")
        if [ $rc -ne 0 ] || [ "$got" != "$expect" ]; then
            echo "FAIL: agent $mode, stream=$stream (exit $rc)"
            echo "--- expected"; echo "$expect"; echo "--- got"; cat "$name.out"
            echo "--- stderr"; cat "$name.err"
            fail=1
        else
            echo "ok: agent $mode, stream=$stream"
        fi
        if [ -n "$files_bin" ]; then
            if timeout 60 "$files_bin" "http://127.0.0.1:$port" "$mode" "$stream" \
                >"files-$name.out" 2>"files-$name.err"; then
                cat "files-$name.out"
            else
                echo "FAIL: files with agent $mode, stream=$stream"; cat "files-$name.err"
                fail=1
            fi
        fi
    done
    kill "$agent_pid" 2>/dev/null
    wait "$agent_pid" 2>/dev/null
    agent_pid=
    # The dialect spoken: 1.0 calls carry A2A-Version: 1.0, 0.3 calls none.
    want=1.0
    [ "$mode" = 1.0 ] || [ "$mode" = rest ] || want=none
    if [ "$mode" = rest03 ] && { grep -q '^rpc \|^rest ' "agent-$mode.log" ||
        ! grep -q '^rest03 POST /v1/message:send' "agent-$mode.log" ||
        ! grep -q '^rest03 POST /v1/message:stream' "agent-$mode.log" ||
        ! grep -q '^rest03 GET /v1/tasks/' "agent-$mode.log"; }; then
        echo "FAIL: agent rest03 was not called over the 0.3 REST binding"; cat "agent-$mode.log"
        fail=1
    fi
    if [ "$mode" = rest ] && { grep -q '^rpc ' "agent-$mode.log" ||
        ! grep -q '^rest POST /message:send' "agent-$mode.log" ||
        ! grep -q '^rest POST /message:stream' "agent-$mode.log"; }; then
        echo "FAIL: agent rest was not called over REST"; cat "agent-$mode.log"
        fail=1
    fi
    if grep '^rpc \|^rest \|^rest03 ' "agent-$mode.log" | grep -qv "A2A-Version=$want"; then
        echo "FAIL: agent $mode saw calls in the wrong dialect"; grep '^rpc ' "agent-$mode.log" | sort | uniq -c
        fail=1
    fi
done
# Push notifications: the card allows them, routerd serves the webhook on
# its admin server; a task of 1.5 s is answered through the push, long
# before push_fallback_s (the run would time out on polling alone). Over
# JSON-RPC in both dialects and over both REST bindings.
for mode in 1.0 0.3 rest rest03; do
    port=$(free_port) admin=$(free_port)
    start_agent "$mode" "$port" "agent-push-$mode.log" push
    name="push-$mode"
    write_ini "$name" "127.0.0.1:$admin" "timeout_s = 60
push_url = http://127.0.0.1:$admin/
push_fallback_s = 300
$([ "$mode" = 0.3 ] && echo "dialect = 0.3")"
    printf 'wait 1500\nhello\n' |
        timeout 30 "$routerd" -c "$name.ini" --plugin-dir "$plugins" >"$name.out" 2>"$name.err"
    rc=$?
    if [ $rc -ne 0 ] || [ "$(cat "$name.out")" != "$(printf 'waited 1500\necho: hello')" ] ||
        ! grep -q 'Push notification sent' "agent-push-$mode.log"; then
        echo "FAIL: push notifications with agent $mode (exit $rc)"
        cat "$name.out" "$name.err" "agent-push-$mode.log"
        fail=1
    else
        echo "ok: push notifications, agent $mode"
    fi
    kill "$agent_pid" 2>/dev/null
    wait "$agent_pid" 2>/dev/null
    agent_pid=
done
exit $fail
