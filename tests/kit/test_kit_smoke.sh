#!/usr/bin/env bash
# scripts/smoke.sh against the fakes: passes on the staging manifest, and
# fails (non-zero) when the backend fails or a reply is missing.
# Usage: test_kit_smoke.sh ROUTERD SRC PLUGIN_DIR FAKES
set -euo pipefail
bin=$1 src=$2 plugins=$3 fakes=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$src/tests/kit/kit_lib.sh"
smoke() { "$src/scripts/smoke.sh" --routerd "$bin" --plugin-dir "$plugins" --driver "$fakes" "$@"; }
out=$(smoke 2>&1) || fail "smoke on conf.d/staging.ini: $out"
grep -q '^smoke: PASS$' <<<"$out" || fail "no PASS: $out"
for k in routerd_round_trip_seconds routerd_queue_depth routerd_backend_failures_total \
    routerd_uptime_seconds routerd_rate_limit_hits_total "log fields" "/healthz 200"; do
    grep -q "^ok    $k" <<<"$out" || fail "smoke did not check $k"
done
# A failing agent: every reply is a failure notice.
sed 's/^plugin = mock .*/plugin = mock\nfail_fatal = 1/' "$src/conf.d/staging.ini" >"$tmp/failing.ini"
grep -q '^fail_fatal = 1$' "$tmp/failing.ini"
rc=0; out=$(smoke --manifest "$tmp/failing.ini" 2>&1) || rc=$?
[[ $rc -eq 1 ]] || fail "smoke passed a failing backend (rc $rc): $out"
grep -q "MISS  routerd_backend_failures_total: 4 backend failure" <<<"$out" || fail "failure not named: $out"
# A manifest that cannot start.
sed 's/^plugin = mock .*/plugin = mock\nno_such_key = 1/' "$src/conf.d/staging.ini" >"$tmp/bad.ini"
rc=0; out=$(smoke --manifest "$tmp/bad.ini" --timeout 5 2>&1) || rc=$?
[[ $rc -ne 0 ]] || fail "smoke passed a manifest that cannot start"
# The signed path: a wrong signature stops the smoke.
openssl genpkey -algorithm ed25519 -out "$tmp/k.pem" && openssl pkey -in "$tmp/k.pem" -pubout -out "$tmp/pub.pem"
cp "$src/conf.d/staging.ini" "$tmp/staging.ini"
openssl pkeyutl -sign -rawin -inkey "$tmp/k.pem" -in "$tmp/staging.ini" | base64 -w0 >"$tmp/staging.ini.sig"
smoke --manifest "$tmp/staging.ini" --manifest-key "$tmp/pub.pem" >"$tmp/o" 2>&1 || fail "signed smoke: $(cat "$tmp/o")"
echo "; changed" >>"$tmp/staging.ini"
rc=0; smoke --manifest "$tmp/staging.ini" --manifest-key "$tmp/pub.pem" --timeout 5 >"$tmp/o" 2>&1 || rc=$?
[[ $rc -ne 0 ]] || fail "smoke passed a manifest whose signature does not match"
finish_test "smoke"
