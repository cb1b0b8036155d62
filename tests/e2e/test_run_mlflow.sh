#!/usr/bin/env bash
# The main job against a real MLflow tracking server on loopback: a passing
# model is registered with its artifacts and becomes champion, a failing one
# exits with code 3 and leaves champion where it was.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir run-mlflow)
server="$APIARY_SOURCE_DIR/tests/tools/mlflow_server.sh"
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
export APIARY_DATA_DIR="$data"
export APIARY_MLFLOW_CACHE="$work/cache"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
set +e
"$server" start "$work/mlflow" "$port" $$ > "$work/server.out" 2>&1
code=$?
set -e
[ "$code" -ne 77 ] || skip "MLflow is not installed; run scripts/install-test-tools"
[ "$code" -eq 0 ] || { cat "$work/server.out"; fail "the MLflow server did not start"; }
trap '"$server" stop "$work/mlflow" > /dev/null 2>&1 || true' EXIT

common=(-c "$config" --set output_dir="$work" --set registry.uri="http://127.0.0.1:$port")
champion() {
    "$APIARY" registry show champion "${common[@]}" 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])'
}

"$APIARY" run "${common[@]}" --set run_name=good > "$work/good.out" 2> "$work/good.err" ||
    { cat "$work/good.err"; fail "the run against MLflow failed"; }
grep -q "version 1 is champion" "$work/good.out" || fail "version 1 did not become champion"
[ "$(champion)" = 1 ] || fail "champion does not resolve to version 1"

set +e
"$APIARY" run "${common[@]}" --set run_name=bad --set seed=7 \
    --set 'gate.rules=wasp.recall.lower >= 0.999' > "$work/bad.out" 2> "$work/bad.err"
code=$?
set -e
[ "$code" -eq 3 ] || { cat "$work/bad.err"; fail "a failing model exited with $code, expected 3"; }
[ "$(champion)" = 1 ] || fail "a failing model moved champion"
"$APIARY" registry list "${common[@]}" > "$work/list.out"
[ "$(grep -c '^[0-9]' "$work/list.out")" -eq 1 ] || fail "a failing model was registered"

# The run on the server carries per-label metrics and the weights hash.
python3 - "$port" "$work/good/model.safetensors" <<'PY' || fail "the MLflow run lacks metrics"
import hashlib, json, sys, urllib.parse, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}/api/2.0/mlflow"
query = urllib.parse.urlencode({"name": "apiary-bees", "alias": "champion"})
version = json.load(urllib.request.urlopen(f"{base}/registered-models/alias?{query}"))
version = version["model_version"]
run = json.load(urllib.request.urlopen(f"{base}/runs/get?run_id={version['run_id']}"))["run"]
metrics = {m["key"] for m in run["data"].get("metrics", [])}
assert "wasp/recall" in metrics, sorted(metrics)
weights = hashlib.sha256(open(sys.argv[2], "rb").read()).hexdigest()
tags = json.dumps(version.get("tags", []))
assert weights in tags, "the weights hash is not among the version tags"
PY
echo "PASS"
