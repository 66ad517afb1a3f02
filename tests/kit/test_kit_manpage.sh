#!/usr/bin/env bash
# routerd(8): renders without a groff warning, and names every option
# --help lists (a new option without its man page entry fails here).
# Usage: test_kit_manpage.sh ROUTERD SRC PLUGIN_DIR
set -euo pipefail
bin=$1 src=$2
page=$src/packaging/man/routerd.8
command -v groff >/dev/null || { echo "groff is needed (apt install groff-base)"; exit 77; }
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

warn=$(LC_ALL=C.UTF-8 groff -man -ww -z -Tutf8 "$page" 2>&1) || fail "groff failed"
[[ -z $warn ]] || fail "groff warnings: $warn"
text=$(LC_ALL=C.UTF-8 MANWIDTH=80 groff -man -Tutf8 -P-cbou "$page" 2>/dev/null)
grep -q "^NAME" <<<"$text" || fail "no NAME section in the rendered page"

opts=$("$bin" --help | grep -oE -- '--[a-z][a-z-]+' | sort -u)
[[ $(wc -l <<<"$opts") -ge 10 ]] || fail "--help lists too few options: $opts"
for o in $opts; do
    grep -qF -- "$o" <<<"$text" || fail "routerd(8) does not describe $o"
done
# Exit codes: the ones --help names are in EXIT STATUS.
for code in $("$bin" --help | grep -oE '\b(0|1|64|75|78)\b' | sort -u); do
    grep -qE "^ +$code +[A-Z]" <<<"$text" || fail "routerd(8) has no exit status $code"
done
# Every environment variable the core reads is documented.
for v in $(grep -ohE 'getenv\("[A-Z_]+"\)' "$src"/core/*.c | sed 's/getenv("\(.*\)")/\1/' | sort -u); do
    [[ $v == WATCHDOG_PID ]] && continue # systemd's, paired with WATCHDOG_USEC
    grep -qF -- "$v" <<<"$text" || fail "routerd(8) does not mention $v"
done
[[ $fails -eq 0 ]] && echo "routerd(8): ok ($(wc -l <<<"$opts") options)"
exit $((fails > 0))
