# Shared by the kit's shell tests: fakes as a coprocess, a manifest
# against them, small waits. Source after setting bin, plugins, tmp.
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
finish_test() { [[ $fails -eq 0 ]] || { echo "$fails failure(s)"; exit 1; }; echo "$1: ok"; }

# start_fakes BIN: fake Telegram + A2A; sets TELEGRAM_API_BASE, A2A_BASE_URL.
start_fakes() {
    coproc FAKES { "$1" "${KIT_TOKEN:-123456:kit-token}"; }
    local l
    while read -r -t 20 l <&"${FAKES[0]}"; do
        case $l in
        TELEGRAM_API_BASE=*) TELEGRAM_API_BASE=${l#*=} ;;
        A2A_BASE_URL=*) A2A_BASE_URL=${l#*=} ;;
        READY) break ;;
        esac
    done
    [[ -n "${TELEGRAM_API_BASE:-}" ]] || { echo "fakes did not start"; exit 1; }
    export TELEGRAM_API_BASE A2A_BASE_URL
}
# fake CMD...: one command, its first answer line in $REPLY
fake() { echo "$*" >&"${FAKES[1]}"; read -r -t 60 REPLY <&"${FAKES[0]}"; }
# fake_replies: every reply so far, one "CHAT TEXT" per line, in $REPLIES
fake_replies() {
    echo replies >&"${FAKES[1]}"
    REPLIES=""
    local l
    while read -r -t 30 l <&"${FAKES[0]}" && [[ $l != end ]]; do REPLIES+="${l#reply }"$'\n'; done
}
stop_fakes() { [[ -n "${FAKES_PID:-}" ]] && { echo quit >&"${FAKES[1]}"; wait "$FAKES_PID" 2>/dev/null; } || true; }

# A port below the ephemeral range (tests/support/free_port.py).
free_port() { python3 "$src/tests/support/free_port.py"; }
# wait_http URL STATUS SECONDS
wait_http() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null) == "$2" ]] && return 0
        sleep 0.1
    done
    return 1
}
# wait_for SECONDS CMD...: until CMD succeeds
wait_for() {
    local n=$1 i; shift
    for ((i = 0; i < n * 10; i++)); do "$@" && return 0; sleep 0.1; done
    return 1
}
