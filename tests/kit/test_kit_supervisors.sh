#!/usr/bin/env bash
# routerd started the way runit (runsv + packaging/runit/{run,finish,log/run})
# and a Procfile runner (sh -c LINE, SIGTERM to the process group) start
# it: exec chain, environment, user, signals -> drain, exit codes, restart
# policy. Usage: test_kit_supervisors.sh ROUTERD SRC PLUGIN_DIR FAKES
set -euo pipefail
bin=$1 src=$2 plugins=$3 fakes_bin=$4
tmp=$(mktemp -d)
chmod 0755 "$tmp"
. "$src/tests/kit/kit_lib.sh"
cleanup() {
    [[ -n "${svdir:-}" ]] && sv -w 10 exit "$svdir" >/dev/null 2>&1 || true
    [[ -n "${runsv_pid:-}" ]] && { kill "$runsv_pid" 2>/dev/null; wait "$runsv_pid" 2>/dev/null; } || true
    stop_fakes
    rm -rf "$tmp"
}
trap cleanup EXIT
start_fakes "$fakes_bin"
port=$(free_port)
mkdir -m 0777 "$tmp/state"
cat >"$tmp/m.ini" <<INI
[router]
env = supervised
admin_listen = 127.0.0.1:$port
state_dir = $tmp/state
drain_timeout_s = 10
[transport.main]
plugin = telegram
token = \${TELEGRAM_BOT_TOKEN}
api_base = \${TELEGRAM_API_BASE}
[backend.helper]
plugin = mock
[persona.helper]
backend = helper
chats = *
INI
# Secrets from the dotenv file the run script passes with --env-file.
printf 'TELEGRAM_BOT_TOKEN=123456:kit-token\n' >"$tmp/routerd.env"
chmod 0644 "$tmp/routerd.env" "$tmp/m.ini"
unset TELEGRAM_BOT_TOKEN
user=nobody
[[ $(id -u) -eq 0 ]] || user=$(id -un)
healthz=http://127.0.0.1:$port/healthz
chat=700
converse() { # one message through whatever runs routerd
    chat=$((chat + 1))
    fake send "$chat" "ping $chat"
    wait_for 20 has_reply "$chat" || fail "$1: no reply to chat $chat"
}
has_reply() { fake_replies; grep -q "^$1 echo: ping $1\$" <<<"$REPLIES"; }

# ---- runit ----------------------------------------------------------------
if command -v runsv >/dev/null; then
    svdir=$tmp/sv/routerd
    mkdir -p "$svdir/log"
    cp "$src/packaging/runit/run" "$src/packaging/runit/finish" "$svdir/"
    cp "$src/packaging/runit/log/run" "$svdir/log/"
    ROUTERD_BIN=$bin ROUTERD_CONFIG=$tmp/m.ini ROUTERD_ENV_FILE=$tmp/routerd.env \
        ROUTERD_USER=$user ROUTERD_LOG_DIR=$tmp/log ROUTERD_LOG_USER=$user \
        ROUTERD_RESTART_DELAY_S=0 runsv "$svdir" </dev/null >/dev/null 2>&1 &
    runsv_pid=$!
    wait_http "$healthz" 200 30 || fail "runit: /healthz never 200: $(cat "$tmp/log/current" 2>/dev/null)"
    pid=$(cat "$svdir/supervise/pid")
    # run exec'ed through chpst into routerd: the supervised pid is routerd.
    [[ $(readlink "/proc/$pid/exe") == "$(readlink -f "$bin")" ]] || fail "runit: pid $pid is $(readlink "/proc/$pid/exe")"
    [[ $(ps -o user= -p "$pid") == "$user" ]] || fail "runit: runs as $(ps -o user= -p "$pid")"
    converse runit
    # sv restart: SIGTERM -> drain -> exit 0 -> started again.
    sv -w 30 restart "$svdir" >/dev/null || fail "runit: sv restart"
    wait_http "$healthz" 200 30 || fail "runit: not back after restart"
    pid2=$(cat "$svdir/supervise/pid")
    [[ "$pid2" != "$pid" ]] || fail "runit: same pid after restart"
    converse "runit after restart"
    sv -w 30 down "$svdir" >/dev/null || fail "runit: sv down"
    sleep 0.5
    wait_for 10 grep -q "drained: all messages answered" "$tmp/log/current" || fail "runit: no drain in log"
    # svlogd got routerd's lines, timestamped.
    grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}_.*routerd .* started: env=supervised' "$tmp/log/current" ||
        fail "runit: start line not in svlogd's file: $(head -5 "$tmp/log/current")"
    grep -q "exited with code" "$tmp/log/current" && fail "runit: a clean stop counted as a failure"
    # A configuration error: exit 78, down, never restarted.
    sed -i 's/^plugin = mock$/plugin = mock\nno_such_key = 1/' "$tmp/m.ini"
    sv up "$svdir" >/dev/null || true
    wait_for 20 grep -q "configuration error (exit 78): not restarting" "$tmp/log/current" ||
        fail "runit: exit 78 not handled: $(tail -5 "$tmp/log/current")"
    sleep 2
    sv status "$svdir" | grep -q '^down:' || fail "runit: not down after exit 78: $(sv status "$svdir")"
    n=$(grep -c "unknown key 'no_such_key'" "$tmp/log/current" || true)
    [[ $n -eq 1 ]] || fail "runit: config error started $n times"
    # Runtime failures: at most 5 in the window, then down.
    sed -i '/^no_such_key/d' "$tmp/m.ini"
    cp "$svdir/run" "$tmp/run.orig"
    sed -i "s|^bin=.*|bin=/bin/false|" "$svdir/run"
    sv up "$svdir" >/dev/null || true
    wait_for 30 grep -q "5 failures within 900 s: not restarting" "$tmp/log/current" ||
        fail "runit: no start limit: $(tail -5 "$tmp/log/current")"
    sleep 1
    n=$(grep -c "exited with code 1" "$tmp/log/current" || true)
    [[ $n -eq 5 ]] || fail "runit: $n failed starts, want 5"
    sv status "$svdir" | grep -q '^down:' || fail "runit: not down after the start limit"
    cp "$tmp/run.orig" "$svdir/run"
    sv -w 10 exit "$svdir" >/dev/null 2>&1 || true
    wait "$runsv_pid" 2>/dev/null || true
    runsv_pid="" svdir=""
else
    fail "runsv not installed (scripts/deps.sh --test installs runit)"
fi

# ---- Procfile --------------------------------------------------------------
line=$(sed -n 's/^worker: //p' "$src/Procfile")
[[ -n "$line" ]] || fail "no worker line in Procfile"
# As foreman/honcho do: .env into the environment, sh -c LINE in its own
# process group, SIGTERM to the group on stop.
procfile_run() {
    env ROUTERD_BIN="$bin" ROUTERD_CONFIG="$1" ROUTERD_ENV_FILE="$tmp/routerd.env" \
        setsid sh -c "$line" >"$tmp/pf.out" 2>"$tmp/pf.err" </dev/null &
    pf=$!
}
procfile_run "$tmp/m.ini"
wait_http "$healthz" 200 30 || fail "Procfile: /healthz never 200: $(cat "$tmp/pf.err")"
[[ $(readlink "/proc/$pf/exe") == "$(readlink -f "$bin")" ]] || fail "Procfile: the line does not exec routerd"
converse Procfile
kill -TERM -- "-$pf"
rc=0; wait "$pf" || rc=$?
[[ $rc -eq 0 ]] || fail "Procfile: SIGTERM gave exit $rc: $(cat "$tmp/pf.err")"
grep -q "draining" "$tmp/pf.err" || fail "Procfile: no drain"
sed 's/^plugin = mock$/plugin = mock\nno_such_key = 1/' "$tmp/m.ini" >"$tmp/bad.ini"
procfile_run "$tmp/bad.ini"
rc=0; wait "$pf" || rc=$?
[[ $rc -eq 78 ]] || fail "Procfile: bad manifest gave exit $rc"

finish_test "supervisors (runit, Procfile)"
