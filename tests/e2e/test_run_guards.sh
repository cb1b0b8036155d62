#!/usr/bin/env bash
# Guards around a run folder and the registry, with the CI config:
# - rerunning a finished run with other model settings fails with exit 2 and
#   names the keys with both values;
# - a finished run whose model is gone gets it again from the final
#   checkpoint, and without one, train and validate print what to do;
# - a second training of a run that is being trained fails at once and names
#   the other process;
# - two promotions of one run at once register one version;
# - a load that fails data.max_bad_fraction still writes data_report.json;
# - a config that is not UTF-8 text is rejected with the file and line;
# - two -c options, or a password inside a URI, are rejected before any work
#   and the password is not printed.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir run-guards)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
export APIARY_DATA_DIR="$data"
common=(-c "$config" --set output_dir="$work/runs" --set registry.uri="$work/registry"
    --set "gate.rules=wasp.recall >= 0")

# ---- A finished run rerun with other settings ----
"$APIARY" train "${common[@]}" --set run_name=done --set train.epochs=1 > /dev/null \
    2> "$work/train.err" || { tail -n 20 "$work/train.err"; fail "training failed"; }
grep -q "training finished: 1 epoch," "$work/train.err" || fail "the epoch count is not singular"
set +e
"$APIARY" run "${common[@]}" --set run_name=done --set train.epochs=2 --set model.dropout=0.2 \
    > /dev/null 2> "$work/changed.err"
code=$?
set -e
[ "$code" -eq 2 ] || { cat "$work/changed.err"; fail "a changed rerun exited with $code, expected 2"; }
grep -qF "model.dropout (0.1 in the run, 0.2 now), train.epochs (1 in the run, 2 now)" \
    "$work/changed.err" ||
    { cat "$work/changed.err"; fail "the changed keys are not named"; }
grep -q "choose a new run_name" "$work/changed.err" || fail "the error does not say what to do"
# The same settings again skip training, with or without --resume.
"$APIARY" train "${common[@]}" --set run_name=done --set train.epochs=1 > /dev/null \
    2> "$work/same.err" || { cat "$work/same.err"; fail "rerunning a finished run failed"; }
grep -q "already complete; nothing to train" "$work/same.err" || fail "the rerun did not skip"

# ---- A finished run whose model is gone ----
# With the final checkpoint there, train writes the same model again.
cp -r "$work/runs/done" "$work/runs/gone"
cp "$work/runs/done/model.safetensors" "$work/done-model"
rm "$work/runs/done/model.safetensors"
"$APIARY" train "${common[@]}" --set run_name=done --set train.epochs=1 > /dev/null \
    2> "$work/rewrite.err" || { cat "$work/rewrite.err"; fail "writing the model again failed"; }
grep -q "WARN.*run $work/runs/done is marked complete (complete.json), but its weights file \
$work/runs/done/model.safetensors is missing; writing the model and card again from the final \
checkpoint $work/runs/done/checkpoint.safetensors" "$work/rewrite.err" ||
    { cat "$work/rewrite.err"; fail "no warning that names the missing model"; }
grep -q "model and card written again from the final checkpoint: $work/runs/done/model.safetensors" \
    "$work/rewrite.err" || { cat "$work/rewrite.err"; fail "the rewrite is not reported"; }
grep -q "training finished" "$work/rewrite.err" && fail "a rewrite is reported as a training"
cmp -s "$work/done-model" "$work/runs/done/model.safetensors" ||
    fail "the model written again differs from the trained one"
# Without a checkpoint, train fails and prints what to do, and so does validate.
rm "$work/runs/gone/model.safetensors" "$work/runs/gone/checkpoint.safetensors"
set +e
"$APIARY" train "${common[@]}" --set run_name=gone --set train.epochs=1 > /dev/null \
    2> "$work/gone.err"
code=$?
set -e
[ "$code" -eq 5 ] || fail "training a finished run without its model and checkpoint exited with $code, expected 5"
grep -q "ERROR.*$work/runs/gone/model.safetensors is missing, and it has no checkpoint" \
    "$work/gone.err" || { cat "$work/gone.err"; fail "the error does not name the missing model"; }
grep -q "choose a new run_name.*or remove $work/runs/gone/complete.json and train the run again" \
    "$work/gone.err" || { cat "$work/gone.err"; fail "the error does not say what to do"; }
set +e
"$APIARY" validate "${common[@]}" --set run_name=gone --set train.epochs=1 > /dev/null \
    2> "$work/gone-validate.err"
code=$?
set -e
[ "$code" -eq 5 ] || fail "validating a run without its model exited with $code, expected 5"
grep -q "weights file $work/runs/gone/model.safetensors, which model card .* names, is missing; \
copy it" "$work/gone-validate.err" ||
    { cat "$work/gone-validate.err"; fail "the validate error does not say what to do"; }

# ---- Two trainings of one run folder ----
"$APIARY" train "${common[@]}" --set run_name=busy --set train.epochs=200 > /dev/null \
    2> "$work/busy.err" &
busy=$!
for _ in $(seq 1 300); do
    grep -q "model:" "$work/busy.err" 2> /dev/null && break
    sleep 0.1
done
set +e
"$APIARY" train "${common[@]}" --set run_name=busy --set train.epochs=200 --resume > /dev/null \
    2> "$work/second.err"
code=$?
set -e
kill -TERM "$busy" 2> /dev/null || true
wait "$busy" || true
[ "$code" -eq 5 ] || { cat "$work/second.err"; fail "a second training exited with $code, expected 5"; }
grep -q "run folder $work/runs/busy is locked by process $busy" "$work/second.err" ||
    { cat "$work/second.err"; fail "the error does not name the folder and the pid $busy"; }

# ---- Two promotions of one run at once ----
"$APIARY" validate "${common[@]}" --set run_name=done --set train.epochs=1 > /dev/null \
    2> "$work/validate.err" || { tail -n 20 "$work/validate.err"; fail "validation failed"; }
for i in 1 2 3; do
    "$APIARY" promote "${common[@]}" --set run_name=done --set train.epochs=1 \
        > "$work/promote-$i.out" 2> "$work/promote-$i.err" &
    pids[$i]=$!
done
for i in 1 2 3; do
    wait "${pids[$i]}" || { cat "$work/promote-$i.err"; fail "promotion $i failed"; }
done
versions=$(ls "$work/registry/apiary-bees/versions" | wc -l)
[ "$versions" -eq 1 ] || fail "three promotions of one model registered $versions versions"
[ "$(cat "$work"/promote-*.out | sort -u)" = "1" ] || fail "the promotions report different versions"

# ---- Too many bad images ----
bad="$work/bad-data"
mkdir -p "$bad/images"
cp "$data/wasp-trap/labels.csv" "$bad/"
for image in "$data"/wasp-trap/images/*; do
    ln -s "$image" "$bad/images/"
done
broken=$(ls "$bad/images" | sed -n 1,30p)
for name in $broken; do
    rm "$bad/images/$name"
    echo "not a jpeg" > "$bad/images/$name"
done
set +e
"$APIARY" train "${common[@]}" --set run_name=bad --set data.root="$bad" \
    --set data.max_bad_fraction=0.05 > /dev/null 2> "$work/bad.err"
code=$?
set -e
[ "$code" -eq 4 ] || { cat "$work/bad.err"; fail "too many bad images exited with $code, expected 4"; }
report="$work/runs/bad/data_report.json"
[ -f "$report" ] || fail "no data_report.json after the load failed"
python3 - "$report" $broken <<'PY' || fail "data_report.json does not list the 30 bad images"
import json, sys
report = json.load(open(sys.argv[1]))
listed = {entry["file"].split("/")[-1] for entry in report["unreadable"]}
sys.exit(0 if listed == set(sys.argv[2:]) and report["readable_images"] == report["manifest_rows"] - 30 else 1)
PY

# ---- A config that is not UTF-8 text ----
printf 'run_name: caf\xe9\n' > "$work/latin1.yaml"
set +e
"$APIARY" train -c "$work/latin1.yaml" > /dev/null 2> "$work/latin1.err"
code=$?
set -e
[ "$code" -eq 2 ] || fail "a Latin-1 config exited with $code, expected 2"
grep -q "$work/latin1.yaml:1:14: byte 0xe9 is not valid UTF-8; save the config as UTF-8" \
    "$work/latin1.err" || { cat "$work/latin1.err"; fail "the encoding error does not name the place"; }

# ---- Two config files, and a password in a URI ----
set +e
"$APIARY" config show -c "$config" -c "$APIARY_SOURCE_DIR/configs/local.yaml" > /dev/null \
    2> "$work/twice.err"
code=$?
"$APIARY" run "${common[@]}" --set run_name=password \
    --set "registry.uri=http://bee:hive-secret@127.0.0.1:9" > "$work/password.out" \
    2> "$work/password.err"
password_code=$?
set -e
[ "$code" -eq 2 ] || fail "-c given twice exited with $code, expected 2"
grep -q "^apiary: -c given twice" "$work/twice.err" || { cat "$work/twice.err"; fail "-c twice is not named"; }
[ "$password_code" -eq 2 ] || fail "a password in registry.uri exited with $password_code, expected 2"
grep -q "registry.uri: the URI contains a password" "$work/password.err" ||
    { cat "$work/password.err"; fail "the password in registry.uri is not reported"; }
grep -q "hive-secret" "$work/password.out" "$work/password.err" && fail "the password was printed"
[ ! -e "$work/runs/password" ] || fail "a config with a password in a URI created a run folder"
echo "PASS"
