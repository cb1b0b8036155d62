#!/usr/bin/env bash
# A model that lacks labels of the champion must not replace it: the main job
# fails the gate with exit code 3, report.json names the missing labels, and
# champion keeps serving every label until an operator forces the promotion.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir run-label-loss)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
export APIARY_DATA_DIR="$data"
# Bars every model meets, so that only the labels decide.
common=(-c "$config" --set output_dir="$work" --set registry.uri="$work/registry"
    --set "gate.rules=wasp.recall >= 0" --set gate.max_regression=1)

champion() {
    "$APIARY" registry show champion "${common[@]}" 2> /dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])'
}

"$APIARY" run "${common[@]}" --set run_name=full > /dev/null 2> "$work/full.err" ||
    { tail -n 20 "$work/full.err"; fail "the first run failed"; }
[ "$(champion)" = 1 ] || fail "champion is not version 1"

two=(--set run_name=twolab --set 'data.labels=wasp,bee' --set train.epochs=2)
set +e
"$APIARY" run "${common[@]}" "${two[@]}" > "$work/twolab.out" 2> "$work/twolab.err"
code=$?
set -e
[ "$code" -eq 3 ] || { tail -n 20 "$work/twolab.err"; fail "a model without hornet exited with $code, expected 3"; }
grep -q "FAIL champion labels: this model lacks labels hornet, asian_hornet of champion version 1" \
    "$work/twolab.out" || { cat "$work/twolab.out"; fail "the summary does not name the missing labels"; }
grep -q "apiary promote --force --reason TEXT" "$work/twolab.out" ||
    fail "the summary does not name the override"
[ "$(champion)" = 1 ] || fail "a model without hornet moved champion"
python3 - "$work/twolab/report.json" <<'PY' || fail "report.json does not record the missing labels"
import json, sys
report = json.load(open(sys.argv[1]))
check = report["comparison"]["label_check"]
assert report["passed"] is False, report["passed"]
assert check["passed"] is False, check
assert check["missing_labels"] == ["hornet", "asian_hornet"], check["missing_labels"]
assert check["added_labels"] == [], check["added_labels"]
assert sorted(report["comparison"]["labels"]) == ["bee", "wasp"], report["comparison"]["labels"]
PY

# promote alone blocks it too, and --force with a reason overrides the gate.
set +e
"$APIARY" promote "${common[@]}" "${two[@]}" > /dev/null 2> "$work/promote.err"
code=$?
set -e
[ "$code" -eq 3 ] || fail "promote of a model without hornet exited with $code, expected 3"
grep -q "the champion comparison failed: this model lacks labels hornet" "$work/promote.err" ||
    { cat "$work/promote.err"; fail "promote does not say why it blocked"; }
"$APIARY" promote "${common[@]}" "${two[@]}" --force --reason "hornet season is over" \
    > /dev/null 2> "$work/forced.err" || { cat "$work/forced.err"; fail "the forced promotion failed"; }
[ "$(champion)" = 2 ] || fail "the forced promotion did not move champion"
echo "PASS"
