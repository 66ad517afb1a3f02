#!/usr/bin/env bash
# plugin_dir as a list: a backend loaded by name from the second folder, the
# first folder that has a name wins, a missing folder is refused at start,
# and --list-plugins shows what each name resolves to.
set -euo pipefail
bin=$1 plugins=$2 probe=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
mkdir -m 0755 "$tmp/mine" "$tmp/decoy"
install -m 0755 "$probe" "$tmp/mine/backend_probe.so"
# A file of that name in an earlier folder shadows it (here: another plugin).
install -m 0755 "$plugins/backend_mock.so" "$tmp/decoy/backend_probe.so"
manifest() { # PLUGIN_DIR
    cat >"$tmp/m.ini" <<INI
[router]
admin_listen = off
state_dir = $tmp/state
plugin_dir = $1
[transport.console]
plugin = console
[backend.mine]
plugin = probe
greeting = hello
[persona.p]
backend = mine
chats = *
INI
}

manifest " $plugins , $tmp/mine "
out=$(echo "you" | "$bin" -c "$tmp/m.ini" 2>"$tmp/err") || { cat "$tmp/err"; fail "routerd failed"; }
[[ $out == "hello there: you" ]] || { cat "$tmp/err"; fail "unexpected reply '$out'"; }
out=$("$bin" -c "$tmp/m.ini" --print-config)
grep -qxF "; plugin_dir in use: $plugins,$tmp/mine" <<<"$out" || fail "print-config: $out"

manifest "$plugins,$tmp/decoy,$tmp/mine"
if "$bin" -c "$tmp/m.ini" --check-config 2>"$tmp/err"; then fail "the shadowing file was not used"; fi
grep -q "$tmp/decoy/backend_probe.so: declares name 'mock', expected 'probe'" "$tmp/err" ||
    { cat "$tmp/err"; fail "wrong message for the shadowing file"; }

manifest "$plugins,$tmp/nowhere,$tmp/mine"
if "$bin" -c "$tmp/m.ini" --check-config 2>"$tmp/err"; then fail "a missing folder was accepted"; fi
grep -q "plugin_dir: '$tmp/nowhere' is not a folder" "$tmp/err" || { cat "$tmp/err"; fail "message"; }

manifest "$tmp/mine"
if "$bin" -c "$tmp/m.ini" --check-config 2>"$tmp/err"; then fail "console found without its folder"; fi
grep -q "no transport plugin 'console' (looked for $tmp/mine/transport_console.so)" "$tmp/err" ||
    { cat "$tmp/err"; fail "message"; }
# --plugin-dir takes a list too and overrides the manifest.
out=$(echo "x" | "$bin" -c "$tmp/m.ini" --plugin-dir "$tmp/mine,$plugins" 2>"$tmp/err") ||
    { cat "$tmp/err"; fail "--plugin-dir list"; }
[[ $out == "hello there: x" ]] || fail "unexpected reply '$out'"

out=$("$bin" --list-plugins --plugin-dir "$tmp/mine,$plugins")
grep -q "^backend probe 1.0: " <<<"$out" || fail "probe not listed: $out"
grep -q "^    ($tmp/mine/backend_probe.so)" <<<"$out" || fail "probe's folder not shown"
grep -q "^transport console " <<<"$out" || fail "console not listed"
out=$("$bin" --list-plugins --plugin-dir "$tmp/decoy,$tmp/mine" 2>&1 || true)
grep -q "($tmp/decoy/backend_probe.so)" <<<"$out" || fail "the first folder's file not listed: $out"
if grep -q "($tmp/mine/backend_probe.so)" <<<"$out"; then fail "a shadowed file was listed"; fi
echo "plugin_dir list: ok"
