#!/usr/bin/env bash
# Disaster-recovery drill (docs/operations.md, "Disaster recovery"): run
# a router against the fakes (or a --driver), build up state (a persona
# choice, the confirmed offset, the generated chat-hash key), back the
# store up, destroy the machine's state, then recover from the three things
# kept off the machine: the artifact (its SHA-256 recorded at promotion),
# the signed manifest and the store backup. Checks that nothing was lost
# and nothing answered twice, and prints the time the recovery took.
#
# Usage: scripts/restore-drill.sh [--routerd BIN] [--plugin-dir DIR]
#                                 [--driver CMD] [--max-seconds S]
#                                 [--no-backup]  (recover without the store
#                                 backup: shows what the checks catch)
set -uo pipefail
cd "$(dirname "$0")/.."
bin=build/routerd
[[ -x $bin ]] || bin=$(command -v routerd || echo build/routerd)
plugin_dir="" driver="" max_s="" use_backup=1
while [[ $# -gt 0 ]]; do
    case $1 in
    --routerd) bin=$2; shift 2 ;;
    --plugin-dir) plugin_dir=$2; shift 2 ;;
    --driver) driver=$2; shift 2 ;;
    --max-seconds) max_s=$2; shift 2 ;;
    --no-backup) use_backup=0; shift ;;
    *) echo "restore-drill: unknown option $1" >&2; exit 64 ;;
    esac
done
[[ -n $driver ]] || driver=build/tests/routerd_fakes
# The driver serves the bot token routerd is given.
export TELEGRAM_BOT_TOKEN=${TELEGRAM_BOT_TOKEN:-123456:drill-token}
command -v sqlite3 >/dev/null || { echo "restore-drill: needs sqlite3" >&2; exit 1; }
tmp=$(mktemp -d)
rpid=""
cleanup() {
    [[ -n $rpid ]] && kill -KILL "$rpid" 2>/dev/null
    [[ -n ${DRV_PID:-} ]] && { echo quit >&"${DRV[1]}"; wait "$DRV_PID"; } 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
step() { echo "== $*"; }
die() { echo "restore-drill: FAIL: $*"; [[ -f $tmp/log ]] && tail -5 "$tmp/log"; exit 1; }

coproc DRV { exec $driver; }
while read -r -t 30 l <&"${DRV[0]}"; do
    case $l in
    TELEGRAM_API_BASE=*) export TELEGRAM_API_BASE=${l#*=} ;;
    READY) break ;;
    esac
done
[[ -n ${TELEGRAM_API_BASE:-} ]] || die "driver did not start"
drv() { echo "$*" >&"${DRV[1]}"; read -r -t 60 REPLY <&"${DRV[0]}"; }
replies() {
    echo replies >&"${DRV[1]}"
    REPLIES=""
    local l
    while read -r -t 30 l <&"${DRV[0]}" && [[ $l != end ]]; do REPLIES+="${l#reply }"$'\n'; done
}

# ---- the production side: what is kept off the machine -----------------------
step "artifact, signed manifest, store backup"
offsite=$tmp/offsite
mkdir -p "$offsite"
cp "$bin" "$offsite/routerd" && sha256sum "$offsite/routerd" | cut -d' ' -f1 >"$offsite/routerd.sha256"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$offsite/drill.ini" <<'INI'
[router]
env = drill
admin_listen = ${ROUTERD_ADMIN_LISTEN}
state_dir = ${ROUTERD_STATE_DIR}
[transport.main]
plugin = telegram
token = ${TELEGRAM_BOT_TOKEN}
api_base = ${TELEGRAM_API_BASE}
[backend.a]
plugin = mock
prefix = "A: "
[backend.b]
plugin = mock
prefix = "B: "
[persona.a]
backend = a
chats = *
selectable = true
[persona.b]
backend = b
selectable = true
[sink.logs]
plugin = jsonlog
path = ${ROUTERD_LOG}
INI
openssl genpkey -algorithm ed25519 -out "$tmp/signing.pem" 2>/dev/null
openssl pkey -in "$tmp/signing.pem" -pubout -out "$offsite/manifest-key.pem"
openssl pkeyutl -sign -rawin -inkey "$tmp/signing.pem" -in "$offsite/drill.ini" | base64 -w0 >"$offsite/drill.ini.sig"
export ROUTERD_ADMIN_LISTEN=127.0.0.1:$port
start() { # state_dir binary manifest_dir
    export ROUTERD_STATE_DIR=$1 ROUTERD_LOG=$tmp/log
    local a=(-c "$3/drill.ini" --manifest-key "$3/manifest-key.pem")
    [[ -n $plugin_dir ]] && a+=(--plugin-dir "$plugin_dir")
    "$2" "${a[@]}" >/dev/null 2>>"$tmp/stderr" &
    rpid=$!
    for ((i = 0; i < 300; i++)); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz") == 200 ]] && return 0
        kill -0 $rpid 2>/dev/null || break
        sleep 0.1
    done
    die "routerd did not become ready: $(tail -3 "$tmp/stderr")"
}
stop() { kill -TERM $rpid; wait $rpid || die "routerd exit $?"; rpid=""; }
expect_reply() { # chat text
    local n=$(( $(grep -c . <<<"${REPLIES:-}") + 1 ))
    drv wait "$n" 20000
    replies
    grep -qxF -- "$1 $2" <<<"$REPLIES" || die "chat $1: no reply '$2' in: $REPLIES"
}
machine=$tmp/machine
mkdir -p "$machine/state"
start "$machine/state" "$offsite/routerd" "$offsite"
REPLIES=""
drv send 5001 "/persona b"; expect_reply 5001 "Persona switched to b."
drv send 5001 "before the disaster"; expect_reply 5001 "B: before the disaster"
drv send 5002 "another chat"; expect_reply 5002 "A: another chat"
hash_before=$(grep -o '"chat_id_hash":"[^"]*"' "$tmp/log" | head -1)
[[ -n $hash_before ]] || die "no chat_id_hash in the log"
stop
drv confirmed
offset_before=${REPLY#offset }
# routerd holds the store exclusively while running: back it up stopped (or
# from a volume snapshot). .backup makes a consistent single-file copy.
sqlite3 "$machine/state/routerd.db" ".backup '$offsite/routerd.db.backup'" || die "backup"
sha256sum "$offsite/routerd.db.backup" | cut -d' ' -f1 >"$offsite/routerd.db.backup.sha256"
replies_before=$(grep -c . <<<"$REPLIES")

# ---- the disaster ----------------------------------------------------------
step "disaster: the machine and its state are gone"
rm -rf "$machine"

# ---- the recovery (timed) -------------------------------------------------------
step "recovery"
t0=$(date +%s%N)
new=$tmp/new-machine
mkdir -p "$new/bin" "$new/etc" "$new/state"
# 1. The artifact, verified against the digest recorded at promotion.
cp "$offsite/routerd" "$new/bin/routerd"
[[ $(sha256sum "$new/bin/routerd" | cut -d' ' -f1) == $(cat "$offsite/routerd.sha256") ]] ||
    die "artifact digest differs"
# 2. The signed manifest: routerd verifies it before anything starts.
cp "$offsite/drill.ini" "$offsite/drill.ini.sig" "$offsite/manifest-key.pem" "$new/etc/"
ROUTERD_STATE_DIR=$new/check ROUTERD_LOG=- "$new/bin/routerd" -c "$new/etc/drill.ini" \
    --manifest-key "$new/etc/manifest-key.pem" ${plugin_dir:+--plugin-dir "$plugin_dir"} --check-config |
    grep -q '^signature = verified$' || die "signed manifest does not verify"
# 3. The store backup, checked, then put in place.
[[ $(sha256sum "$offsite/routerd.db.backup" | cut -d' ' -f1) == $(cat "$offsite/routerd.db.backup.sha256") ]] ||
    die "backup digest differs"
[[ $(sqlite3 "$offsite/routerd.db.backup" 'PRAGMA integrity_check') == ok ]] || die "backup integrity"
[[ $use_backup == 1 ]] && cp "$offsite/routerd.db.backup" "$new/state/routerd.db"
start "$new/state" "$new/bin/routerd" "$new/etc"
t1=$(date +%s%N)
rto_ms=$(( (t1 - t0) / 1000000 ))

# ---- nothing lost, nothing twice -------------------------------------------
step "checks"
drv send 5001 "after the restore"; expect_reply 5001 "B: after the restore"
drv send 5003 "a new chat"; expect_reply 5003 "A: a new chat"
stop
# The first chat's hash after the restore equals the one before it: the
# generated chat-hash key came back with the store.
n5001=$(grep '"event":"replied"' "$tmp/log" | grep -c "${hash_before}" || true)
[[ $n5001 -ge 3 ]] || die "chat 5001 logged under another chat_id_hash after the restore"
replies
total=$(grep -c . <<<"$REPLIES")
[[ $total -eq $((replies_before + 2)) ]] || die "$total replies, want $((replies_before + 2)) (duplicates or losses)"
drv confirmed
offset_after=${REPLY#offset }
(( offset_after > offset_before )) || die "offset did not move on ($offset_before -> $offset_after)"
echo "persona choice, chat-hash key and offset survived; no duplicate replies"
echo "restore drill: recovered in $((rto_ms / 1000)).$(printf '%03d' $((rto_ms % 1000))) s"
if [[ -n $max_s ]] && (( rto_ms > max_s * 1000 )); then die "recovery took longer than $max_s s"; fi
echo "restore drill: PASS"
