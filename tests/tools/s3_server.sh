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
# seconds between TERM and KILL when the server is stopped
grace=5

usage() {
    echo "usage: $0 start DIR OWNER_PID [BUCKET]... | stop DIR" >&2
    exit 2
}

# shellcheck source-path=SCRIPTDIR source=server_lib.sh
. "$here/server_lib.sh"

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
    start_watchdog "$dir" "$owner" "$server" "$lifetime" "$grace"
    if ! wait_ready "$dir" "$port" moto-api/ "$start_timeout" "the S3 server"; then
        stop "$dir"
        exit 1
    fi

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
    stop_server "$1" "$grace"
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
