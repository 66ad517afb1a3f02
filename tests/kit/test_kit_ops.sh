#!/usr/bin/env bash
# scripts/soak.sh for a few seconds and scripts/restore-drill.sh (timed),
# against the fakes. Usage: test_kit_ops.sh ROUTERD SRC PLUGIN_DIR FAKES
set -euo pipefail
bin=$1 src=$2 plugins=$3 fakes=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$src/tests/kit/kit_lib.sh"

# ---- soak ---------------------------------------------------------------------
out=$("$src/scripts/soak.sh" 4 --rate 25 --interval 1 --routerd "$bin" --plugin-dir "$plugins" \
    --driver "$fakes" --csv "$tmp/soak.csv" 2>&1) || fail "soak: $out"
grep -q '^soak: PASS$' <<<"$out" || fail "soak did not pass: $out"
for q in 50 90 99; do grep -qE "^latency p$q: [0-9.]+ ms$" <<<"$out" || fail "no p$q: $out"; done
head -1 "$tmp/soak.csv" | grep -qx 't_s,sent,replied,queue_depth,rss_kib' || fail "csv header"
rows=$(tail -n +2 "$tmp/soak.csv" | grep -cE '^[0-9]+,[0-9]+,[0-9]+,[0-9]+,[0-9]+$' || true)
# One sample per interval plus start and end; a loaded machine (sanitizer
# builds) may stretch one interval, so at least three.
(( rows >= 3 )) || fail "soak: $rows samples over 4 s: $(cat "$tmp/soak.csv")"
sent=$(sed -n 's/^sent \([0-9]*\) ([0-9]* msg\/s achieved), answered \([0-9]*\).*/\1 \2/p' <<<"$out")
read -r s a <<<"$sent"
# Never more than the rate allows; at least a second's worth even when
# loaded; every message answered.
(( s >= 25 && s <= 110 && a >= s )) || fail "soak sent/answered: '$sent' (25/s for 4 s): $out"
# RSS was read from /proc (non-zero) at every sample.
awk -F, 'NR > 1 && $5 <= 0 { bad = 1 } END { exit bad }' "$tmp/soak.csv" || fail "RSS missing"

# ---- restore drill -------------------------------------------------------
t0=$(date +%s)
out=$("$src/scripts/restore-drill.sh" --routerd "$bin" --plugin-dir "$plugins" --driver "$fakes" \
    --max-seconds 60 2>&1) || fail "restore drill: $out"
echo "restore drill took $(( $(date +%s) - t0 )) s in all"
grep -q '^restore drill: PASS$' <<<"$out" || fail "drill did not pass: $out"
grep -E '^restore drill: recovered in [0-9]+\.[0-9]{3} s$' <<<"$out" || fail "no recovery time: $out"
# Without the store backup the drill must notice what was lost.
rc=0; out=$("$src/scripts/restore-drill.sh" --routerd "$bin" --plugin-dir "$plugins" --driver "$fakes" \
    --no-backup 2>&1) || rc=$?
[[ $rc -ne 0 ]] || fail "drill passed without the store backup"
grep -q "FAIL: chat 5001: no reply 'B: after the restore'" <<<"$out" || fail "drill without backup: $out"
finish_test "soak and restore drill"
