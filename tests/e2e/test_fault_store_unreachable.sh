#!/usr/bin/env bash
# The blob store and the registry unreachable or slow, through the command
# line. A closed port fails after the configured retries with exit code 5 and
# an error that names the endpoint. An S3 server that stalls mid-transfer
# (tests/tools/s3_fault_proxy.py in front of moto on loopback) is retried
# after store.timeout, and the transfer completes. A server that never
# replies ends with a timeout error.
source "$(dirname "$0")/common.sh"
work=$(make_work_dir fault-store)
tools="$APIARY_SOURCE_DIR/tests/tools"
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
closed_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/folder"
head -c 300000 /dev/urandom > "$work/folder/blob.bin"
store=(--set store.path_style=true --set "store.cache_dir=$work/cache" --set store.retries=2
    --set store.timeout=1)

# Run a command that must fail with exit code 5 within $1 seconds and an
# error that contains $2; its stderr goes to $work/last.err.
expect_io_failure() {
    local limit=$1 expected=$2 start=$SECONDS code=0
    shift 2
    "$@" > /dev/null 2> "$work/last.err" || code=$?
    [ "$code" -eq 5 ] || { cat "$work/last.err"; fail "$*: exit code $code, expected 5"; }
    grep -q "ERROR.*$expected" "$work/last.err" ||
        { cat "$work/last.err"; fail "the error does not say \"$expected\""; }
    [ $((SECONDS - start)) -le "$limit" ] || fail "$*: took $((SECONDS - start)) s, over $limit s"
}

# Nothing listens: S3 and MLflow. The credentials are placeholders, since
# no request reaches a server.
export AWS_ACCESS_KEY_ID=placeholder-key AWS_SECRET_ACCESS_KEY=placeholder-secret
expect_io_failure 30 "127.0.0.1 port $closed_port" \
    "$APIARY" dataset push "$work/folder" s3://bees/x "${store[@]}" \
    --set store.endpoint="http://127.0.0.1:$closed_port"
grep -q "3 attempts\|after 3" "$work/last.err" || { cat "$work/last.err"; fail "no retry count"; }
expect_io_failure 60 "http://127.0.0.1:$closed_port" \
    "$APIARY" registry list -c "$config" --set registry.uri="http://127.0.0.1:$closed_port"

set +e
"$tools/s3_server.sh" start "$work/s3" $$ bees > "$work/s3.out" 2>&1
code=$?
set -e
[ "$code" -ne 77 ] || skip "moto is not installed; run scripts/install-test-tools"
[ "$code" -eq 0 ] || { cat "$work/s3.out"; fail "the S3 server did not start"; }
trap '"$tools/s3_server.sh" stop "$work/s3" > /dev/null 2>&1 || true' EXIT
set -a
source "$work/s3/env"
set +a

# Start the fault proxy in front of moto with rules $@; sets proxy_url.
start_proxy() {
    local log="$work/proxy-$RANDOM"
    local rules=()
    for rule in "$@"; do
        rules+=(--rule "$rule")
    done
    python3 "$tools/s3_fault_proxy.py" --upstream "$AWS_ENDPOINT_URL" --stall-seconds 5 \
        "${rules[@]}" --log "$log.log" > "$log.port" 2> "$log.err" &
    for _ in $(seq 1 100); do
        [ -s "$log.port" ] && break
        sleep 0.1
    done
    [ -s "$log.port" ] || { cat "$log.err"; fail "the fault proxy did not start"; }
    proxy_url="http://127.0.0.1:$(cat "$log.port")"
    proxy_log="$log.log"
}

# One stalled upload is retried after store.timeout, and the push completes.
start_proxy "PUT:/bees/slow/blob.bin:stall:1"
"$APIARY" dataset push "$work/folder" s3://bees/slow "${store[@]}" \
    --set store.endpoint="$proxy_url" > "$work/slow.out" 2> "$work/slow.err" ||
    { cat "$work/slow.err"; fail "a push with one stalled upload failed"; }
grep -q -- "-> - stall" "$proxy_log" || fail "the proxy did not stall the upload"
[ "$(grep -c '^PUT /bees/slow/blob.bin' "$proxy_log")" -ge 2 ] || fail "the stalled upload was not retried"

# A server that stalls every request: a timeout error after the retries.
start_proxy "*:/bees:stall:100"
expect_io_failure 60 "s3://bees" \
    "$APIARY" dataset push "$work/folder" s3://bees/stalled "${store[@]}" \
    --set store.endpoint="$proxy_url"
grep -qi "too slow\|timed out" "$work/last.err" ||
    { cat "$work/last.err"; fail "the stall error does not say the server stopped answering"; }
echo "PASS"
