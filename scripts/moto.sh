#!/usr/bin/env bash
# The moto SQS/SNS emulator for iniesta's tests, installed into a venv inside the repository.
#
#   ./scripts/moto.sh [PORT]    install (cached) and run moto in the foreground, printing the
#                               variables to export in another shell (default port 5000)
#   source scripts/moto.sh      define moto_install / moto_start / moto_stop (used by test.sh)
#
# Nothing is taken from outside the repository but `python3` (with its venv module).
set -euo pipefail

MOTO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOTO_VENV="${MOTO_VENV:-$MOTO_ROOT/.ci/.cache/moto-venv}"
# The version EMULATOR.md was measured against; bump deliberately.
MOTO_SPEC="${MOTO_SPEC:-moto[server]==5.2.5}"
MOTO_STAMP="$MOTO_VENV/.iniesta-moto-spec"

moto_fail() {
    echo "error: $*" >&2
    exit 1
}

# Creates the venv and installs moto, unless the cached venv already has this version.
moto_install() {
    if [[ -x "$MOTO_VENV/bin/moto_server" && -f "$MOTO_STAMP" && "$(cat "$MOTO_STAMP")" == "$MOTO_SPEC" ]] &&
        "$MOTO_VENV/bin/python" -c 'import moto' 2>/dev/null; then
        return 0
    fi
    command -v python3 >/dev/null ||
        moto_fail "python3 is not installed: apt-get install python3 python3-venv"
    echo "installing $MOTO_SPEC into $MOTO_VENV (cached for later runs)" >&2
    rm -rf "$MOTO_VENV"
    mkdir -p "$(dirname "$MOTO_VENV")"
    python3 -m venv "$MOTO_VENV" ||
        moto_fail "python3 -m venv failed: apt-get install python3-venv"
    "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check "$MOTO_SPEC" ||
        moto_fail "pip install '$MOTO_SPEC' failed (network?)"
    echo "$MOTO_SPEC" >"$MOTO_STAMP"
}

moto_free_port() {
    "$MOTO_VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Starts moto in the background on a free port; sets MOTO_PID, MOTO_PORT, MOTO_LOG and
# exports INIESTA_TEST_SQS_ENDPOINT plus static test credentials.
moto_start() {
    MOTO_PORT="${MOTO_PORT:-$(moto_free_port)}"
    MOTO_LOG="${MOTO_LOG:-$MOTO_ROOT/.ci/.cache/moto-$MOTO_PORT.log}"
    mkdir -p "$(dirname "$MOTO_LOG")"
    "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$MOTO_LOG" 2>&1 &
    MOTO_PID=$!
    local url="http://127.0.0.1:$MOTO_PORT"
    local waited=0
    until curl -fs "$url/moto-api/" >/dev/null 2>&1; do
        if ! kill -0 "$MOTO_PID" 2>/dev/null; then
            echo "----- moto log ($MOTO_LOG) -----" >&2
            cat "$MOTO_LOG" >&2 || true
            moto_fail "moto_server exited during start-up"
        fi
        if ((waited >= 300)); then
            echo "----- moto log ($MOTO_LOG) -----" >&2
            cat "$MOTO_LOG" >&2 || true
            moto_stop
            moto_fail "moto_server did not answer on $url/moto-api/ within 30 s"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    export INIESTA_TEST_SQS_ENDPOINT="$url"
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
    echo "moto is up on $url (pid $MOTO_PID, log $MOTO_LOG)" >&2
}

# Stops the moto this shell started and removes its log (set MOTO_KEEP_LOG=1 to keep it).
moto_stop() {
    if [[ -n "${MOTO_PID:-}" ]] && kill -0 "$MOTO_PID" 2>/dev/null; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
    MOTO_PID=""
    if [[ -n "${MOTO_LOG:-}" && -z "${MOTO_KEEP_LOG:-}" ]]; then
        rm -f "$MOTO_LOG"
    fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    command -v curl >/dev/null || moto_fail "curl is not installed: apt-get install curl"
    moto_install
    MOTO_PORT="${1:-5000}"
    trap moto_stop EXIT
    moto_start
    cat <<EOF
export INIESTA_TEST_SQS_ENDPOINT=$INIESTA_TEST_SQS_ENDPOINT AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
EOF
    echo "moto runs until Ctrl-C" >&2
    wait "$MOTO_PID"
fi
