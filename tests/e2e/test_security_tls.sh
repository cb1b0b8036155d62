#!/usr/bin/env bash
# TLS verification of outgoing requests, against an S3 server (moto) and an
# MLflow server on loopback behind a TLS front with a self-signed test CA
# (tests/tools/tls_proxy.py): by default the certificate is rejected with a
# clear error, with store.ca_bundle (S3) or MLFLOW_TRACKING_SERVER_CERT_PATH
# (MLflow) pointing at the CA the request succeeds, and the one switch that
# turns verification off, MLFLOW_TRACKING_INSECURE_TLS=true, is logged as a
# warning instead of acting silently.
source "$(dirname "$0")/common.sh"
command -v openssl > /dev/null || skip "openssl is not installed"
work=$(make_work_dir security-tls)
tools="$APIARY_SOURCE_DIR/tests/tools"
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
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
trap '"$tools/s3_server.sh" stop "$work/s3" > /dev/null 2>&1 || true
    "$tools/mlflow_server.sh" stop "$work/mlflow" > /dev/null 2>&1 || true' EXIT
[ "$code" -ne 77 ] || skip "MLflow is not installed; run scripts/install-test-tools"
[ "$code" -eq 0 ] || { cat "$work/mlflow.out"; fail "the MLflow server did not start"; }
set -a
source "$work/s3/env"
set +a

# Start a TLS front for upstream $1 with certificates in $2; sets tls_port.
# It runs in this shell, not in a command substitution, because it exits
# with its parent process.
start_tls() {
    local log="$work/tls-$RANDOM"
    python3 "$tools/tls_proxy.py" --upstream "$1" --make-certs "$2" --log "$log.log" \
        > "$log.port" 2> "$log.err" &
    for _ in $(seq 1 100); do
        [ -s "$log.port" ] && break
        sleep 0.1
    done
    [ -s "$log.port" ] || { cat "$log.err"; fail "the TLS front did not start"; }
    tls_port=$(cat "$log.port")
}
start_tls "$AWS_ENDPOINT_URL" "$work/certs-s3"
s3_port=$tls_port
start_tls "http://127.0.0.1:$mlflow_port" "$work/certs-mlflow"
mlflow_tls_port=$tls_port
unset AWS_ENDPOINT_URL

mkdir -p "$work/folder"
echo "hello" > "$work/folder/a.txt"
push=("$APIARY" dataset push "$work/folder" s3://bees/tls --set store.path_style=true
    --set store.endpoint="https://127.0.0.1:$s3_port" --set store.cache_dir="$work/cache"
    --set store.retries=1)

# S3, default trust store: the test CA is unknown.
set +e
"${push[@]}" > "$work/s3-default.out" 2> "$work/s3-default.err"
code=$?
set -e
[ "$code" -eq 5 ] || { cat "$work/s3-default.err"; fail "S3 over untrusted TLS exited with $code, expected 5"; }
grep -qi "certificate" "$work/s3-default.err" ||
    { cat "$work/s3-default.err"; fail "the S3 TLS error does not mention the certificate"; }
grep -q "127.0.0.1:$s3_port" "$work/s3-default.err" ||
    { cat "$work/s3-default.err"; fail "the S3 TLS error does not name the endpoint"; }
grep -q "store.ca_bundle" "$work/s3-default.err" ||
    { cat "$work/s3-default.err"; fail "the S3 TLS error does not say how to trust the CA"; }

# S3 with store.ca_bundle: verified and accepted.
"${push[@]}" --set store.ca_bundle="$work/certs-s3/ca.pem" > "$work/s3-ca.out" 2> "$work/s3-ca.err" ||
    { cat "$work/s3-ca.err"; fail "S3 over TLS with store.ca_bundle failed"; }
grep -q "1 files, 1 sent" "$work/s3-ca.out" || { cat "$work/s3-ca.out"; fail "the push sent nothing"; }

# A CA that did not sign the server certificate is rejected too.
set +e
"${push[@]}" --set store.ca_bundle="$work/certs-mlflow/ca.pem" > /dev/null 2> "$work/s3-wrong.err"
code=$?
set -e
[ "$code" -eq 5 ] || fail "S3 with another CA exited with $code, expected 5"

# MLflow, default trust store.
registry=("$APIARY" registry list -c "$config" --set registry.uri="https://127.0.0.1:$mlflow_tls_port")
set +e
"${registry[@]}" > "$work/mlflow-default.out" 2> "$work/mlflow-default.err"
code=$?
set -e
[ "$code" -eq 5 ] ||
    { cat "$work/mlflow-default.err"; fail "MLflow over untrusted TLS exited with $code, expected 5"; }
grep -qi "certificate" "$work/mlflow-default.err" ||
    { cat "$work/mlflow-default.err"; fail "the MLflow TLS error does not mention the certificate"; }
grep -q "MLFLOW_TRACKING_SERVER_CERT_PATH" "$work/mlflow-default.err" ||
    { cat "$work/mlflow-default.err"; fail "the MLflow TLS error does not say how to trust the CA"; }

# MLflow with the CA file named by MLFLOW_TRACKING_SERVER_CERT_PATH. The
# server has no model yet, so a "not registered" reply shows that TLS succeeded.
reached_server() {
    grep -q "is not registered on the server" "$1" && ! grep -qi "SSL certificate problem" "$1"
}
set +e
MLFLOW_TRACKING_SERVER_CERT_PATH="$work/certs-mlflow/ca.pem" "${registry[@]}" \
    > "$work/mlflow-ca.out" 2> "$work/mlflow-ca.err"
set -e
reached_server "$work/mlflow-ca.err" || { cat "$work/mlflow-ca.err"; fail "MLflow over TLS with the CA failed"; }

# Turning verification off is possible for MLflow only, and never silent.
set +e
MLFLOW_TRACKING_INSECURE_TLS=true "${registry[@]}" > "$work/mlflow-insecure.out" \
    2> "$work/mlflow-insecure.err"
set -e
reached_server "$work/mlflow-insecure.err" ||
    { cat "$work/mlflow-insecure.err"; fail "MLflow with verification off did not reach the server"; }
grep -q "WARN.*MLFLOW_TRACKING_INSECURE_TLS" "$work/mlflow-insecure.err" ||
    { cat "$work/mlflow-insecure.err"; fail "disabled TLS verification was not logged as a warning"; }
echo "PASS"
