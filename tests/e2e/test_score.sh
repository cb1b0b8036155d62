#!/usr/bin/env bash
# Batch scoring with a promoted CI model. Every image gets a row, and corrupt
# ones get an error row. The summary counts per group, and alerts fire where
# they should and nowhere else. A rerun skips everything, and a cut-off journal
# resumes. Scoring by version number writes a separate folder, a dataset's
# labels.csv finds its files in images/, and an unknown version is a usage
# error.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir score)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
export APIARY_DATA_DIR="$data"
common=(-c "$config" --set output_dir="$work" --set registry.uri="$work/registry")

# Print one value of a JSON file: json FILE 'PYTHON EXPRESSION over s'.
json() {
    python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# Train and register a CI model. Scoring needs a champion, not a good model, so
# a model that misses the CI gate (exit code 3) is promoted with --force.
register_model() {
    local code=0
    "$APIARY" run "${common[@]}" "$@" > "$work/run.out" 2> "$work/run.err" || code=$?
    if [ "$code" -eq 3 ]; then
        code=0
        "$APIARY" promote "${common[@]}" "$@" --force --reason "a model to test scoring" \
            > /dev/null 2>> "$work/run.err" || code=$?
    fi
    [ "$code" -eq 0 ] || { cat "$work/run.err"; fail "training and promoting failed ($code)"; }
}
register_model
[ "$("$APIARY" registry list "${common[@]}" | grep -c '^1 .*champion')" -eq 1 ] ||
    fail "version 1 is not champion"

# An input with three groups: two real image folders and one with broken files.
input="$work/input"
mkdir -p "$input/broken"
ln -s "$data/raspbee-samples/images" "$input/raspbee"
ln -s "$data/wasp-trap/images" "$input/wasp-trap"
# sed reads to the end, unlike head, so sort never gets SIGPIPE, which
# pipefail would turn into a silent exit.
first_jpeg=$(find "$data/wasp-trap/images" -name '*.jpg' | sort | sed -n 1p)
head -c 2000 "$first_jpeg" > "$input/broken/cut-off.jpg"
echo "not an image" > "$input/broken/notes.PNG"
echo "ignored" > "$input/broken/readme.txt"
raspbee=$(find "$data/raspbee-samples/images" -type f | wc -l)
wasp_trap=$(find "$data/wasp-trap/images" -type f | wc -l)
total=$((raspbee + wasp_trap + 2))

alerts='score.alerts=errors.count >= 1,wasp.rate >= 0,wasp.count > 1000000'
out="$work/scores"
"$APIARY" score "${common[@]}" --input "$input" --output "$out" --set "$alerts" \
    > "$work/score.out" 2> "$work/score.err" || { cat "$work/score.err"; fail "scoring failed"; }
dir="$out/v1"
summary="$dir/summary.json"
[ "$(wc -l < "$dir/predictions.jsonl")" -eq "$total" ] || fail "predictions.jsonl lacks rows"
[ "$(wc -l < "$dir/predictions.csv")" -eq $((total + 1)) ] || fail "predictions.csv lacks rows"
head -n 1 "$dir/predictions.csv" | grep -q '^image,model_version,model_sha256,wasp_probability,' ||
    fail "the CSV header is not as documented"
grep -q '^broken/cut-off.jpg,1,[0-9a-f]\{12\},,' "$dir/predictions.csv" ||
    fail "the cut-off image has no error row in the CSV"
grep '"image":"broken/notes.PNG"' "$dir/predictions.jsonl" | grep -q '"error":"unsupported image' ||
    fail "the text file named .PNG has no error row"
grep -q 'readme.txt' "$dir/predictions.jsonl" && fail "a .txt file was scored"
[ "$(json "$summary" 's["totals"]["errors"]')" -eq 2 ] || fail "the summary does not count 2 errors"
[ "$(json "$summary" 's["totals"]["images"]')" -eq "$total" ] || fail "summary totals are wrong"
[ "$(json "$summary" 's["groups"]["raspbee"]["images"]')" -eq "$raspbee" ] ||
    fail "the raspbee group count is wrong"
[ "$(json "$summary" 's["groups"]["wasp-trap"]["decoded"]')" -eq "$wasp_trap" ] ||
    fail "the wasp-trap group count is wrong"
[ "$(json "$summary" 's["groups"]["broken"]["labels"]["wasp"]["rate"]')" = None ] ||
    fail "a rate over no decoded images is not null"

# errors.count fires for the totals and the broken group only; wasp.rate >= 0
# fires wherever an image decoded; the huge count never fires.
fired() {
    json "$summary" "sorted((h['alert'], h.get('group', '')) for h in s['alerts'] if h['alert'] == '$1')"
}
[ "$(fired 'errors.count >= 1')" = "[('errors.count >= 1', ''), ('errors.count >= 1', 'broken')]" ] ||
    fail "errors.count fired as $(fired 'errors.count >= 1')"
[ "$(fired 'wasp.rate >= 0' | grep -o "'wasp.rate >= 0'" | wc -l)" -eq 3 ] ||
    fail "wasp.rate >= 0 did not fire for the totals, raspbee and wasp-trap"
fired 'wasp.rate >= 0' | grep -q "'broken'" && fail "a rate over no decoded images fired"
[ "$(fired 'wasp.count > 1000000')" = "[]" ] || fail "an unreachable alert fired"
grep -q "^alert: errors.count >= 1: 2 in group broken$" "$work/score.out" ||
    fail "the alert is not printed"

# A rerun scores nothing.
"$APIARY" score "${common[@]}" --input "$input" --output "$out" > "$work/rerun.out" 2>&1 ||
    fail "the rerun failed"
[ "$(json "$summary" 's["this_run"]["scored"]')" -eq 0 ] || fail "the rerun scored images again"
[ "$(json "$summary" 's["this_run"]["skipped"]')" -eq "$total" ] || fail "the rerun skipped too few"
[ "$(wc -l < "$dir/predictions.jsonl")" -eq "$total" ] || fail "the rerun added rows"

# A crash mid-write leaves a cut-off last line: a rerun drops it and scores the rest.
journal="$dir/predictions.jsonl"
head -n $((total - 5)) "$journal" > "$work/journal"
sed -n "$((total - 4))p" "$journal" | head -c 40 >> "$work/journal"
cp "$work/journal" "$journal"
"$APIARY" score "${common[@]}" --input "$input" --output "$out" > "$work/resume.out" \
    2> "$work/resume.err" || { cat "$work/resume.err"; fail "resuming failed"; }
grep -q "dropped a damaged last line" "$work/resume.err" || fail "the cut-off line was not reported"
[ "$(json "$summary" 's["this_run"]["scored"]')" -eq 5 ] || fail "the resumed run did not score 5"
[ "$(wc -l < "$journal")" -eq "$total" ] || fail "the resumed journal does not have every row"
python3 -c 'import json, sys; [json.loads(l) for l in open(sys.argv[1])]' "$journal" ||
    fail "the resumed journal has a line that does not parse"

# A second version scores everything again into its own folder.
register_model --set run_name=second --set seed=7
"$APIARY" score "${common[@]}" --input "$data/raspbee-samples/images" --output "$out" \
    > /dev/null 2>&1 || fail "scoring with the champion failed"
[ "$(wc -l < "$out/v2/predictions.jsonl")" -eq "$raspbee" ] || fail "version 2 did not score all"
"$APIARY" score "${common[@]}" --model 1 --input "$data/raspbee-samples/images" \
    --output "$work/by-version" > /dev/null 2>&1 || fail "scoring by version number failed"
[ "$(json "$work/by-version/v1/summary.json" 's["model"]["version"]')" -eq 1 ] ||
    fail "--model 1 did not score with version 1"
[ "$(grep -c '"model_version":1,' "$work/by-version/v1/predictions.jsonl")" -eq "$raspbee" ] ||
    fail "rows scored by version 1 do not name it"
[ "$(json "$work/by-version/v1/summary.json" 's["groups"]')" = "{}" ] ||
    fail "a flat folder has groups"

# A dataset's own labels.csv names files inside images/ beside it, as
# training reads it: every row is scored, none is an error row.
"$APIARY" score "${common[@]}" --model 1 --input "$data/wasp-trap/labels.csv" \
    --output "$work/by-manifest" > /dev/null 2> "$work/manifest.err" ||
    { cat "$work/manifest.err"; fail "scoring labels.csv failed"; }
rows=$(($(wc -l < "$data/wasp-trap/labels.csv") - 1))
[ "$(wc -l < "$work/by-manifest/v1/predictions.jsonl")" -eq "$rows" ] ||
    fail "scoring labels.csv did not give one row per manifest row"
[ "$(grep -c '"error":"[^"]' "$work/by-manifest/v1/predictions.jsonl")" -eq 0 ] ||
    fail "scoring labels.csv gave error rows: $(grep -m1 '"error":"[^"]' "$work/by-manifest/v1/predictions.jsonl")"

# An unknown version or alias is a usage error that names it.
set +e
"$APIARY" score "${common[@]}" --model 99 --input "$input" --output "$out" > /dev/null \
    2> "$work/unknown.err"
code=$?
"$APIARY" score "${common[@]}" --set 'score.alerts=wsp.count >= 1' --input "$input" \
    --output "$out" > /dev/null 2> "$work/label.err"
label_code=$?
set -e
[ "$code" -eq 2 ] || fail "an unknown version exited with $code, expected 2"
grep -q "version 99 not found" "$work/unknown.err" || fail "the unknown version is not named"
[ "$label_code" -eq 2 ] || fail "an alert on an unknown label exited with $label_code, expected 2"
grep -q '"wsp" is not a label of the model' "$work/label.err" || fail "the bad alert is not named"
echo "PASS"
