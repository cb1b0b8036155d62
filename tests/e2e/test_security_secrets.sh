#!/usr/bin/env bash
# Secrets never reach outputs. The main job runs at log_level debug with its
# data and run folder in S3 (moto on loopback, temporary credentials with a
# session token) and MLflow as the registry (bearer token). Then the
# registry is read with a user name and password, a request with a rejected
# token fails, and apiary serve runs with a bearer token. Every output is
# searched for each secret: stdout and stderr of every command, the store
# and MLflow caches, the run folder as stored in S3, and the MLflow server's
# artifacts and database.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir security-secrets)
tools="$APIARY_SOURCE_DIR/tests/tools"
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
venv="${APIARY_TEST_VENV:-$APIARY_SOURCE_DIR/.venv-test}"
export APIARY_DATA_DIR="$data"
export APIARY_MLFLOW_CACHE="$work/mlflow-cache"

set +e
"$tools/s3_server.sh" start "$work/s3" $$ bees > "$work/s3.out" 2>&1
code=$?
set -e
[ "$code" -ne 77 ] || skip "moto is not installed; run scripts/install-test-tools"
[ "$code" -eq 0 ] || { cat "$work/s3.out"; fail "the S3 server did not start"; }
mlflow_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
set +e
"$tools/mlflow_server.sh" start "$work/mlflow" "$mlflow_port" $$ > "$work/mlflow.out" 2>&1
code=$?
set -e
server_pid=""
trap '[ -z "$server_pid" ] || kill -KILL "$server_pid" 2> /dev/null || true
    "$tools/s3_server.sh" stop "$work/s3" > /dev/null 2>&1 || true
    "$tools/mlflow_server.sh" stop "$work/mlflow" > /dev/null 2>&1 || true' EXIT
[ "$code" -ne 77 ] || skip "MLflow is not installed; run scripts/install-test-tools"
[ "$code" -eq 0 ] || { cat "$work/mlflow.out"; fail "the MLflow server did not start"; }

# Temporary credentials: the secret key and the session token are secrets.
set -a
source "$work/s3/env"
set +a
export AWS_ACCESS_KEY_ID="$SESSION_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$SESSION_SECRET_ACCESS_KEY"
export AWS_SESSION_TOKEN="$SESSION_TOKEN"
export MLFLOW_TRACKING_TOKEN="mlflow-token-$RANDOM$RANDOM-secret"
password="hive-password-$RANDOM$RANDOM"
serve_token="serve-token-$RANDOM$RANDOM"
secrets=("$AWS_SECRET_ACCESS_KEY" "$AWS_SESSION_TOKEN" "$MLFLOW_TRACKING_TOKEN" "$password"
    "$serve_token")
for secret in "${secrets[@]}"; do
    [ "${#secret}" -ge 12 ] || fail "secret '$secret' is too short to search for"
done

outputs="$work/outputs"
mkdir -p "$outputs"
registry_uri="http://127.0.0.1:$mlflow_port"
common=(-c "$config" --set log_level=debug --set store.path_style=true
    --set "store.cache_dir=$work/store-cache" --set data.root=s3://bees/datasets/wasp-trap
    --set output_dir=s3://bees/runs --set registry.uri="$registry_uri"
    --set "gate.rules=wasp.recall >= 0")

"$APIARY" dataset push "$data/wasp-trap" s3://bees/datasets/wasp-trap "${common[@]}" \
    > "$outputs/push.out" 2> "$outputs/push.err" || { cat "$outputs/push.err"; fail "push failed"; }
"$APIARY" run "${common[@]}" --set run_name=secret > "$outputs/run.out" 2> "$outputs/run.err" ||
    { tail -n 30 "$outputs/run.err"; fail "the run failed"; }
grep -q "version 1 is champion" "$outputs/run.out" || fail "the run did not promote"
grep -q "DEBUG" "$outputs/run.err" || fail "log_level debug printed no debug lines"

# Basic auth: the password takes the token's place.
MLFLOW_TRACKING_TOKEN="" MLFLOW_TRACKING_USERNAME=bee MLFLOW_TRACKING_PASSWORD="$password" \
    "$APIARY" registry list "${common[@]}" > "$outputs/list.out" 2> "$outputs/list.err" ||
    { cat "$outputs/list.err"; fail "registry list with a password failed"; }

# Rejected credentials: the error messages must not echo them.
coproc proxy { exec python3 "$tools/fault_proxy.py" --upstream "$registry_uri" \
    --expect-auth "Bearer another-token" --lifetime 300; }
read -r proxy_port <&"${proxy[0]}"
set +e
"$APIARY" registry list "${common[@]}" --set registry.uri="http://127.0.0.1:$proxy_port" \
    > "$outputs/rejected.out" 2> "$outputs/rejected.err"
code=$?
MLFLOW_TRACKING_TOKEN="" MLFLOW_TRACKING_USERNAME=bee MLFLOW_TRACKING_PASSWORD="$password" \
    "$APIARY" registry list "${common[@]}" --set registry.uri="http://127.0.0.1:$proxy_port" \
    > "$outputs/rejected-basic.out" 2> "$outputs/rejected-basic.err"
code_basic=$?
AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY}x" "$APIARY" dataset push "$data/wasp-trap" \
    s3://bees/denied "${common[@]}" > "$outputs/denied.out" 2> "$outputs/denied.err"
code_denied=$?
set -e
[ "$code" -ne 0 ] || fail "a rejected MLflow token succeeded"
[ "$code_basic" -ne 0 ] || fail "a rejected MLflow password succeeded"
[ "$code_denied" -ne 0 ] || fail "a wrong S3 secret succeeded"
grep -q "HTTP 401" "$outputs/rejected.err" || { cat "$outputs/rejected.err"; fail "no 401 error"; }

# apiary serve with a bearer token, requested with the right token and a wrong one.
export APIARY_SERVE_TOKEN="$serve_token"
"$APIARY" serve "${common[@]}" --set serve.port=0 --set serve.auth_token_env=APIARY_SERVE_TOKEN \
    2> "$outputs/serve.err" &
server_pid=$!
url=""
for _ in $(seq 1 300); do
    port=$(sed -n 's/.*listening on 127.0.0.1 port \([0-9]*\) .*/\1/p' "$outputs/serve.err" | sed -n 1p)
    [ -n "$port" ] && url="http://127.0.0.1:$port" &&
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/v2/health/ready")" = 200 ] && break
    kill -0 "$server_pid" 2> /dev/null || { cat "$outputs/serve.err"; fail "the server exited"; }
    sleep 0.1
done
image=$(find "$data/wasp-trap" -name '*.jpg' | sort | sed -n 1p)
status=$(curl -s -o "$outputs/predict.body" -w '%{http_code}' -H "Authorization: Bearer $serve_token" \
    -H 'Content-Type: image/jpeg' --data-binary @"$image" "$url/v1/predict")
[ "$status" = 200 ] || fail "a prediction with the token got $status"
status=$(curl -s -o "$outputs/denied.body" -w '%{http_code}' \
    -H "Authorization: Bearer ${serve_token}x" "$url/metrics")
[ "$status" = 401 ] || fail "a wrong serve token got $status"
kill -TERM "$server_pid"
wait "$server_pid" || fail "the server did not stop cleanly"
server_pid=""

# The run folder and every other object as stored in S3.
"$venv/bin/python" - "$AWS_ENDPOINT_URL" "$outputs/bucket" << 'PY' || fail "cannot read the bucket"
import os, sys
import boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bees", Prefix="runs/"):
    for item in page.get("Contents", []):
        target = os.path.join(sys.argv[2], item["Key"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        s3.download_file("bees", item["Key"], target)
PY
[ -f "$outputs/bucket/runs/secret/model_card.json" ] || fail "the run folder is not in the bucket"

searched=("$outputs" "$work/store-cache" "$work/mlflow-cache" "$work/mlflow/artifacts"
    "$work/mlflow/mlflow.db")
files=$(find "${searched[@]}" -type f | wc -l)
[ "$files" -ge 30 ] || fail "only $files files to search; the outputs are missing"
for secret in "${secrets[@]}"; do
    found=$(grep -rlaF -- "$secret" "${searched[@]}" || true)
    [ -z "$found" ] || fail "a secret (${secret:0:4}...) is in: $found"
done
echo "searched $files files for ${#secrets[@]} secrets"
echo "PASS"
