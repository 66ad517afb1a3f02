#!/bin/sh
# Interop with two A2A server implementations independent of @a2a-js/sdk:
# VoltAgent's A2AServer (send answered only when done, and streaming) and
# reactive-agents' JSON-RPC handler (send + poll), each serving a tiny
# scripted agent (agent.mjs, no LLM). Checked: a message, a second chat, a
# long task past http_timeout_s (waited for, never sent again), a failing
# task or handler error (one notice, never retried), and that no messageId
# ran twice (the agents log their executions per messageId).
# Usage: run.sh SRC_DIR WORK_DIR ROUTERD PLUGIN_DIR
# Exits 77 (skipped) only when node or npm is not installed.
set -u
src=$1 work=$2 routerd=$3 plugins=$4

skip() { echo "SKIP: $*"; exit 77; }
abs() { (cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"); }
command -v node >/dev/null 2>&1 || skip "node not installed"
command -v npm >/dev/null 2>&1 || skip "npm not installed"
src=$(abs "$src") routerd=$(abs "$routerd") plugins=$(abs "$plugins")

mkdir -p "$work" || exit 1
cp -p "$src/package.json" "$src/package-lock.json" "$src/agent.mjs" "$work/" || exit 1
cd "$work" || exit 1
if [ ! -d node_modules/@voltagent/a2a-server ] || [ package-lock.json -nt node_modules/.stamp ]; then
    if ! timeout 600 npm ci --no-audit --no-fund --loglevel=error >npm.log 2>&1; then
        echo "FAIL: npm ci: $(tail -n 5 npm.log | tr '\n' ' ')"; exit 1
    fi
    touch node_modules/.stamp
fi

free_port() { python3 "$src/../../support/free_port.py"; } # below the ephemeral range

fail=0
agent_pid=
cleanup() { [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null; }
trap cleanup EXIT

for impl in volt reactive; do
    port=$(free_port)
    node agent.mjs "$impl" "$port" >"agent-$impl.log" 2>&1 &
    agent_pid=$!
    i=0
    until grep -q "^listening" "agent-$impl.log" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 300 ] || ! kill -0 "$agent_pid" 2>/dev/null; then
            echo "FAIL: agent $impl did not start"; cat "agent-$impl.log"; exit 1
        fi
        sleep 0.1
    done
    streams="false"
    [ "$impl" = volt ] && streams="false true"
    for stream in $streams; do
        name="$impl-$stream"
        rm -rf "state-$name"
        cat >"$name.ini" <<INI
[router]
env = test
admin_listen = off
state_dir = $work/state-$name
[transport.console]
plugin = console
[backend.agent]
plugin = a2a
url = http://127.0.0.1:$port
stream = $stream
timeout_s = 20
http_timeout_s = 1
poll_interval_ms = 50
failure_notice = The agent failed.
[persona.p]
backend = agent
chats = *
INI
        printf 'hello\nslow 2500\nfail\n@7 other chat\n' |
            timeout 60 "$routerd" -c "$name.ini" --plugin-dir "$plugins" >"$name.out" 2>"$name.err"
        rc=$?
        case $name in
        volt-false) failed='The agent failed.' ;; # a handler error (-32603), not retried
        volt-true) failed=$(printf 'The agent could not complete this request.\ncannot do that') ;;
        *) failed='The agent could not complete this request.' ;;
        esac
        expect=$(printf 'echo: hello\nslow done\n%s\n@7 echo: other chat' "$failed")
        got=$(grep -v '^@7' "$name.out"; grep '^@7' "$name.out")
        if [ $rc -ne 0 ] || [ "$got" != "$expect" ]; then
            echo "FAIL: $impl, stream=$stream (exit $rc)"
            echo "--- expected"; echo "$expect"; echo "--- got"; cat "$name.out"
            echo "--- stderr"; cat "$name.err"
            fail=1
        else
            echo "ok: $impl, stream=$stream"
        fi
    done
    kill "$agent_pid" 2>/dev/null
    wait "$agent_pid" 2>/dev/null
    agent_pid=
    # exactly once: every messageId executed once, and every message ran
    runs=$(grep -c '^exec ' "agent-$impl.log")
    if grep -q '^exec .* [2-9][0-9]*$' "agent-$impl.log" || [ "$runs" -eq 0 ]; then
        echo "FAIL: $impl: a message ran more than once (or none ran)"
        grep '^exec ' "agent-$impl.log"
        fail=1
    else
        echo "ok: $impl: $runs executions, one per messageId"
    fi
done
exit $fail
