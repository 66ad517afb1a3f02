#!/usr/bin/env bash
# packaging/systemd/routerd.service: systemd-analyze verify is clean,
# systemd-analyze security rates it 2.0 or below, the supervision settings
# hold, and every system call a routerd session makes passes the unit's
# SystemCallFilter (traced with strace).
# Usage: test_kit_systemd.sh ROUTERD SRC PLUGIN_DIR
set -euo pipefail
bin=$1 src=$2 plugins=$3
unit_src=$src/packaging/systemd/routerd.service
command -v systemd-analyze >/dev/null || { echo "systemd-analyze missing"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$src/tests/kit/kit_lib.sh"

# verify wants the executables to exist: point the unit at this build.
sed "s|/usr/bin/routerd|$bin|g" "$unit_src" >"$tmp/routerd.service"
if ! out=$(systemd-analyze verify "$tmp/routerd.service" 2>&1) || [[ -n "$out" ]]; then
    fail "systemd-analyze verify: $out"
fi
sec=$(systemd-analyze security --offline=true "$tmp/routerd.service" 2>&1 | tail -1)
level=$(sed -n 's/.*Overall exposure level for routerd.service: \([0-9.]*\).*/\1/p' <<<"$sec")
[[ -n "$level" ]] || fail "no exposure level: $sec"
awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }' || fail "exposure $level > 2.0"
echo "exposure level: $level"

# The supervision settings the runbook relies on.
get() { sed -n "s/^$1=//p" "$unit_src"; }
[[ "$(get Type)" == notify ]] || fail "Type=$(get Type)"
[[ "$(get NotifyAccess)" == main ]] || fail "NotifyAccess"
[[ -n "$(get WatchdogSec)" ]] || fail "no WatchdogSec"
[[ "$(get StartLimitBurst)" == 5 ]] || fail "StartLimitBurst=$(get StartLimitBurst)"
[[ "$(get StartLimitIntervalSec)" == 15min ]] || fail "StartLimitIntervalSec"
[[ "$(get Restart)" == on-failure ]] || fail "Restart"
[[ "$(get RestartPreventExitStatus)" == 78 ]] || fail "RestartPreventExitStatus"
[[ "$(get LogsDirectory)" == routerd ]] || fail "LogsDirectory"
[[ "$(get StateDirectory)" == routerd ]] || fail "StateDirectory"
grep -qx 'SystemCallFilter=@system-service' "$unit_src" || fail "SystemCallFilter"
# ExecStartPre checks the manifest ExecStart runs, and a failure there is
# left to ExecStart (exit 78, never restarted).
pre=$(get ExecStartPre) start=$(get ExecStart)
[[ "$pre" == "-$start --check-config" ]] || fail "ExecStartPre '$pre' vs ExecStart '$start'"
# The stop timeout covers the drain of the manifest the unit runs.
drain=$(sed -n 's/^drain_timeout_s = \([0-9]*\).*/\1/p' "$src/conf.d/production.ini")
stop=$(get TimeoutStopSec)
(( stop > drain )) || fail "TimeoutStopSec $stop <= drain_timeout_s $drain"
# The unit's user exists once sysusers runs.
grep -q '^u routerd ' "$src/packaging/systemd/routerd.sysusers" || fail "sysusers"

# Every system call of a session is allowed by the filter.
if [[ -n "${ROUTERD_SANITIZED:-}" ]] || ! command -v strace >/dev/null; then
    echo "system call check skipped (sanitizer build or no strace)"
else
    expand() { # names in a filter group, nested groups expanded
        systemd-analyze syscall-filter "$1" | awk 'NR > 1 && $1 !~ /^#/ && NF { print $1 }' |
            while read -r n; do
                if [[ $n == @* ]]; then expand "$n"; else echo "$n"; fi
            done
    }
    allow=$(expand @system-service | sort -u)
    deny=""
    for g in $(sed -n 's/^SystemCallFilter=~//p' "$unit_src"); do deny+=$(expand "$g")$'\n'; done
    allowed=$(comm -23 <(echo "$allow") <(echo "$deny" | sort -u))
    port=$(free_port)
    cat >"$tmp/m.ini" <<INI
[router]
admin_listen = 127.0.0.1:$port
state_dir = $tmp/state
[transport.console]
plugin = console
[backend.mock]
plugin = mock
[persona.p]
backend = mock
chats = *
[sink.metrics]
plugin = prometheus
[sink.log]
plugin = jsonlog
path = $tmp/routerd.log
[sink.traces]
plugin = otlp
endpoint = http://127.0.0.1:9
INI
    mkfifo "$tmp/in"
    # As the unit's User= does: not root (root makes SQLite chown its files).
    asuser=()
    if [[ $(id -u) -eq 0 ]]; then
        chmod 0755 "$tmp" && mkdir -m 0777 "$tmp/state" && touch "$tmp/routerd.log" &&
            chmod 0666 "$tmp/routerd.log"
        asuser=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    fi
    strace -f -qq -o "$tmp/trace" "${asuser[@]}" "$bin" -c "$tmp/m.ini" --plugin-dir "$plugins" <"$tmp/in" \
        >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    exec 3>"$tmp/in"
    for i in 1 2 3 4 5; do echo "@$i hello $i" >&3; done
    for _ in $(seq 100); do
        [[ $(wc -l <"$tmp/out") -ge 5 ]] && curl -sf "http://127.0.0.1:$port/metrics" >/dev/null && break
        sleep 0.2
    done
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || fail "healthz under strace"
    kill -HUP "$(pgrep -P $pid routerd || echo $pid)" 2>/dev/null || true
    sleep 0.5
    exec 3>&-
    wait $pid || fail "routerd under strace exited $?: $(cat "$tmp/err")"
    [[ $(wc -l <"$tmp/out") -ge 5 ]] || fail "no replies under strace: $(cat "$tmp/err")"
    # From routerd's own execve on (setpriv's calls come before).
    used=$(awk -v b="execve(\"$bin\"" 'index($0, b) && / = 0$/ { on = 1; next } on' "$tmp/trace" |
        sed -E -n 's/^[0-9]+ +(<\.\.\. )?([a-z0-9_]+)[( ].*/\2/p' | sort -u |
        grep -vx -e resumed -e exit -e exited -e killed)
    [[ $(wc -l <<<"$used") -gt 20 ]] || fail "trace looks empty: $(head "$tmp/trace")"
    bad=$(comm -23 <(echo "$used") <(echo "$allowed"))
    [[ -z "$bad" ]] || fail "system calls outside SystemCallFilter: $bad"
    # ProcSubset=pid would hide the system-wide /proc files routerd reads.
    sysproc=$(grep -oE '"/proc/[a-z][a-z_]*"' "$tmp/trace" | grep -v -e '"/proc/self"' -e thread-self | sort -u || true)
    [[ -n "$sysproc" ]] && grep -q '^ProcSubset=pid' "$unit_src" &&
        fail "ProcSubset=pid hides $sysproc, which routerd reads"
fi

[[ $fails -eq 0 ]] || { echo "$fails failure(s)"; exit 1; }
echo "systemd unit: ok"
