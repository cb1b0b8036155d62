#!/usr/bin/env bash
# Promotion to an MLflow server behind fault-injecting proxies on loopback.
# Artifact uploads that fail mid-way (HTTP 500 or a dropped connection) end
# the promotion with exit code 5 and an error that names the request. Then
# champion stays on the complete version, and no half-registered version
# appears. Transient errors are retried, and the promotion succeeds.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir fault-mlflow)
tools="$APIARY_SOURCE_DIR/tests/tools"
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
export APIARY_DATA_DIR="$data"
export APIARY_MLFLOW_CACHE="$work/cache"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
set +e
"$tools/mlflow_server.sh" start "$work/mlflow" "$port" $$ > "$work/server.out" 2>&1
code=$?
set -e
[ "$code" -ne 77 ] || skip "MLflow is not installed; run scripts/install-test-tools"
[ "$code" -eq 0 ] || { cat "$work/server.out"; fail "the MLflow server did not start"; }
trap '"$tools/mlflow_server.sh" stop "$work/mlflow" > /dev/null 2>&1 || true' EXIT
direct="http://127.0.0.1:$port"

# Start proxy script $1 in front of the server with the remaining arguments
# as rules; sets proxy_url. The proxy exits with this shell.
start_proxy() {
    local script=$1 log="$work/proxy-$RANDOM.log"
    shift
    local rules=()
    for rule in "$@"; do
        rules+=(--rule "$rule")
    done
    python3 "$tools/$script" --upstream "$direct" "${rules[@]}" --log "$log" \
        > "$log.port" 2> "$log.err" &
    for _ in $(seq 1 100); do
        [ -s "$log.port" ] && break
        sleep 0.1
    done
    [ -s "$log.port" ] || { cat "$log.err"; fail "the fault proxy did not start"; }
    proxy_url="http://127.0.0.1:$(cat "$log.port")"
    proxy_log=$log
}

settings=(-c "$config" --set output_dir="$work")
champion() {
    "$APIARY" registry show champion "${settings[@]}" --set registry.uri="$direct" 2> /dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])'
}
versions() {
    "$APIARY" registry list "${settings[@]}" --set registry.uri="$direct" | grep -c '^[0-9]' || true
}

"$APIARY" run "${settings[@]}" --set registry.uri="$direct" --set run_name=first \
    > /dev/null 2> "$work/first.err" || { cat "$work/first.err"; fail "the first run failed"; }
[ "$(champion)" = 1 ] || fail "version 1 did not become champion"
"$APIARY" train "${settings[@]}" --set run_name=second --set seed=9 > /dev/null 2>&1 ||
    fail "training the second model failed"

# Promote the second model through a proxy with rule $2, expecting failure
# with an error that contains $3.
expect_failed_promotion() {
    local script=$1 rule=$2 expected=$3
    start_proxy "$script" "$rule"
    set +e
    "$APIARY" promote "${settings[@]}" --set registry.uri="$proxy_url" --set run_name=second \
        --set seed=9 --force --reason "fault test" > /dev/null 2> "$work/promote.err"
    local code=$?
    set -e
    [ "$code" -eq 5 ] || { cat "$work/promote.err"; fail "$rule: exit code $code, expected 5"; }
    grep -q "ERROR.*$expected" "$work/promote.err" ||
        { cat "$work/promote.err"; fail "$rule: the error does not say \"$expected\""; }
    [ "$(champion)" = 1 ] || fail "$rule: champion moved to $(champion)"
    [ "$(versions)" -eq 1 ] || fail "$rule: a half-registered version is listed"
}

"$APIARY" validate "${settings[@]}" --set registry.uri="$direct" --set run_name=second \
    --set seed=9 > /dev/null 2>&1 || true
# The first artifact uploads, and every later upload fails.
expect_failed_promotion fault_proxy.py "PUT:mlflow-artifacts:fail:1000:1" \
    "PUT /api/2.0/mlflow-artifacts/artifacts/.*HTTP 500"
# The connection closes without a reply after the first upload.
expect_failed_promotion s3_fault_proxy.py "PUT:mlflow-artifacts:drop:1000:1" \
    "PUT /api/2.0/mlflow-artifacts/artifacts/"

# Two failed uploads are retried, and the promotion then completes.
start_proxy fault_proxy.py "PUT:mlflow-artifacts:fail:2"
"$APIARY" promote "${settings[@]}" --set registry.uri="$proxy_url" --set run_name=second \
    --set seed=9 --force --reason "fault test" > /dev/null 2> "$work/retried.err" ||
    { cat "$work/retried.err"; fail "the promotion with transient upload errors failed"; }
[ "$(grep -c -- '-> 500 fail' "$proxy_log")" -eq 2 ] || fail "the proxy did not fail two uploads"
[ "$(champion)" = 2 ] || fail "version 2 did not become champion after the retries"
[ "$(versions)" -eq 2 ] || fail "the retried promotion did not register exactly one version"

# Champion's artifacts are whole: the served weights hash to the trained ones.
python3 - "$port" "$work/second/model.safetensors" << 'PY' || fail "champion's weights differ"
import hashlib, json, sys, urllib.parse, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
query = urllib.parse.urlencode({"name": "apiary-bees", "alias": "champion"})
version = json.load(urllib.request.urlopen(
    f"{base}/api/2.0/mlflow/registered-models/alias?{query}"))["model_version"]
source = version["source"]
assert source.startswith("mlflow-artifacts:/"), source
path = source[len("mlflow-artifacts:/"):].lstrip("/")
url = f"{base}/api/2.0/mlflow-artifacts/artifacts/{path}/model.safetensors"
served = hashlib.sha256(urllib.request.urlopen(url).read()).hexdigest()
trained = hashlib.sha256(open(sys.argv[2], "rb").read()).hexdigest()
assert served == trained, (served, trained)
PY
echo "PASS"
