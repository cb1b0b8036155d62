# shellcheck shell=bash disable=SC2154
# Shared parts of the scripts that start a test server on 127.0.0.1, sourced
# by them after they set venv (the Python environment that runs the server).
# Every server runs as the leader of its own process group, so stopping the
# group also ends the workers it forks.

# Request http://127.0.0.1:PORT/PATH and succeed on status 200.
http_ok() {
    "$venv/bin/python" - "$1" "$2" <<'PY'
import sys, urllib.request
try:
    url = f"http://127.0.0.1:{sys.argv[1]}/{sys.argv[2].lstrip('/')}"
    with urllib.request.urlopen(url, timeout=2) as reply:
        sys.exit(0 if reply.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

free_port() {
    "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Kill process group PID: TERM first, KILL after GRACE seconds.
stop_group() {
    local pid="$1" grace="$2"
    kill -TERM -- "-$pid" 2>/dev/null || return 0
    for _ in $(seq 1 $((grace * 10))); do
        kill -0 -- "-$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
}

# Start a watchdog that ends the server's process group when OWNER exits or
# after LIFETIME seconds, so a crashed test never leaves a server running.
# It writes its pid to DIR/watchdog.pid.
start_watchdog() {
    local dir="$1" owner="$2" server="$3" lifetime="$4" grace="$5"
    # shellcheck disable=SC2016 # the inner script expands its own arguments
    setsid bash -c '
        owner=$1 server=$2 lifetime=$3 grace=$4
        end=$((SECONDS + lifetime))
        while kill -0 "$owner" 2>/dev/null && kill -0 "$server" 2>/dev/null &&
            [ "$SECONDS" -lt "$end" ]; do
            sleep 1
        done
        kill -TERM -- "-$server" 2>/dev/null
        sleep "$grace"
        kill -KILL -- "-$server" 2>/dev/null
    ' watchdog "$owner" "$server" "$lifetime" "$grace" >/dev/null 2>&1 </dev/null &
    echo $! >"$dir/watchdog.pid"
}

# Wait until http://127.0.0.1:PORT/PATH returns status 200. On failure print
# NAME's log DIR/server.log and return 1, and the caller stops the server.
wait_ready() {
    local dir="$1" port="$2" path="$3" timeout="$4" name="$5" server
    server="$(cat "$dir/server.pid")"
    local deadline=$((SECONDS + timeout))
    until http_ok "$port" "$path"; do
        if ! kill -0 "$server" 2>/dev/null; then
            echo "$name exited during start-up; its log:" >&2
            tail -n 30 "$dir/server.log" >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "$name did not answer /$path within $timeout s; its log:" >&2
            tail -n 30 "$dir/server.log" >&2
            return 1
        fi
        sleep 0.2
    done
}

# End the server and the watchdog that DIR's pid files name.
stop_server() {
    local dir="$1" grace="$2"
    if [ -f "$dir/server.pid" ]; then
        stop_group "$(cat "$dir/server.pid")" "$grace"
        rm -f "$dir/server.pid"
    fi
    if [ -f "$dir/watchdog.pid" ]; then
        kill -TERM -- "-$(cat "$dir/watchdog.pid")" 2>/dev/null || true
        rm -f "$dir/watchdog.pid"
    fi
}
