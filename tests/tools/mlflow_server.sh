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

usage() {
    echo "usage: $0 start DIR PORT [OWNER_PID] | stop DIR" >&2
    exit 2
}

health_ok() {
    "$venv/bin/python" - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2) as reply:
        sys.exit(0 if reply.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

# Kill a process group: TERM first, KILL after 10 s.
stop_group() {
    local pid="$1"
    kill -TERM -- "-$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 -- "-$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
}

start() {
    local dir="$1" port="$2" owner="${3:-$PPID}"
    if [ ! -x "$mlflow" ]; then
        echo "skip: MLflow is not installed in $venv; run scripts/install-test-tools" >&2
        exit 77
    fi
    mkdir -p "$dir/artifacts"
    dir="$(cd "$dir" && pwd)"
    # setsid makes the server the leader of its own process group, so stop
    # also ends the workers it forks. The background job runner (MLflow 3.x)
    # is off: the registry does not use it, and it slows start-up.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$mlflow" server --host 127.0.0.1 --port "$port" \
        --backend-store-uri "sqlite:///$dir/mlflow.db" \
        --artifacts-destination "$dir/artifacts" --workers 1 \
        >"$dir/server.log" 2>&1 </dev/null &
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
        sleep 5
        kill -KILL -- "-$server" 2>/dev/null
    ' watchdog "$owner" "$server" "$lifetime" >/dev/null 2>&1 </dev/null &
    echo $! >"$dir/watchdog.pid"

    local deadline=$((SECONDS + start_timeout))
    until health_ok "$port"; do
        if ! kill -0 "$server" 2>/dev/null; then
            echo "MLflow server exited during start-up; its log:" >&2
            tail -n 30 "$dir/server.log" >&2
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "MLflow server did not answer /health within $start_timeout s; its log:" >&2
            tail -n 30 "$dir/server.log" >&2
            stop "$dir"
            exit 1
        fi
        sleep 0.2
    done
    echo "http://127.0.0.1:$port"
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
