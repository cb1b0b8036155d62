#!/usr/bin/env bash
# Start or stop an S3-compatible server (moto) on 127.0.0.1 for tests.
#
#   s3_server.sh start DIR OWNER_PID [BUCKET]...
#   s3_server.sh stop DIR
#
# start runs moto's server from the test virtual environment (.venv-test at
# the top of the checkout, or $APIARY_TEST_VENV) on a free loopback port,
# creates the buckets, and switches on signature checks (see
# s3_server_setup.py), so requests with a wrong signature or an unknown key
# get 403. It writes DIR/env, lines a shell can source: AWS_ENDPOINT_URL,
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, and SESSION_ACCESS_KEY_ID,
# SESSION_SECRET_ACCESS_KEY and SESSION_TOKEN for temporary credentials, and
# prints the endpoint URL. A watchdog stops the server when OWNER_PID exits or
# after $S3_TEST_SERVER_LIFETIME seconds (default 900). stop ends the server
# and the watchdog. Exit status 77 means moto is not installed.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
venv="${APIARY_TEST_VENV:-$here/../../.venv-test}"
moto="$venv/bin/moto_server"
start_timeout=60
lifetime="${S3_TEST_SERVER_LIFETIME:-900}"

usage() {
    echo "usage: $0 start DIR OWNER_PID [BUCKET]... | stop DIR" >&2
    exit 2
}

free_port() {
    "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

server_ready() {
    "$venv/bin/python" - "$1" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=2) as reply:
        sys.exit(0 if reply.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

# Kill a process group: TERM first, KILL after 5 s.
stop_group() {
    local pid="$1"
    kill -TERM -- "-$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        kill -0 -- "-$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
}

start() {
    local dir="$1" owner="$2"
    shift 2
    if [ ! -x "$moto" ]; then
        echo "skip: moto is not installed in $venv; run scripts/install-test-tools" >&2
        exit 77
    fi
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    local port
    port="$(free_port)"
    setsid "$moto" --host 127.0.0.1 --port "$port" >"$dir/server.log" 2>&1 </dev/null &
    local server=$!
    echo "$server" >"$dir/server.pid"

    setsid bash -c '
        owner=$1 server=$2 lifetime=$3
        end=$((SECONDS + lifetime))
        while kill -0 "$owner" 2>/dev/null && kill -0 "$server" 2>/dev/null &&
            [ "$SECONDS" -lt "$end" ]; do
            sleep 1
        done
        kill -TERM -- "-$server" 2>/dev/null
        sleep 3
        kill -KILL -- "-$server" 2>/dev/null
    ' watchdog "$owner" "$server" "$lifetime" >/dev/null 2>&1 </dev/null &
    echo $! >"$dir/watchdog.pid"

    local deadline=$((SECONDS + start_timeout))
    until server_ready "$port"; do
        if ! kill -0 "$server" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            echo "the S3 server did not start; its log:" >&2
            tail -n 30 "$dir/server.log" >&2
            stop "$dir"
            exit 1
        fi
        sleep 0.2
    done

    local endpoint="http://127.0.0.1:$port"
    if ! "$venv/bin/python" "$here/s3_server_setup.py" "$endpoint" "$@" >"$dir/credentials" \
        2>"$dir/setup.log"; then
        echo "the S3 server setup failed:" >&2
        tail -n 30 "$dir/setup.log" >&2
        stop "$dir"
        exit 1
    fi
    { echo "AWS_ENDPOINT_URL=$endpoint"; cat "$dir/credentials"; } >"$dir/env"
    rm -f "$dir/credentials"
    echo "$endpoint"
}

stop() {
    local dir="$1"
    if [ -f "$dir/server.pid" ]; then
        stop_group "$(cat "$dir/server.pid")"
        rm -f "$dir/server.pid"
    fi
    if [ -f "$dir/watchdog.pid" ]; then
        kill -TERM -- "-$(cat "$dir/watchdog.pid")" 2>/dev/null || true
        rm -f "$dir/watchdog.pid"
    fi
}

case "${1:-}" in
start)
    [ $# -ge 3 ] || usage
    start "${@:2}"
    ;;
stop)
    [ $# -eq 2 ] || usage
    stop "$2"
    ;;
*)
    usage
    ;;
esac
