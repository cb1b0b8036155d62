#!/usr/bin/env bash
# Start or stop an MLflow tracking server on 127.0.0.1 for tests.
#
#   mlflow_server.sh start DIR PORT [OWNER_PID]
#   mlflow_server.sh stop DIR
#
# start runs `mlflow server` from the test virtual environment (.venv-test at
# the top of the checkout, or $APIARY_TEST_VENV) with its database and
# artifacts under DIR, waits until /health replies, and prints the URL. A
# watchdog stops the server when OWNER_PID exits or after
# $MLFLOW_TEST_SERVER_LIFETIME seconds (default 900), whichever comes first,
# so a crashed test never leaves it running. stop ends the server's process
# group and the watchdog. Exit status 77 means MLflow is not installed.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
venv="${APIARY_TEST_VENV:-$here/../../.venv-test}"
mlflow="$venv/bin/mlflow"
start_timeout=180
lifetime="${MLFLOW_TEST_SERVER_LIFETIME:-900}"
# seconds between TERM and KILL when the server is stopped
grace=10

usage() {
    echo "usage: $0 start DIR PORT [OWNER_PID] | stop DIR" >&2
    exit 2
}

# shellcheck source-path=SCRIPTDIR source=server_lib.sh
. "$here/server_lib.sh"

start() {
    local dir="$1" port="$2" owner="${3:-$PPID}"
    if [ ! -x "$mlflow" ]; then
        echo "skip: MLflow is not installed in $venv; run scripts/install-test-tools" >&2
        exit 77
    fi
    mkdir -p "$dir/artifacts"
    dir="$(cd "$dir" && pwd)"
    # The background job runner (MLflow 3.x) is off: the registry does not
    # use it, and it slows start-up.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$mlflow" server --host 127.0.0.1 --port "$port" \
        --backend-store-uri "sqlite:///$dir/mlflow.db" \
        --artifacts-destination "$dir/artifacts" --workers 1 \
        >"$dir/server.log" 2>&1 </dev/null &
    local server=$!
    echo "$server" >"$dir/server.pid"
    start_watchdog "$dir" "$owner" "$server" "$lifetime" "$grace"
    if ! wait_ready "$dir" "$port" health "$start_timeout" "MLflow server"; then
        stop "$dir"
        exit 1
    fi
    echo "http://127.0.0.1:$port"
}

stop() {
    stop_server "$1" "$grace"
}

case "${1:-}" in
start)
    [ $# -ge 3 ] || usage
    start "$2" "$3" "${4:-}"
    ;;
stop)
    [ $# -eq 2 ] || usage
    stop "$2"
    ;;
*)
    usage
    ;;
esac
