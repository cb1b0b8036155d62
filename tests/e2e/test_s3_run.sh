#!/usr/bin/env bash
# The main job with its data and its run folder in S3 (moto on loopback,
# checking signatures, behind a proxy that logs every request): the
# wasp-trap set is pushed, `apiary run` trains on it and writes the run
# folder back, and a second run downloads no unchanged image.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir s3-run)
tools="$APIARY_SOURCE_DIR/tests/tools"
config="$APIARY_SOURCE_DIR/configs/ci.yaml"

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

# Every request goes through a logging proxy, so the test counts them.
coproc proxy { exec python3 "$tools/s3_fault_proxy.py" --upstream "$AWS_ENDPOINT_URL" \
    --log "$work/requests.log" --lifetime 1100; }
read -r port <&"${proxy[0]}"
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"

store=(--set store.path_style=true --set "store.cache_dir=$work/cache")
"$APIARY" dataset push "$data/wasp-trap" s3://bees/datasets/wasp-trap "${store[@]}" \
    > "$work/push.out" 2> "$work/push.err" || { cat "$work/push.err"; fail "dataset push failed"; }
images=$(find "$data/wasp-trap" -type f | wc -l)
grep -q "$images files, $images sent" "$work/push.out" ||
    { cat "$work/push.out"; fail "push did not send all $images files"; }

# A permissive gate: this test is about where the data and the run folder live.
common=(-c "$config" "${store[@]}" --set data.root=s3://bees/datasets/wasp-trap
    --set output_dir=s3://bees/runs --set "registry.uri=$work/registry"
    --set "gate.rules=wasp.recall >= 0")
"$APIARY" run "${common[@]}" --set run_name=first > "$work/first.out" 2> "$work/first.err" ||
    { tail -n 30 "$work/first.err"; fail "the run with data in S3 failed"; }
grep -q "version 1 is champion" "$work/first.out" || fail "the first run did not promote"
gets=$(grep -c '^GET /bees/datasets/wasp-trap/' "$work/requests.log" || true)
[ "$gets" -eq "$images" ] || fail "the first run made $gets object GETs, expected $images"

# The run folder is in S3: the model, its card, the reports and the promotion.
for name in model.safetensors model_card.json report.json report.html promotion.json \
    complete.json split.csv train_log.jsonl; do
    grep -q "^PUT /bees/runs/first/$name " "$work/requests.log" ||
        fail "run file $name was not uploaded"
done
! grep -q "^PUT /bees/runs/first/cache/" "$work/requests.log" ||
    fail "the decoded-image cache was uploaded"

# A second run lists the prefix again but downloads nothing unchanged.
: > "$work/requests.log"
"$APIARY" run "${common[@]}" --set run_name=second > "$work/second.out" 2> "$work/second.err" ||
    { tail -n 30 "$work/second.err"; fail "the second run failed"; }
gets=$(grep -c '^GET /bees/datasets/wasp-trap/' "$work/requests.log" || true)
[ "$gets" -eq 0 ] || fail "the second run downloaded $gets unchanged objects"
grep -q '^GET /bees?list-type=2' "$work/requests.log" || fail "the second run did not list"
grep -q "0 downloaded" "$work/second.err" || fail "the sync did not report 0 downloads"

# A fresh machine (no staging folder) resumes the finished run from S3.
rm -rf "$work/cache/runs"
: > "$work/requests.log"
"$APIARY" run "${common[@]}" --set run_name=first > "$work/again.out" 2> "$work/again.err" ||
    { tail -n 30 "$work/again.err"; fail "rerunning the finished run failed"; }
grep -q "fetched run folder s3://bees/runs/first" "$work/again.err" ||
    fail "the rerun did not fetch the run folder from S3"
! grep -q "^PUT /bees/runs/first/model.safetensors " "$work/requests.log" ||
    fail "the rerun uploaded the unchanged model again"

# Wrong credentials fail fast with a clear message and few requests.
: > "$work/requests.log"
set +e
AWS_SECRET_ACCESS_KEY=wrong-secret-value "$APIARY" run "${common[@]}" --set run_name=denied \
    > "$work/denied.out" 2> "$work/denied.err"
code=$?
set -e
[ "$code" -ne 0 ] || fail "a run with a wrong secret succeeded"
grep -q "SignatureDoesNotMatch" "$work/denied.err" || { cat "$work/denied.err"; fail "no clear error"; }
! grep -q "wrong-secret-value" "$work/denied.err" || fail "the secret was printed"
requests=$(wc -l < "$work/requests.log")
[ "$requests" -le 3 ] || fail "a wrong secret caused $requests requests"
echo "PASS"
