#!/usr/bin/env bash
# Checks made before start: the manifest's Ed25519 signature (keys and
# signatures made by the openssl CLI), plugin SHA-256 pins and the plugin
# folder's permissions. Usage: test_kit_verify.sh ROUTERD SRC PLUGIN_DIR
set -euo pipefail
bin=$1 src=$2 plugins=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export ROUTERD_STATE_DIR=$tmp/state
unset ROUTERD_MANIFEST_KEY CONFIG_MANIFEST_SIGNATURE
. "$src/tests/kit/kit_lib.sh"
# expect RC PATTERN CMD...: exit code RC and PATTERN on stdout+stderr
expect() {
    local want=$1 pat=$2; shift 2
    local out rc=0
    out=$("$@" 2>&1) || rc=$?
    if [[ $rc -ne $want ]]; then fail "$* -> rc $rc, want $want: $out"; return; fi
    if [[ -n "$pat" ]] && ! grep -qE -- "$pat" <<<"$out"; then fail "$*: no /$pat/ in: $out"; fi
}

# ---- signature ----------------------------------------------------------
openssl genpkey -algorithm ed25519 -out "$tmp/key.pem"
openssl pkey -in "$tmp/key.pem" -pubout -out "$tmp/pub.pem"
openssl genpkey -algorithm ed25519 -out "$tmp/other.pem"
openssl pkey -in "$tmp/other.pem" -pubout -out "$tmp/otherpub.pem"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/ec.pem"
openssl pkey -in "$tmp/ec.pem" -pubout -out "$tmp/ecpub.pem"
m=$tmp/m.ini
cp "$src/conf.d/dev.ini" "$m"
sign() { openssl pkeyutl -sign -rawin -inkey "$2" -in "$1" | base64 -w0; }
sign "$m" "$tmp/key.pem" >"$m.sig"
sha=$(sha256sum "$m" | cut -d' ' -f1)

run() { "$bin" -c "$m" --plugin-dir "$plugins" "$@"; }
expect 0 "^signature = verified$" run --manifest-key "$tmp/pub.pem" --check-config
expect 0 "^manifest_sha256 = $sha$" run --manifest-key "$tmp/pub.pem" --check-config
expect 0 "^signature = verified$" env ROUTERD_MANIFEST_KEY="$tmp/pub.pem" "$bin" -c "$m" \
    --plugin-dir "$plugins" --check-config
# The key as PEM text in the variable (a Kubernetes Secret).
expect 0 "^signature = verified$" env ROUTERD_MANIFEST_KEY="$(cat "$tmp/pub.pem")" "$bin" -c "$m" \
    --plugin-dir "$plugins" --check-config
# base64 wrapped at 76 columns (plain `base64`) and a trailing newline.
openssl pkeyutl -sign -rawin -inkey "$tmp/key.pem" -in "$m" | base64 >"$tmp/wrapped.sig"
cp "$m.sig" "$tmp/oneline.sig"; cp "$tmp/wrapped.sig" "$m.sig"
expect 0 "^signature = verified$" run --manifest-key "$tmp/pub.pem" --check-config
cp "$tmp/oneline.sig" "$m.sig"
# Without a key nothing is required, and the state says so.
expect 0 "^signature = unsigned$" run --check-config
# Wrong key, changed byte, trailing newline added: refused.
expect 78 "does not match" run --manifest-key "$tmp/otherpub.pem" --check-config
cp "$m" "$tmp/orig.ini"
sed -i 's/queue_depth = 256/queue_depth = 257/' "$m"
expect 78 "m.ini: signature from .*m.ini.sig does not match" run --manifest-key "$tmp/pub.pem" --check-config
cp "$tmp/orig.ini" "$m"; printf '\n' >>"$m"
expect 78 "does not match" run --manifest-key "$tmp/pub.pem" --check-config
cp "$tmp/orig.ini" "$m"
# The start path refuses too (not only --check-config).
sed -i 's/queue_depth = 256/queue_depth = 255/' "$m"
expect 78 "does not match" run --manifest-key "$tmp/pub.pem" </dev/null
cp "$tmp/orig.ini" "$m"
# Missing signature.
mv "$m.sig" "$tmp/sig.b64"
expect 78 "no signature" run --manifest-key "$tmp/pub.pem" --check-config
# From the environment instead of the file.
expect 0 "^signature = verified$" env CONFIG_MANIFEST_SIGNATURE="$(cat "$tmp/sig.b64")" "$bin" -c "$m" \
    --plugin-dir "$plugins" --manifest-key "$tmp/pub.pem" --check-config
expect 78 "not base64" env CONFIG_MANIFEST_SIGNATURE='not*base64' "$bin" -c "$m" \
    --plugin-dir "$plugins" --manifest-key "$tmp/pub.pem" --check-config
expect 78 "not base64 of a 64-byte" env CONFIG_MANIFEST_SIGNATURE="$(head -c 48 /dev/urandom | base64 -w0)" \
    "$bin" -c "$m" --plugin-dir "$plugins" --manifest-key "$tmp/pub.pem" --check-config
# A signature by another key, and a key that is not Ed25519.
sign "$m" "$tmp/other.pem" >"$m.sig"
expect 78 "does not match" run --manifest-key "$tmp/pub.pem" --check-config
cp "$tmp/sig.b64" "$m.sig"
expect 78 "not an Ed25519 public key" run --manifest-key "$tmp/ecpub.pem" --check-config
expect 78 "not a PEM public key" run --manifest-key "$m" --check-config
expect 78 "No such file" run --manifest-key "$tmp/nope.pem" --check-config
# Verified state in the start line and in routerd_build_info.
if [[ -e "$plugins/sink_prometheus.so" ]]; then
    port=$(free_port)
    sed -e "s/^admin_listen = .*/admin_listen = 127.0.0.1:$port/" "$tmp/orig.ini" >"$m"
    printf '[sink.metrics]\nplugin = prometheus\n' >>"$m"
    sign "$m" "$tmp/key.pem" >"$m.sig"
    msha=$(sha256sum "$m" | cut -d' ' -f1)
    mkfifo "$tmp/in"
    ( sleep 30 >"$tmp/in" ) & holder=$!
    "$bin" -c "$m" --plugin-dir "$plugins" --manifest-key "$tmp/pub.pem" <"$tmp/in" \
        >"$tmp/out" 2>"$tmp/err" & pid=$!
    ok=0
    for _ in $(seq 100); do
        if metrics=$(curl -sf "http://127.0.0.1:$port/metrics" 2>/dev/null); then ok=1; break; fi
        sleep 0.1
    done
    [[ $ok == 1 ]] || fail "no /metrics: $(cat "$tmp/err")"
    grep -q "^routerd_build_info{.*manifest_sha256=\"$msha\".*signature=\"verified\".*} 1" <<<"$metrics" ||
        fail "routerd_build_info lacks manifest sha/signature: $(grep build_info <<<"$metrics")"
    kill -TERM $pid; wait $pid || fail "routerd exit $?"
    kill $holder 2>/dev/null || true
    grep -q "manifest sha256 $msha (signature verified)" "$tmp/err" ||
        fail "start line lacks manifest sha/signature: $(cat "$tmp/err")"
fi

# ---- plugin pins and folder permissions ----------------------------------
pd=$tmp/plugins
mkdir -m 0755 "$pd"
cp "$plugins"/transport_console.so "$plugins"/backend_mock.so "$pd"/
chmod 0644 "$pd"/*.so
psha=$(sha256sum "$pd/backend_mock.so" | cut -d' ' -f1)
p=$tmp/pin.ini
cat >"$p" <<INI
[router]
admin_listen = off
state_dir = $tmp/state
[transport.console]
plugin = console
[backend.mock]
plugin = mock
sha256 = $psha
[persona.p]
backend = mock
chats = *
INI
expect 0 "configuration OK" "$bin" -c "$p" --plugin-dir "$pd" --check-config
upper=$(tr a-f A-F <<<"$psha")
sed "s/$psha/$upper/" "$p" >"$tmp/pin_upper.ini"
expect 0 "configuration OK" "$bin" -c "$tmp/pin_upper.ini" --plugin-dir "$pd" --check-config
bad=$(printf '%064d' 0)
sed "s/$psha/$bad/" "$p" >"$tmp/pin_bad.ini"
expect 78 "pin_bad.ini:8: \[backend.mock\] sha256: .*backend_mock.so: SHA-256 is $psha, the manifest pins $bad" \
    "$bin" -c "$tmp/pin_bad.ini" --plugin-dir "$pd" --check-config
expect 78 "pin_bad.ini:8: \[backend.mock\] sha256" "$bin" -c "$tmp/pin_bad.ini" --plugin-dir "$pd" </dev/null
sed "s/$psha/abc/" "$p" >"$tmp/pin_short.ini"
expect 78 "\[backend.mock\] sha256: 'abc' is not a SHA-256" "$bin" -c "$tmp/pin_short.ini" --plugin-dir "$pd" --check-config
# A replaced plugin file no longer matches its pin.
cp "$pd/backend_mock.so" "$tmp/mock.bak"
printf 'x' >>"$pd/backend_mock.so"
expect 78 "the manifest pins $psha" "$bin" -c "$p" --plugin-dir "$pd" --check-config
cp "$tmp/mock.bak" "$pd/backend_mock.so"
# A pin on a plugin given by path, in a transport section.
sed "s|^plugin = console|plugin = $pd/transport_console.so\nsha256 = $bad|" "$p" >"$tmp/pin_path.ini"
expect 78 "\[transport.console\] sha256" "$bin" -c "$tmp/pin_path.ini" --plugin-dir "$pd" --check-config
# Writable by group or others: refused with the path (root ignores
# permissions, so only the mode is checked).
chmod 0775 "$pd"
expect 78 "$pd is writable by its group \(mode 0775\)" "$bin" -c "$p" --plugin-dir "$pd" --check-config
chmod 0757 "$pd"
expect 78 "$pd is writable by others" "$bin" -c "$p" --plugin-dir "$pd" --check-config
chmod 1777 "$pd"
expect 78 "writable by others" "$bin" -c "$p" --plugin-dir "$pd" --check-config
chmod 0755 "$pd"
chmod 0664 "$pd/transport_console.so"
expect 78 "$pd/transport_console.so is writable by its group" "$bin" -c "$p" --plugin-dir "$pd" --check-config
chmod 0644 "$pd/transport_console.so"
expect 0 "configuration OK" "$bin" -c "$p" --plugin-dir "$pd" --check-config
# --list-plugins applies the same rule.
chmod 0777 "$pd"
expect 1 "writable by others" "$bin" --list-plugins --plugin-dir "$pd"
chmod 0755 "$pd"

[[ $fails -eq 0 ]] || { echo "$fails failure(s)"; exit 1; }
echo "signature, pins and permissions: ok"
