#!/usr/bin/env bash
# routerd -c A --diff-config B: key-set drift between manifests.
# Usage: test_kit_drift.sh ROUTERD SRC PLUGIN_DIR
set -euo pipefail
bin=$1 src=$2 plugins=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Nothing from the environment is needed: values are not expanded.
unset TELEGRAM_BOT_TOKEN A2A_BASE_URL ROUTERD_CHAT_HASH_KEY
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
diffc() { "$bin" -c "$1" --diff-config "$2" --plugin-dir "$plugins" "${@:3}"; }
expect() {
    local want=$1 pat=$2; shift 2
    local rc=0
    out=$("$@" 2>&1) || rc=$?
    if [[ $rc -ne $want ]]; then fail "$* -> rc $rc, want $want: $out"; return; fi
    if [[ -n "$pat" ]] && ! grep -qE -- "$pat" <<<"$out"; then fail "$*: no /$pat/ in: $out"; fi
}

# The shipped manifests pass against each other.
for pair in "staging production" "production staging"; do
    set -- $pair
    expect 0 "^drift: 0.0 % \(0 added \+ 0 removed of [0-9]+ keys; max 5.0 %\): ok$" \
        diffc "$src/conf.d/$1.ini" "$src/conf.d/$2.ini"
done
# dev is a different shape: refused.
expect 1 "FAIL" diffc "$src/conf.d/dev.ini" "$src/conf.d/production.ini"

a=$tmp/a.ini b=$tmp/b.ini
cat >"$a" <<'INI'
[router]
env = one
queue_depth = 10
drain_timeout_s = 30
chat_hash_key = hunter2-secret-value
[transport.t]
plugin = console
[backend.b]
plugin = mock
mode = echo
prefix = x
[persona.p]
backend = b
chats = *
[sink.l]
plugin = jsonlog
level = info
INI
# 12 keys. Values differ everywhere: no drift.
sed -e 's/= one/= two/' -e 's/hunter2-secret-value/other-secret/' -e 's/= 10/= 99/' "$a" >"$b"
expect 0 "^drift: 0.0 % \(0 added \+ 0 removed of 12 keys" diffc "$a" "$b"
grep -q "secret" <<<"$out" && fail "a value was printed: $out"
# One key removed: 1/12 = 8.3 % > 5 % -> 1, listed under its section.
grep -v '^level' "$a" >"$b"
expect 1 "^drift: 8.3 % \(0 added \+ 1 removed of 12 keys; max 5.0 %\): FAIL$" diffc "$a" "$b"
grep -qx '\[sink.l\] removed' <<<"$out" || fail "no section line: $out"
grep -qx '  - level' <<<"$out" || fail "no removed key: $out"
# ... within an allowance of 10 %.
expect 0 ": ok$" diffc "$a" "$b" --max-drift 10
expect 0 ": ok$" diffc "$a" "$b" --max-drift 8.4
expect 1 ": FAIL$" diffc "$a" "$b" --max-drift 8.3
# One key added, one removed: 2 / 13.
{ grep -v '^level' "$a"; printf 'rate_limit_per_minute = 5\n'; } >"$b"
sed -i 's/^\[sink.l\]$/[sink.l]/' "$b"
expect 1 "^drift: 15.4 % \(1 added \+ 1 removed of 13 keys" diffc "$a" "$b" --max-drift 15
grep -qx '  + rate_limit_per_minute' <<<"$out" || fail "no added key: $out"
expect 0 ": ok$" diffc "$a" "$b" --max-drift 15.4
# A whole section more.
{ cat "$a"; printf '[sink.m]\nplugin = prometheus\n'; } >"$b"
expect 0 "1 added \+ 0 removed of 13 keys" diffc "$a" "$b" --max-drift 10
grep -qx '\[sink.m\] added (whole section)' <<<"$out" || fail "no whole-section line: $out"
# A key a plugin requires is missing: 1 even under the drift allowance.
{ cat "$a"; printf '[backend.agent]\nplugin = a2a\n[persona.q]\nchats = 5\n'; } >"$b"
expect 1 "b.ini: \[backend.agent\] missing key 'url' required by a2a" diffc "$a" "$b" --max-drift 100
grep -q "\[persona.q\] missing key 'backend' required by persona" <<<"$out" || fail "persona: $out"
grep -q "required keys missing" <<<"$out" || fail "summary: $out"
# Unknown plugin: cannot be checked, so not passed.
{ cat "$a"; printf '[backend.x]\nplugin = nosuch\n'; } >"$b"
expect 1 "cannot check required keys" diffc "$a" "$b" --max-drift 100
# Unreadable manifest: 78; bad percentage: 64.
expect 78 "cannot open manifest" diffc "$a" "$tmp/none.ini"
expect 64 "not a percentage" diffc "$a" "$a" --max-drift 101
expect 64 "not a percentage" diffc "$a" "$a" --max-drift abc

[[ $fails -eq 0 ]] || { echo "$fails failure(s)"; exit 1; }
echo "drift gate: ok"
