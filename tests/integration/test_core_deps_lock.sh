#!/usr/bin/env bash
# scripts/deps.sh waits for a busy apt lock instead of failing: every
# apt-get call carries DPkg::Lock::Timeout. apt-get, dpkg-query and id are
# stubs on PATH; nothing is installed.
set -euo pipefail
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/bin"
cat >"$tmp/bin/apt-get" <<'STUB'
#!/bin/sh
echo "apt-get $*" >>"$APT_LOG"
STUB
cat >"$tmp/bin/dpkg-query" <<'STUB'
#!/bin/sh
exit 1
STUB
cat >"$tmp/bin/id" <<'STUB'
#!/bin/sh
echo 0
STUB
chmod +x "$tmp/bin/"*
export APT_LOG=$tmp/apt.log
PATH="$tmp/bin:$PATH" ROUTERD_APT_LOCK_TIMEOUT=123 bash "$src/scripts/deps.sh" 2>/dev/null
calls=$(grep -c "^apt-get " "$APT_LOG" || true)
waiting=$(grep -c -- "-o DPkg::Lock::Timeout=123 " "$APT_LOG" || true)
if [[ $calls -lt 2 || $calls -ne $waiting ]]; then
    echo "FAIL: apt-get calls without a lock timeout:" >&2
    cat "$APT_LOG" >&2
    exit 1
fi
echo "ok: $calls apt-get call(s), each waits for the lock"
