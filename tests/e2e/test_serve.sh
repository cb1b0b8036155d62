#!/usr/bin/env bash
# apiary serve over HTTP with curl. Checks readiness before and after the
# first model, /v1/predict and KServe v2 inference, and every error case
# with its status and JSON error. Then metrics, a hot swap under a loop of
# requests that never fails, bearer tokens, the concurrency limit, and a
# SIGTERM that lets a slow request finish.
source "$(dirname "$0")/common.sh"
command -v curl > /dev/null || skip "curl is not installed"
data=$(data_dir)
work=$(make_work_dir serve)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
export APIARY_DATA_DIR="$data"
common=(--set output_dir="$work" --set registry.uri="$work/registry")
images=("$data"/wasp-trap/images/*.jpg)
[ "${#images[@]}" -ge 2 ] || skip "no JPEG images in $data/wasp-trap/images"
image="${images[0]}"
# sed, unlike head, reads all its input, so ls cannot fail with SIGPIPE under pipefail.
large_image=$(ls -S "${images[@]}" | sed -n 1p)
served=apiary-bees

server_pid=""
loop_pid=""
cleanup() {
    for pid in $loop_pid $server_pid; do
        kill -KILL "$pid" 2> /dev/null || true
    done
}
trap cleanup EXIT

# Start apiary serve on a free loopback port with log file $1 and extra
# arguments; sets server_pid and url.
start_server() {
    local log=$1
    shift
    : > "$log" # the background job below creates it only once it runs
    "$APIARY" serve -c "$config" "${common[@]}" --set serve.host=127.0.0.1 --set serve.port=0 \
        --set serve.watch_seconds=1 "$@" 2> "$log" &
    server_pid=$!
    local port=""
    for _ in $(seq 100); do
        port=$(sed -n 's/.*listening on 127.0.0.1 port \([0-9]*\) .*/\1/p' "$log" | sed -n 1p)
        [ -n "$port" ] && break
        kill -0 "$server_pid" 2> /dev/null || { cat "$log"; fail "the server exited at start"; }
        sleep 0.1
    done
    [ -n "$port" ] || { cat "$log"; fail "the server did not log its port"; }
    url="http://127.0.0.1:$port"
}

# Stop the server with SIGTERM and check that it exits with code 0.
stop_server() {
    kill -TERM "$server_pid"
    local code=0
    wait "$server_pid" || code=$?
    server_pid=""
    [ "$code" -eq 0 ] || fail "the server exited with $code after SIGTERM, expected 0"
}

# call METHOD PATH [CURL ARGS...]: the response goes to $work/body and its
# headers to $work/headers; sets status.
call() {
    local method=$1 path=$2
    shift 2
    status=$(curl -s -o "$work/body" -D "$work/headers" -w '%{http_code}' -X "$method" "$@" \
        "$url$path")
}

# json EXPRESSION: evaluate a Python expression over the last body, bound to b.
json() {
    python3 -c 'import json, sys; b = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
        "$work/body" "$1"
}

# expect STATUS WHAT: the last call got STATUS; an error status carries a
# JSON {"error": message}.
expect() {
    local expected=$1 what=$2
    [ "$status" = "$expected" ] ||
        fail "$what: status $status, expected $expected: $(cat "$work/body")"
    if [ "$expected" -ge 400 ]; then
        [ "$(json 'type(b["error"]).__name__')" = "str" ] ||
            fail "$what: the $status response has no JSON error message: $(cat "$work/body")"
    fi
}

header() {
    tr -d '\r' < "$work/headers" | sed -n "s/^$1: //Ip" | sed -n 1p
}

# Wait up to $2 seconds until GET $1 returns 200.
wait_ready() {
    for _ in $(seq $(($2 * 10))); do
        call GET "$1"
        [ "$status" = 200 ] && return 0
        sleep 0.1
    done
    fail "GET $1 still answers $status after $2 s"
}

# ---- Before any model: live, not ready ----
start_server "$work/serve.log"
call GET /v2/health/live
expect 200 "liveness before a model"
call GET /v2/health/ready
expect 503 "readiness before a model"
[ -n "$(header Retry-After)" ] || fail "a 503 has no Retry-After header"
call POST /v1/predict -H 'Content-Type: image/jpeg' --data-binary @"$image"
expect 503 "prediction before a model"
call GET "/v2/models/$served/ready"
expect 503 "model readiness before a model"

# ---- The first champion makes the server ready ----
# Whether the tiny CI model passes the gate does not matter here, so a
# failed gate (exit code 3) is overridden.
set +e
"$APIARY" run -c "$config" "${common[@]}" --set run_name=first > "$work/first.out" \
    2> "$work/first.err"
code=$?
set -e
[ "$code" -eq 0 ] || [ "$code" -eq 3 ] ||
    { cat "$work/first.err"; fail "training the first model exited with $code"; }
"$APIARY" promote -c "$config" "${common[@]}" --set run_name=first --force \
    --reason "serve test model" > /dev/null 2> "$work/promote_first.err" ||
    { cat "$work/promote_first.err"; fail "promoting the first model failed"; }
wait_ready /v2/health/ready 15
grep -q "loaded model $served version 1" "$work/serve.log" || fail "the model load is not logged"

# ---- /v1/predict ----
call POST /v1/predict -H 'Content-Type: image/jpeg' --data-binary @"$image"
expect 200 "one JPEG"
[ "$(json 'b["model"]["name"]')" = "$served" ] || fail "model.name is not $served"
[ "$(json 'b["model"]["version"]')" = 1 ] || fail "model.version is not 1"
[ "$(json 'len(b["model"]["sha256"])')" = 64 ] || fail "model.sha256 is not 64 hex digits"
[ "$(json 'len(b["predictions"])')" = 1 ] || fail "one image gave no single prediction"
[ "$(json 'sorted(b["predictions"][0]["labels"])')" = \
    "['asian_hornet', 'bee', 'hornet', 'wasp']" ] || fail "the labels are not the model's"
[ "$(json 'all(0 <= v["probability"] <= 1 and type(v["decision"]) is bool
    for v in b["predictions"][0]["labels"].values())')" = True ] ||
    fail "a label has no probability in [0, 1] or no boolean decision"
[ "$(json 'b["predictions"][0]["file"]')" = None ] || fail "a body image has a file name"

call POST /v1/predict -F "file=@$image;filename=first.jpg" \
    -F "file=@${images[1]};filename=second.jpg"
expect 200 "two images as multipart/form-data"
[ "$(json '[p["file"] for p in b["predictions"]]')" = "['first.jpg', 'second.jpg']" ] ||
    fail "the multipart predictions do not name the files in order"

# ---- KServe v2 ----
call GET "/v2/models/$served"
expect 200 "model metadata"
[ "$(json 'b["versions"]')" = "['1']" ] || fail "metadata versions are not ['1']"
[ "$(json '[(t["name"], t["datatype"], t["shape"]) for t in b["inputs"]]')" = \
    "[('image', 'BYTES', [-1]), ('pixels', 'UINT8', [-1, 48, 48, 3])]" ] ||
    fail "metadata inputs: $(json 'b["inputs"]')"
[ "$(json '[(t["name"], t["datatype"], t["shape"]) for t in b["outputs"]]')" = \
    "[('probabilities', 'FP32', [-1, 4]), ('decisions', 'BOOL', [-1, 4])]" ] ||
    fail "metadata outputs: $(json 'b["outputs"]')"
call GET "/v2/models/$served/ready"
expect 200 "model readiness"
call GET "/v2/models/$served/versions/1/ready"
expect 200 "readiness of the loaded version"

python3 - "$image" "${images[1]}" > "$work/infer_bytes.json" << 'EOF'
import base64, json, sys
files = [base64.b64encode(open(path, "rb").read()).decode() for path in sys.argv[1:]]
print(json.dumps({"id": "request-7", "inputs": [
    {"name": "image", "shape": [len(files)], "datatype": "BYTES", "data": files}]}))
EOF
call POST "/v2/models/$served/infer" -H 'Content-Type: application/json' \
    --data-binary @"$work/infer_bytes.json"
expect 200 "v2 inference on encoded images"
[ "$(json 'b["id"]')" = request-7 ] || fail "the request id is not echoed"
[ "$(json 'b["model_version"]')" = 1 ] || fail "model_version is not 1"
[ "$(json '[(o["name"], o["datatype"], o["shape"], len(o["data"])) for o in b["outputs"]]')" = \
    "[('probabilities', 'FP32', [2, 4], 8), ('decisions', 'BOOL', [2, 4], 8)]" ] ||
    fail "v2 outputs: $(cat "$work/body")"

python3 - > "$work/infer_pixels.json" << 'EOF'
import json
pixels = [[[[(x + y * 3 + c * 7) % 256 for c in range(3)] for x in range(48)] for y in range(48)]]
print(json.dumps({"inputs": [{"name": "pixels", "shape": [1, 48, 48, 3], "datatype": "UINT8",
                              "data": pixels}],
                  "outputs": [{"name": "probabilities"}]}))
EOF
call POST "/v2/models/$served/versions/1/infer" -H 'Content-Type: application/json' \
    --data-binary @"$work/infer_pixels.json"
expect 200 "v2 inference on a nested UINT8 tensor"
[ "$(json '[o["name"] for o in b["outputs"]]')" = "['probabilities']" ] ||
    fail "asking for probabilities returned $(json '[o["name"] for o in b["outputs"]]')"

# ---- Errors ----
call POST /v1/predict -H 'Content-Type: image/jpeg' --data-binary ''
expect 400 "an empty body"
call POST /v1/predict -H 'Content-Type: text/plain' --data-binary @"$image"
expect 415 "a text/plain body"
head -c 2000 "$image" > "$work/truncated.jpg"
call POST /v1/predict -H 'Content-Type: image/jpeg' --data-binary @"$work/truncated.jpg"
expect 422 "a truncated JPEG"
printf 'this is not an image' > "$work/corrupt.png"
call POST /v1/predict -H 'Content-Type: image/png' --data-binary @"$work/corrupt.png"
expect 422 "a corrupt PNG"
python3 - "$work/huge.png" << 'EOF'
import struct, sys, zlib
def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
with open(sys.argv[1], "wb") as out:
    out.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) +
              chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
EOF
call POST /v1/predict -H 'Content-Type: image/png' --data-binary @"$work/huge.png"
expect 413 "a 60000x60000 PNG header"
grep -q "serve.max_image_pixels" "$work/body" || fail "the pixel limit error does not name its key"
call POST /v1/predict -F "note=hello"
expect 400 "a multipart field that is not a file"
call POST /v1/predict -H 'Content-Type: multipart/form-data; boundary=XyZ' \
    --data-binary $'--XyZ\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\nabc'
expect 400 "a multipart body without its closing boundary"
call GET "/v2/models/other"
expect 404 "metadata of an unknown model"
json_type=(-H 'Content-Type: application/json')
call POST "/v2/models/other/infer" "${json_type[@]}" --data-binary @"$work/infer_bytes.json"
expect 404 "inference on an unknown model"
call GET "/v2/models/$served/versions/9"
expect 404 "a version that is not loaded"
infer="/v2/models/$served/infer"
call POST "$infer" "${json_type[@]}" --data-binary '{"inputs": ['
expect 400 "malformed JSON"

# tensor NAME SHAPE DATATYPE DATA: an inference request with one input.
tensor() {
    printf '{"inputs": [{"name": "%s", "shape": %s, "datatype": "%s", "data": %s}]}' "$@"
}
call POST "$infer" "${json_type[@]}" --data-binary "$(tensor pixels '[1, 48, 48, 3]' FP32 '[0]')"
expect 400 "a FP32 tensor"
grep -q "UINT8" "$work/body" || fail "the datatype error does not name UINT8"
call POST "$infer" "${json_type[@]}" --data-binary "$(tensor pixels '[1, 32, 32, 3]' UINT8 '[0]')"
expect 400 "a tensor of the wrong shape"
call POST "$infer" "${json_type[@]}" \
    --data-binary "$(tensor pixels '[1, 48, 48, 3]' UINT8 '[1, 2, 3]')"
expect 400 "tensor data shorter than its shape"
call POST "$infer" "${json_type[@]}" --data-binary "$(tensor image '[1]' BYTES '["@@@"]')"
expect 400 "invalid base64"
call POST "$infer" "${json_type[@]}" --data-binary "$(tensor image '[1]' BYTES '["aGVsbG8="]')"
expect 422 "base64 of bytes that are not an image"
call POST "/v2/models/$served/infer" -H 'Content-Type: text/plain' --data-binary '{}'
expect 415 "inference with a text/plain body"
call GET /no/such/path
expect 404 "an unknown route"
call DELETE /v1/predict
expect 405 "DELETE on /v1/predict"
[ "$(header Allow)" = POST ] || fail "a 405 has Allow \"$(header Allow)\", expected POST"
call POST /metrics
expect 405 "POST on /metrics"

# ---- Metrics ----
call GET /metrics
expect 200 "metrics"
for line in 'apiary_http_requests_total{endpoint="/v1/predict",code="200"} 2' \
    'apiary_http_requests_total{endpoint="/v1/predict",code="415"} 1' \
    'apiary_http_requests_total{endpoint="unmatched",code="404"} 1' \
    'apiary_images_scored_total{label="wasp",decision="' \
    'apiary_http_request_duration_seconds_bucket{endpoint="/v1/predict",le="+Inf"} ' \
    'apiary_model_info{name="apiary-bees",version="1",sha256="' \
    'apiary_http_requests_in_flight 1' \
    'apiary_inference_batch_images_count '; do
    grep -qF "$line" "$work/body" || fail "the metrics lack \"$line\""
done

# ---- Hot swap under load: no request fails, the version moves to 2 ----
rm -f "$work/loop.stop"
(
    while [ ! -e "$work/loop.stop" ]; do
        curl -s -o "$work/loop.body" -w '%{http_code} ' -X POST -H 'Content-Type: image/jpeg' \
            --data-binary @"$image" "$url/v1/predict" || echo -n "curl-failed "
        sed -n 's/^{"model":{"name":"[^"]*","version":"\([0-9]*\)".*/\1/p' "$work/loop.body" |
            grep . || echo "no-version"
    done
) > "$work/loop.log" &
loop_pid=$!
set +e
"$APIARY" run -c "$config" "${common[@]}" --set run_name=second --set seed=7 \
    --set 'gate.rules=wasp.recall.lower >= 0.999' > "$work/second.out" 2> "$work/second.err"
code=$?
set -e
[ "$code" -eq 3 ] ||
    { cat "$work/second.err"; fail "the second model exited with $code, expected 3"; }
"$APIARY" promote -c "$config" "${common[@]}" --set run_name=second --set seed=7 --force \
    --reason "serve hot swap test" > /dev/null 2> "$work/promote.err" ||
    { cat "$work/promote.err"; fail "the forced promotion failed"; }
for _ in $(seq 150); do
    grep -q "^200 2$" "$work/loop.log" && break
    sleep 0.1
done
sleep 0.5
touch "$work/loop.stop"
wait "$loop_pid"
loop_pid=""
grep -q "^200 2$" "$work/loop.log" || fail "no response came from version 2 after the swap"
grep -q "^200 1$" "$work/loop.log" || fail "no response came from version 1 before the swap"
bad=$(grep -cv '^200 [12]$' "$work/loop.log" || true)
[ "$bad" -eq 0 ] ||
    fail "$bad requests failed during the swap, first: $(grep -v '^200 [12]$' "$work/loop.log" |
        sed -n 1p)"
versions=$(cut -d' ' -f2 "$work/loop.log" | tr -d '\n')
[[ "$versions" =~ ^1+2+$ ]] ||
    fail "the versions that responded, in order, were $versions; expected 1s, then 2s"
echo "hot swap: $(wc -l < "$work/loop.log") requests, none failed"
grep -q "swapped model $served from version 1 to version 2" "$work/serve.log" ||
    fail "the swap is not logged"
grep -q "model $served version 1 unloaded" "$work/serve.log" || fail "version 1 was not freed"
call GET /metrics
grep -qF 'apiary_model_info{name="apiary-bees",version="2",' "$work/body" ||
    fail "the metrics do not show version 2"

# ---- SIGTERM: a slow request in flight still completes ----
curl -s -o "$work/slow.body" -w '%{http_code}' --limit-rate 40k -X POST \
    -H 'Content-Type: image/jpeg' --data-binary @"$large_image" "$url/v1/predict" \
    > "$work/slow.status" &
slow_pid=$!
sleep 1
stop_server
wait "$slow_pid" || fail "the slow request failed during shutdown"
[ "$(cat "$work/slow.status")" = 200 ] || fail "the slow request got $(cat "$work/slow.status")"
grep -q '"predictions"' "$work/slow.body" || fail "the slow request got no predictions"
grep -q "received SIGTERM" "$work/serve.log" || fail "the stop signal is not logged"
grep -q "serve: stopped" "$work/serve.log" || fail "the stop is not logged"

# ---- Bearer token and the concurrency limit ----
set +e
"$APIARY" serve -c "$config" "${common[@]}" --set serve.port=0 \
    --set serve.auth_token_env=APIARY_TEST_UNSET_TOKEN > /dev/null 2> "$work/unset.log"
code=$?
set -e
[ "$code" -eq 2 ] || fail "a missing token variable exited with $code, expected 2"
grep -q "APIARY_TEST_UNSET_TOKEN" "$work/unset.log" || fail "the missing variable is not named"

export APIARY_TEST_TOKEN="token-$RANDOM-$RANDOM"
start_server "$work/serve_auth.log" --set serve.auth_token_env=APIARY_TEST_TOKEN \
    --set serve.max_concurrent=1 --set serve.max_body_bytes=1000000 --set serve.max_images=2
auth=(-H "Authorization: Bearer $APIARY_TEST_TOKEN")
wait_ready /v2/health/ready 15
call POST /v1/predict -H 'Content-Type: image/jpeg' --data-binary @"$image"
expect 401 "a prediction without a token"
[ -n "$(header WWW-Authenticate)" ] || fail "a 401 has no WWW-Authenticate header"
call POST /v1/predict -H 'Authorization: Bearer wrong' -H 'Content-Type: image/jpeg' \
    --data-binary @"$image"
expect 401 "a prediction with a wrong token"
call GET /metrics
expect 401 "metrics without a token"
call GET /v2/health/live
expect 200 "liveness without a token"
call POST /v1/predict "${auth[@]}" -H 'Content-Type: image/jpeg' --data-binary @"$image"
expect 200 "a prediction with the token"
head -c 1500000 /dev/urandom > "$work/large.bin"
call POST /v1/predict "${auth[@]}" -H 'Content-Type: image/jpeg' --data-binary @"$work/large.bin"
expect 413 "a body over serve.max_body_bytes"
call POST /v1/predict "${auth[@]}" -F "file=@$image" -F "file=@$image" -F "file=@$image"
expect 413 "three images over serve.max_images=2"

curl -s -o /dev/null -w '%{http_code}' --limit-rate 40k -X POST "${auth[@]}" \
    -H 'Content-Type: image/jpeg' --data-binary @"$large_image" "$url/v1/predict" \
    > "$work/busy.status" &
busy_pid=$!
sleep 1
call POST /v1/predict "${auth[@]}" -H 'Content-Type: image/jpeg' --data-binary @"$image"
expect 503 "a prediction beyond serve.max_concurrent=1"
[ "$(header Retry-After)" = 1 ] || fail "the busy 503 has Retry-After \"$(header Retry-After)\""
call GET /v2/health/ready
expect 200 "readiness while the server is busy"
wait "$busy_pid"
[ "$(cat "$work/busy.status")" = 200 ] ||
    fail "the request that took the slot got $(cat "$work/busy.status")"
stop_server
echo "PASS"
