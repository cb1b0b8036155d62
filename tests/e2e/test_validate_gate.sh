#!/usr/bin/env bash
# Train on the real wasp-trap images with the CI config, then run the
# validation gate. A bar the model meets passes with exit code 0. An
# impossible bar fails with exit code 3 and names the rule in report.json.
# A malformed rule is a config error (exit code 2), and apiary run reports
# it before training.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir validate-gate)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
export APIARY_DATA_DIR="$data"
common=(-c "$config" --set output_dir="$work" --set run_name=gate
        --set registry.uri="$work/registry")

"$APIARY" train "${common[@]}" > /dev/null 2> "$work/train.err" ||
    { cat "$work/train.err"; fail "training failed"; }
run="$work/gate"

"$APIARY" validate "${common[@]}" --set 'gate.rules=wasp.recall >= 0.0' \
    > "$work/pass.out" 2> "$work/pass.err" || {
    cat "$work/pass.out" "$work/pass.err"
    fail "validation with a bar the model meets did not exit 0"
}
grep -q "PASSED" "$work/pass.out" || fail "the summary does not say PASSED"
for file in report.json report.md report.html; do
    [ -s "$run/$file" ] || fail "missing $file"
done
python3 - "$run" <<'PY' || fail "passing report is inconsistent"
import hashlib, json, sys
run = sys.argv[1]
report = json.load(open(f"{run}/report.json"))
card = json.load(open(f"{run}/model_card.json"))
weights = hashlib.sha256(open(f"{run}/model.safetensors", "rb").read()).hexdigest()
assert report["passed"] is True, report["passed"]
assert report["failed_rules"] == [], report["failed_rules"]
assert report["model_sha256"] == weights, report["model_sha256"]
assert card["weights"]["sha256"] == weights, card["weights"]
card_hash = hashlib.sha256(open(f"{run}/model_card.json", "rb").read()).hexdigest()
assert report["model_card_sha256"] == card_hash
assert [c["name"] for c in report["data_checks"]] == ["group_overlap", "duplicate_images",
                                                      "test_support"]
assert all(c["passed"] for c in report["data_checks"])
assert set(card["thresholds"]) == set(report["labels"])
for label in report["labels"]:
    assert abs(card["thresholds"][label] - report["thresholds"][label]["value"]) < 1e-6
assert report["comparison"]["skipped"] and report["comparison"]["reason"] == "no champion yet"
wasp = report["test"]["labels"]["wasp"]
recall, precision = wasp["metrics"]["recall"], wasp["metrics"]["precision"]
print(f"wasp on {wasp['support']['positives']} test positives: "
      f"recall {recall['value']:.3f} [{recall['lower']:.3f}, {recall['upper']:.3f}], "
      f"precision {precision['value']:.3f} [{precision['lower']:.3f}, {precision['upper']:.3f}]")
PY

# A 99.9% lower bound cannot be shown with a few dozen test positives.
status=0
"$APIARY" validate "${common[@]}" --set 'gate.rules=wasp.recall >= 0.0,wasp.recall.lower >= 0.999' \
    > "$work/fail.out" 2> "$work/fail.err" || status=$?
[ "$status" -eq 3 ] || { cat "$work/fail.out" "$work/fail.err"; fail "exit code $status, expected 3"; }
grep -q "FAILED" "$work/fail.out" || fail "the summary does not say FAILED"
python3 - "$run" <<'PY' || fail "failing report is inconsistent"
import json, sys
report = json.load(open(f"{sys.argv[1]}/report.json"))
assert report["passed"] is False
assert report["failed_rules"] == ["wasp.recall.lower >= 0.999"], report["failed_rules"]
rule = [r for r in report["rules"] if r["rule"] == "wasp.recall.lower >= 0.999"][0]
assert rule["passed"] is False, rule
assert rule["bound"] == "lower", rule
assert rule["actual"] < 0.999, rule
PY

status=0
"$APIARY" validate "${common[@]}" --set 'gate.rules=wasp.recal >= 0.5' \
    > /dev/null 2> "$work/bad.err" || status=$?
[ "$status" -eq 2 ] || fail "a malformed rule gave exit code $status, expected 2"
grep -q 'unknown metric "recal"' "$work/bad.err" || fail "the error does not name the metric"

# apiary run checks the rules before it trains.
status=0
"$APIARY" run -c "$config" --set output_dir="$work" --set run_name=bad-rule \
    --set registry.uri="$work/registry" --set 'gate.rules=wasp.recal >= 0.5' \
    > /dev/null 2> "$work/bad-run.err" || status=$?
[ "$status" -eq 2 ] || fail "apiary run with a malformed rule gave exit code $status, expected 2"
grep -q 'unknown metric "recal"' "$work/bad-run.err" || fail "the run error does not name the metric"
[ ! -e "$work/bad-run" ] || fail "apiary run with a malformed rule created its run folder"

# Another dataset than the model was trained on: the error names both roots.
other="$work/other-data"
mkdir -p "$other"
ln -s "$data/wasp-trap/images" "$other/images"
# The same rows with the last row's wasp label flipped.
python3 - "$data/wasp-trap/labels.csv" "$other/labels.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
rows[-1]["wasp"] = "1" if rows[-1]["wasp"] == "0" else "0"
with open(sys.argv[2], "w", newline="") as out:
    writer = csv.DictWriter(out, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    writer.writerows(rows)
PY
status=0
"$APIARY" validate "${common[@]}" --set data.root="$other" > /dev/null 2> "$work/other.err" ||
    status=$?
[ "$status" -ne 0 ] || fail "validation on another dataset passed"
grep -q "the model was trained on data.root $data/wasp-trap, but the config names $other" \
    "$work/other.err" || { cat "$work/other.err"; fail "the error does not name both data roots"; }
echo "PASS"
