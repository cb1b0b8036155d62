#!/usr/bin/env bash
# apiary serve under overload on loopback: 1500 slowloris connections
# that send their headers a byte at a time, clients that hold every request
# slot with slow uploads, and clients that post as fast as they can
# (tests/tools/slow_clients.py). The server sheds the excess with 503 and
# Retry-After, replies 200 to every health check, and serves predictions
# again once the load is gone.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir fault-serve)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
export APIARY_DATA_DIR="$data"
common=(-c "$config" --set output_dir="$work" --set registry.uri="$work/registry")
images=("$data"/wasp-trap/images/*.jpg)
[ "${#images[@]}" -ge 1 ] || skip "no JPEG images in $data/wasp-trap/images"

"$APIARY" run "${common[@]}" --set run_name=served > /dev/null 2> "$work/run.err" ||
    { cat "$work/run.err"; fail "the run that makes a champion failed"; }

server_pid=""
trap '[ -z "$server_pid" ] || kill -KILL "$server_pid" 2> /dev/null || true' EXIT
"$APIARY" serve "${common[@]}" --set serve.host=127.0.0.1 --set serve.port=0 \
    --set serve.max_concurrent=2 --set serve.threads=2 2> "$work/serve.log" &
server_pid=$!
port=""
for _ in $(seq 1 200); do
    port=$(sed -n 's/.*listening on 127.0.0.1 port \([0-9]*\) .*/\1/p' "$work/serve.log" | sed -n 1p)
    [ -n "$port" ] && grep -q "loaded" "$work/serve.log" && break
    kill -0 "$server_pid" 2> /dev/null || { cat "$work/serve.log"; fail "the server exited at start"; }
    sleep 0.1
done
[ -n "$port" ] || { cat "$work/serve.log"; fail "the server did not log its port"; }

python3 "$APIARY_SOURCE_DIR/tests/tools/slow_clients.py" --port "$port" --image "${images[0]}" \
    --slow 1500 --holders 4 --eager 6 --seconds 8 > "$work/load.json" 2> "$work/load.err" ||
    { cat "$work/load.json" "$work/load.err"; tail -n 20 "$work/serve.log"; fail "the server did not hold up under load"; }
cat "$work/load.json"
kill -0 "$server_pid" 2> /dev/null || fail "the server exited under load"
kill -TERM "$server_pid"
code=0
wait "$server_pid" || code=$?
server_pid=""
[ "$code" -eq 0 ] || fail "the server exited with $code after SIGTERM, expected 0"
echo "PASS"
