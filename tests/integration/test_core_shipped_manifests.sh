#!/usr/bin/env bash
# The manifests shipped in conf.d/ pass --check-config with the plugins
# built here, and docs/plugins.md matches the plugins' schemas.
set -euo pipefail
bin=$1
src=$2
plugins=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export ROUTERD_STATE_DIR=$tmp/state ROUTERD_ADMIN_LISTEN=127.0.0.1:0
export TELEGRAM_BOT_TOKEN=123456:test-token A2A_BASE_URL=http://127.0.0.1:9 A2A_TOKEN=t0ken
export ROUTERD_CHAT_HASH_KEY=k3y-for-tests OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318
for m in dev staging production; do
    out=$("$bin" -c "$src/conf.d/$m.ini" --plugin-dir "$plugins" --check-config) || {
        echo "conf.d/$m.ini failed --check-config"; exit 1; }
    grep -q '^persona_map_sha256 = [0-9a-f]\{64\}$' <<<"$out" || { echo "$out"; exit 1; }
    grep -q '^allowlist_sha256 = [0-9a-f]\{64\}$' <<<"$out" || { echo "$out"; exit 1; }
    # Secrets from the environment never show in the printed configuration.
    printed=$("$bin" -c "$src/conf.d/$m.ini" --plugin-dir "$plugins" --print-config)
    for s in test-token t0ken k3y-for-tests; do
        if grep -q -- "$s" <<<"$printed"; then echo "conf.d/$m.ini printed a secret"; exit 1; fi
    done
done
# The dev console as the README shows it: a reply on standard output, JSON
# log lines on standard error (not a terminal here), and /persona lists two
# selectable personas with their descriptions and switches between them.
out=$(printf 'hi\n/persona\n/persona parrot\nhi\n' |
    "$bin" -c "$src/conf.d/dev.ini" --plugin-dir "$plugins" 2>"$tmp/dev.err") || {
    cat "$tmp/dev.err"; echo "conf.d/dev.ini console session failed"; exit 1; }
for want in 'echo: hi' '- default: echoes your message back (current)' \
            '- parrot: repeats what you say, like a parrot' 'parrot says: hi'; do
    grep -qxF -- "$want" <<<"$out" || { echo "dev console: no line '$want' in:"; echo "$out"; exit 1; }
done
grep -q '"event":"replied"' "$tmp/dev.err" || { echo "dev console: no JSON log on stderr"; exit 1; }
[[ ! -e $ROUTERD_STATE_DIR/routerd.log ]] || { echo "dev console: tty_path used without a tty"; exit 1; }

# On a terminal (script(1) gives it one): short lines there, JSON lines in
# the state directory.
if command -v script >/dev/null 2>&1; then
    printf 'hi\n' >"$tmp/in"
    term=$(ROUTERD_STATE_DIR=$tmp/tty script -qec \
        "'$bin' -c '$src/conf.d/dev.ini' --plugin-dir '$plugins' <'$tmp/in'" /dev/null) || {
        echo "$term"; echo "dev console on a terminal failed"; exit 1; }
    grep -q '^echo: hi' <<<"$term" || { echo "$term"; echo "dev console: no reply on the terminal"; exit 1; }
    grep -Eq '^[0-9]{2}:[0-9]{2}:[0-9]{2} \[core\] drained' <<<"$term" || {
        echo "$term"; echo "dev console: no short log line on the terminal"; exit 1; }
    if grep -q '"ts":' <<<"$term"; then echo "$term"; echo "dev console: JSON on the terminal"; exit 1; fi
    grep -q '"event":"replied"' "$tmp/tty/routerd.log" || {
        echo "dev console: no JSON lines in the state directory"; exit 1; }
fi

# Staging is production with "plugin = a2a" changed to "plugin = mock":
# the mock accepts every a2a key, so that one line is the whole change.
sed 's/^plugin = a2a$/plugin = mock/' "$src/conf.d/production.ini" >"$tmp/swapped.ini"
grep -q '^plugin = mock$' "$tmp/swapped.ini"
"$bin" -c "$tmp/swapped.ini" --plugin-dir "$plugins" --check-config >/dev/null || {
    echo "production.ini with plugin = mock fails --check-config"; exit 1; }
keys() { "$bin" --list-plugins --plugin-dir "$plugins" | sed -n "/^backend $1 /,/^\$/p" |
    awk 'NR > 1 && NF { print $1 }' | sort; }
[[ -n "$(keys a2a)" ]] || { echo "no a2a keys listed"; exit 1; }
missing=$(comm -23 <(keys a2a) <(keys mock))
[[ -z "$missing" ]] || { echo "mock does not accept these a2a keys: $missing"; exit 1; }

"$bin" --list-plugins --markdown --plugin-dir "$plugins" >"$tmp/plugins.md"
diff -u "$src/docs/plugins.md" "$tmp/plugins.md" || {
    echo "docs/plugins.md is stale: cmake --build build --target docs"; exit 1; }
echo "shipped manifests and plugin docs: ok"
