#!/usr/bin/env bash
# Hostile inputs through the command line and the server. apiary serve binds
# to loopback unless configured otherwise. Images whose headers claim huge
# dimensions (tests/tools/make_bomb_images.py) are rejected before decoding
# by /v1/predict, KServe v2 and apiary score, without allocating the memory
# their headers request. Manifest rows that point outside the dataset folder
# (parent folders, absolute paths) are rejected, and nothing outside is read.
source "$(dirname "$0")/common.sh"
command -v curl > /dev/null || skip "curl is not installed"
data=$(data_dir)
work=$(make_work_dir security-inputs)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
export APIARY_DATA_DIR="$data"
common=(-c "$config" --set output_dir="$work" --set registry.uri="$work/registry")
small=$(find "$data/wasp-trap" -name '*.jpg' | sort | sed -n 1p)
[ -n "$small" ] || skip "no JPEG images in $data/wasp-trap"
mkdir -p "$work/bombs"
python3 "$APIARY_SOURCE_DIR/tests/tools/make_bomb_images.py" "$work/bombs" "$small"

"$APIARY" run "${common[@]}" --set run_name=served > /dev/null 2> "$work/run.err" ||
    { cat "$work/run.err"; fail "the run that makes a champion failed"; }

# ---- The server's default address and hostile images ----
server_pid=""
trap '[ -z "$server_pid" ] || kill -KILL "$server_pid" 2> /dev/null || true' EXIT
"$APIARY" serve "${common[@]}" --set serve.port=0 2> "$work/serve.log" &
server_pid=$!
port=""
for _ in $(seq 1 300); do
    port=$(sed -n 's/.*listening on \([^ ]*\) port \([0-9]*\) .*/\2/p' "$work/serve.log" | sed -n 1p)
    [ -n "$port" ] && grep -q "loaded" "$work/serve.log" && break
    kill -0 "$server_pid" 2> /dev/null || { cat "$work/serve.log"; fail "the server exited"; }
    sleep 0.1
done
[ -n "$port" ] || { cat "$work/serve.log"; fail "the server did not log its port"; }
grep -q "listening on 127.0.0.1 port $port" "$work/serve.log" ||
    fail "the server does not listen on 127.0.0.1 by default: $(grep listening "$work/serve.log")"
# /proc/net/tcp lists listening sockets (state 0A) as hex address:port.
hex_port=$(printf '%04X' "$port")
listening=$(awk -v p=":$hex_port" '$4 == "0A" && $2 ~ p"$" {print $2}' /proc/net/tcp /proc/net/tcp6)
[ "$listening" = "0100007F:$hex_port" ] ||
    fail "port $port is bound to '$listening', expected only 0100007F (127.0.0.1)"
url="http://127.0.0.1:$port"

post() {
    curl -s -o "$work/body" -w '%{http_code}' -X POST "$@"
}
for name in bomb.png zlib_bomb.png bomb.jpg; do
    type=image/png
    [ "$name" != bomb.jpg ] || type=image/jpeg
    status=$(post -H "Content-Type: $type" --data-binary @"$work/bombs/$name" "$url/v1/predict")
    [ "$status" = 413 ] || { cat "$work/body"; fail "$name to /v1/predict got $status, expected 413"; }
    grep -q "pixels" "$work/body" || { cat "$work/body"; fail "the $name error does not name the pixel limit"; }
done
python3 - "$work/bombs/bomb.png" > "$work/kserve.json" << 'PY'
import base64, json, sys
image = base64.b64encode(open(sys.argv[1], "rb").read()).decode()
print(json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [image]}]}))
PY
status=$(post -H 'Content-Type: application/json' --data-binary @"$work/kserve.json" \
    "$url/v2/models/apiary-bees/infer")
[ "$status" = 413 ] || { cat "$work/body"; fail "a bomb through KServe v2 got $status, expected 413"; }
# A tensor whose shape claims 10^12 values with three values of data.
status=$(post -H 'Content-Type: application/json' --data-binary \
    '{"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1000000, 1000, 1000, 3], "data": [1, 2, 3]}]}' \
    "$url/v2/models/apiary-bees/infer")
[ "${status:0:1}" = 4 ] || { cat "$work/body"; fail "a huge tensor shape got $status, expected 4xx"; }
# Peak resident memory of the server: far below what any bomb requests.
peak_kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status")
[ "$peak_kib" -lt 2000000 ] || fail "the server's peak memory reached $peak_kib KiB"
status=$(curl -s -o /dev/null -w '%{http_code}' "$url/v2/health/ready")
[ "$status" = 200 ] || fail "the server is not ready after the bombs: $status"
kill -TERM "$server_pid"
wait "$server_pid" || fail "the server did not stop cleanly"
server_pid=""

# ---- Batch scoring of the same files ----
mkdir -p "$work/score-input"
cp "$work/bombs/"* "$small" "$work/score-input/"
/usr/bin/time -f '%M' -o "$work/score.kib" "$APIARY" score "${common[@]}" \
    --input "$work/score-input" --output "$work/scores" > "$work/score.out" 2> "$work/score.err" ||
    { cat "$work/score.err"; fail "scoring a folder with bombs failed"; }
predictions=$(find "$work/scores" -name predictions.jsonl)
[ -n "$predictions" ] || fail "no predictions.jsonl"
python3 - "$predictions" << 'PY' || fail "the bombs were not rejected one by one"
import json, sys
rows = {json.loads(line)["image"]: json.loads(line) for line in open(sys.argv[1])}
for name in ("bomb.png", "bomb.jpg"):
    error = rows[name]["error"] or ""
    assert "pixels" in error, f"{name}: error {error!r}"
# 25 megapixels is within the scoring limit, so it may decode (75 MB).
scored = sorted(name for name, row in rows.items() if not row["error"])
assert len(scored) in (1, 2) and "bomb.png" not in scored, f"scored {scored}"
PY
[ "$(tail -n 1 "$work/score.kib")" -lt 2000000 ] ||
    fail "scoring the bombs peaked at $(tail -n 1 "$work/score.kib") KiB"

# ---- Manifest rows that point outside the dataset folder ----
mkdir -p "$work/evil/images"
cp "$small" "$work/evil/images/a.jpg"
cp "$small" "$work/outside.jpg"
header=$(head -n 1 "$data/wasp-trap/labels.csv")
for row in "../outside.jpg" "images/../../outside.jpg" "$work/outside.jpg"; do
    python3 - "$header" "$row" > "$work/evil/labels.csv" << 'PY'
import csv, sys
columns = next(csv.reader([sys.argv[1]]))
writer = csv.writer(sys.stdout, lineterminator="\n")
writer.writerow(columns)
for name in ("images/a.jpg", sys.argv[2]):
    writer.writerow([name if c == "file" else ("g1" if c == "group" else "0") for c in columns])
PY
    set +e
    "$APIARY" train "${common[@]}" --set data.root="$work/evil" --set run_name=evil \
        > /dev/null 2> "$work/evil.err"
    code=$?
    set -e
    [ "$code" -eq 4 ] || { cat "$work/evil.err"; fail "manifest row $row: exit $code, expected 4"; }
    grep -q "labels.csv:3" "$work/evil.err" ||
        { cat "$work/evil.err"; fail "manifest row $row: the error does not name labels.csv:3"; }
    rm -rf "${work:?}/evil-run"
done
echo "PASS"
