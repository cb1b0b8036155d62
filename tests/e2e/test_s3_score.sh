#!/usr/bin/env bash
# Scoring and the standalone stages with data and outputs in S3 (moto on
# loopback, checking signatures, behind a proxy that logs every request).
# `apiary run` trains from S3 and writes its run folder back. `apiary score`
# reads images from a prefix, a manifest and a listing in S3 and uploads its
# results, and a rerun downloads no unchanged image and uploads no unchanged
# file. train, validate and promote run alone with the run folder in S3. A
# failed upload leaves no object behind and reports that, and a registry in
# S3 is rejected with a message that names the key.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir s3-score)
tools="$APIARY_SOURCE_DIR/tests/tools"
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
venv="${APIARY_TEST_VENV:-$APIARY_SOURCE_DIR/.venv-test}"

set +e
"$tools/s3_server.sh" start "$work/server" $$ bees > "$work/server.out" 2>&1
code=$?
set -e
[ "$code" -ne 77 ] || skip "moto is not installed; run scripts/install-test-tools"
[ "$code" -eq 0 ] || { cat "$work/server.out"; fail "the S3 server did not start"; }
trap '"$tools/s3_server.sh" stop "$work/server" > /dev/null 2>&1 || true' EXIT
set -a
source "$work/server/env"
set +a
upstream="$AWS_ENDPOINT_URL"

# Every request goes through a logging proxy, so the test counts them.
coproc proxy { exec python3 "$tools/s3_fault_proxy.py" --upstream "$upstream" \
    --log "$work/requests.log" --lifetime 1100; }
read -r port <&"${proxy[0]}"
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"

# Read an object straight from the server: s3get KEY (prints the body), and
# s3count PREFIX (prints the number of objects and of unfinished multipart
# uploads below PREFIX).
s3get() {
    AWS_ENDPOINT_URL="$upstream" "$venv/bin/python" -c '
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
sys.stdout.write(s3.get_object(Bucket="bees", Key=sys.argv[1])["Body"].read().decode())' "$1"
}
s3count() {
    AWS_ENDPOINT_URL="$upstream" "$venv/bin/python" -c '
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
objects = s3.list_objects_v2(Bucket="bees", Prefix=sys.argv[1]).get("KeyCount", 0)
uploads = len(s3.list_multipart_uploads(Bucket="bees", Prefix=sys.argv[1]).get("Uploads", []))
print(objects, uploads)' "$1"
}
count_lines() {
    grep -c "$1" "$2" || true
}

store=(--set store.path_style=true --set "store.cache_dir=$work/cache")
"$APIARY" dataset push "$data/wasp-trap" s3://bees/datasets/wasp-trap "${store[@]}" \
    > "$work/push.out" 2> "$work/push.err" || { cat "$work/push.err"; fail "dataset push failed"; }

# The images to score: raspbee samples, a listing of three of them and one
# missing image, and a file that is not an image.
mkdir -p "$work/inbox"
cp -r "$data/raspbee-samples/images" "$work/inbox/hive-1"
chmod -R u+w "$work/inbox"
echo "notes" > "$work/inbox/hive-1/readme.txt"
images=$(find "$work/inbox" -name '*.jp*g' | wc -l)
[ "$images" -gt 0 ] || fail "no sample images in $data/raspbee-samples/images"
(cd "$work/inbox" && find hive-1 -name '*.jp*g' | sort | sed -n 1,3p) > "$work/inbox/batch.txt"
echo "hive-1/missing.jpg" >> "$work/inbox/batch.txt"
"$APIARY" dataset push "$work/inbox" s3://bees/inbox "${store[@]}" > /dev/null \
    2> "$work/push-inbox.err" || { cat "$work/push-inbox.err"; fail "pushing the inbox failed"; }

common=(-c "$config" "${store[@]}" --set data.root=s3://bees/datasets/wasp-trap
    --set output_dir=s3://bees/runs --set "registry.uri=$work/registry"
    --set "gate.rules=wasp.recall >= 0")

# ---- The main job, then scoring a prefix ----
"$APIARY" run "${common[@]}" --set run_name=first > "$work/run.out" 2> "$work/run.err" ||
    { tail -n 30 "$work/run.err"; fail "the run with data in S3 failed"; }
grep -q "version 1 is champion" "$work/run.out" || fail "the run did not promote"
for name in model.safetensors report.json promotion.json; do
    grep -q "^PUT /bees/runs/first/$name " "$work/requests.log" ||
        fail "run file $name was not uploaded"
done

: > "$work/requests.log"
"$APIARY" score "${common[@]}" --input s3://bees/inbox --output s3://bees/scores \
    > "$work/score.out" 2> "$work/score.err" || { tail -n 30 "$work/score.err"; fail "scoring failed"; }
gets=$(count_lines '^GET /bees/inbox/' "$work/requests.log")
[ "$gets" -eq "$images" ] || fail "scoring made $gets image GETs, expected $images"
grep -q '^GET /bees/inbox/hive-1/readme.txt' "$work/requests.log" && fail "a text file was fetched"
for name in predictions.jsonl predictions.csv summary.json; do
    grep -q "^PUT /bees/scores/v1/$name " "$work/requests.log" || fail "$name was not uploaded"
done
grep -q "uploaded: s3://bees/scores/v1" "$work/score.out" || fail "the upload is not reported"
s3get scores/v1/predictions.jsonl > "$work/predictions.jsonl"
[ "$(wc -l < "$work/predictions.jsonl")" -eq "$images" ] ||
    fail "predictions.jsonl in S3 has $(wc -l < "$work/predictions.jsonl") rows, expected $images"
s3get scores/v1/summary.json > "$work/summary.json"
python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); sys.exit(s["groups"]["hive-1"]["images"] != int(sys.argv[2]))' \
    "$work/summary.json" "$images" || fail "the summary in S3 does not count the hive-1 group"
summary_input=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["input"])' "$work/summary.json")
[ "$summary_input" = s3://bees/inbox ] ||
    fail "summary.json records the input as $summary_input, expected s3://bees/inbox"

# A rerun lists again but downloads no image and re-sends only the summary.
: > "$work/requests.log"
"$APIARY" score "${common[@]}" --input s3://bees/inbox --output s3://bees/scores \
    > "$work/rescore.out" 2> "$work/rescore.err" ||
    { tail -n 30 "$work/rescore.err"; fail "the second scoring failed"; }
gets=$(count_lines '^GET /bees/inbox/' "$work/requests.log")
[ "$gets" -eq 0 ] || fail "the rerun downloaded $gets unchanged images"
grep -q "0 downloaded (0 bytes), $images unchanged" "$work/rescore.err" ||
    { cat "$work/rescore.err"; fail "the rerun does not report 0 downloads"; }
grep -q "^PUT /bees/scores/v1/predictions.jsonl " "$work/requests.log" &&
    fail "the rerun uploaded the unchanged journal"
grep -q "scored 0 images" "$work/rescore.out" || fail "the rerun scored images again"

# A fresh machine (no staging folder) resumes from the journal in S3.
rm -rf "$work/cache/scores"
: > "$work/requests.log"
"$APIARY" score "${common[@]}" --input s3://bees/inbox --output s3://bees/scores \
    > "$work/fresh.out" 2> "$work/fresh.err" || { tail -n 30 "$work/fresh.err"; fail "scoring on a fresh machine failed"; }
grep -q "scored 0 images" "$work/fresh.out" || fail "a fresh machine did not resume from S3"
grep -q "^GET /bees/scores/v1/predictions.jsonl" "$work/requests.log" ||
    fail "a fresh machine did not fetch the journal"

# ---- A manifest and a listing in S3 ----
# The manifest's images are the training set, already cached by the run.
: > "$work/requests.log"
"$APIARY" score "${common[@]}" --input s3://bees/datasets/wasp-trap/labels.csv \
    --output s3://bees/scores-manifest > "$work/manifest.out" 2> "$work/manifest.err" ||
    { tail -n 30 "$work/manifest.err"; fail "scoring a manifest failed"; }
rows=$(($(wc -l < "$data/wasp-trap/labels.csv") - 1))
grep -q "scored $rows images with .*: 0 errors," "$work/manifest.out" ||
    { cat "$work/manifest.out"; fail "the manifest's $rows images were not all scored without error"; }
gets=$(count_lines '^GET /bees/datasets/wasp-trap/' "$work/requests.log")
[ "$gets" -eq 0 ] || fail "scoring the manifest downloaded $gets images the run had cached"

"$APIARY" score "${common[@]}" --input s3://bees/inbox/batch.txt \
    --output s3://bees/scores-listing > "$work/listing.out" 2> "$work/listing.err" ||
    { tail -n 30 "$work/listing.err"; fail "scoring a listing failed"; }
grep -q "scored 4 images with .*: 1 error," "$work/listing.out" ||
    { cat "$work/listing.out"; fail "the listing did not score 3 images and 1 missing one"; }

# ---- Standalone stages with the run folder in S3 ----
staged=("${common[@]}" --set run_name=staged)
: > "$work/requests.log"
"$APIARY" train "${staged[@]}" > /dev/null 2> "$work/train.err" ||
    { tail -n 30 "$work/train.err"; fail "train alone failed"; }
grep -q "^PUT /bees/runs/staged/model.safetensors " "$work/requests.log" ||
    fail "train did not upload the model"
grep -q "^PUT /bees/runs/staged/train.lock " "$work/requests.log" && fail "the lock file was uploaded"
rm -rf "$work/cache/runs" # validate on a machine without the staging folder
"$APIARY" validate "${staged[@]}" > "$work/validate.out" 2> "$work/validate.err" ||
    { tail -n 30 "$work/validate.err"; fail "validate alone failed"; }
grep -q "fetched run folder s3://bees/runs/staged" "$work/validate.err" ||
    fail "validate did not fetch the run folder"
grep -q "^PUT /bees/runs/staged/report.json " "$work/requests.log" ||
    fail "validate did not upload the report"
"$APIARY" promote "${staged[@]}" > "$work/promote.out" 2> "$work/promote.err" ||
    { tail -n 30 "$work/promote.err"; fail "promote alone failed"; }
grep -q "^PUT /bees/runs/staged/promotion.json " "$work/requests.log" ||
    fail "promote did not upload promotion.json"

# ---- A failed upload ----
# Every PUT below scores-fault/ fails, so the results stay local: no object
# and no unfinished multipart upload is left, and the error names the folder
# that contains the results. A rerun without the fault uploads them.
python3 "$tools/s3_fault_proxy.py" --upstream "$upstream" --rule "PUT:/bees/scores-fault/:500:1000" \
    --log "$work/faults.log" --lifetime 600 > "$work/fault.port" &
fault_proxy=$!
for _ in $(seq 1 100); do
    [ -s "$work/fault.port" ] && break
    sleep 0.1
done
fault_port=$(head -n 1 "$work/fault.port")
[ -n "$fault_port" ] || fail "the fault proxy did not start"
set +e
AWS_ENDPOINT_URL="http://127.0.0.1:$fault_port" "$APIARY" score "${common[@]}" \
    --set store.retries=1 --input s3://bees/inbox --output s3://bees/scores-fault \
    > "$work/fault.out" 2> "$work/fault.err"
code=$?
set -e
[ "$code" -eq 5 ] || { cat "$work/fault.err"; fail "a failed upload exited with $code, expected 5"; }
grep -q "uploading the results to s3://bees/scores-fault/v1" "$work/fault.err" ||
    { cat "$work/fault.err"; fail "the upload error does not name the target"; }
grep -q "a rerun uploads them" "$work/fault.err" || fail "the upload error does not say what to do"
[ "$(s3count scores-fault/)" = "0 0" ] || fail "a failed upload left $(s3count scores-fault/) objects and uploads"
kill "$fault_proxy" 2> /dev/null || true
"$APIARY" score "${common[@]}" --input s3://bees/inbox --output s3://bees/scores-fault \
    > /dev/null 2> "$work/unfault.err" || { tail -n 30 "$work/unfault.err"; fail "the upload after the fault failed"; }
[ "$(s3count scores-fault/v1/)" = "3 0" ] || fail "the rerun did not upload the 3 result files"

# ---- A registry in S3 ----
set +e
"$APIARY" score "${common[@]}" --set registry.uri=s3://bees/registry --input s3://bees/inbox \
    > /dev/null 2> "$work/registry.err"
code=$?
set -e
[ "$code" -eq 2 ] || fail "a registry in S3 exited with $code, expected 2"
grep -q "registry.uri s3://bees/registry" "$work/registry.err" || fail "the error does not name registry.uri"
grep -q "MLflow" "$work/registry.err" || fail "the error does not suggest an MLflow server"
echo "PASS"
