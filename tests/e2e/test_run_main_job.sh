#!/usr/bin/env bash
# The main job on real wasp-trap images: a passing model becomes champion, a
# failing one is blocked with exit code 3 and leaves champion unchanged, a
# forced promotion needs a reason and is recorded, and rollback restores the
# previous champion.
source "$(dirname "$0")/common.sh"
data=$(data_dir)
work=$(make_work_dir run-main-job)
config="$APIARY_SOURCE_DIR/configs/ci.yaml"
export APIARY_DATA_DIR="$data"
common=(--set output_dir="$work" --set registry.uri="$work/registry")

champion() {
    "$APIARY" registry show champion -c "$config" "${common[@]}" 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])'
}

"$APIARY" run -c "$config" "${common[@]}" --set run_name=good > "$work/good.out" \
    2> "$work/good.err" || { cat "$work/good.err"; fail "the first run failed"; }
grep -q "gate: PASSED" "$work/good.out" || fail "no passing verdict in the summary"
grep -q "version 1 is champion" "$work/good.out" || fail "the summary does not name version 1"
[ "$(champion)" = 1 ] || fail "champion is not version 1"

# Rerunning the job trains nothing and keeps the same version.
"$APIARY" run -c "$config" "${common[@]}" --set run_name=good > /dev/null 2> "$work/again.err" ||
    fail "rerunning the job failed"
grep -q "already complete" "$work/again.err" || fail "the rerun trained again"
[ "$(champion)" = 1 ] || fail "the rerun moved champion"

# A model that fails the gate is not registered and champion stays.
set +e
"$APIARY" run -c "$config" "${common[@]}" --set run_name=bad --set seed=7 \
    --set 'gate.rules=wasp.recall.lower >= 0.999' > "$work/bad.out" 2> "$work/bad.err"
code=$?
set -e
[ "$code" -eq 3 ] || { cat "$work/bad.err"; fail "a failing model exited with $code, expected 3"; }
grep -q "gate: FAILED" "$work/bad.out" || fail "no failing verdict in the summary"
grep -q "wasp.recall.lower >= 0.999" "$work/bad.out" || fail "the failed rule is not named"
[ "$(champion)" = 1 ] || fail "a failing model moved champion"
"$APIARY" registry list -c "$config" "${common[@]}" > "$work/list.out"
[ "$(grep -c '^[0-9]' "$work/list.out")" -eq 1 ] || fail "a failing model was registered"

# A report edited to say passed, or made under weaker rules, does not pass the
# configured gate: promote recomputes each rule from the recorded values.
python3 - "$work/bad/report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
report["passed"], report["failed_rules"] = True, []
json.dump(report, open(sys.argv[1], "w"))
PY
set +e
"$APIARY" promote -c "$config" "${common[@]}" --set run_name=bad --set seed=7 \
    --set 'gate.rules=wasp.recall.lower >= 0.999' > /dev/null 2> "$work/edited.err"
code=$?
set -e
[ "$code" -eq 3 ] || fail "an edited report was promoted (exit $code)"
grep -q "does not pass the configured gate" "$work/edited.err" || fail "no reason for the block"
"$APIARY" validate -c "$config" "${common[@]}" --set run_name=bad --set seed=7 \
    --set 'gate.rules=wasp.recall >= 0.0' --set gate.max_regression=1 > /dev/null 2>&1 ||
    fail "a lenient validation failed"
set +e
"$APIARY" promote -c "$config" "${common[@]}" --set run_name=bad --set seed=7 \
    --set 'gate.rules=wasp.recall.lower >= 0.999' > /dev/null 2>&1
code=$?
set -e
[ "$code" -eq 3 ] || fail "a report made under weaker rules was promoted (exit $code)"
[ "$(champion)" = 1 ] || fail "champion moved"

# promote alone also blocks it, and --force needs a reason.
bad=(-c "$config" "${common[@]}" --set run_name=bad --set seed=7)
set +e
"$APIARY" promote "${bad[@]}" > /dev/null 2>&1
code=$?
"$APIARY" promote "${bad[@]}" --force > /dev/null 2>&1
code_no_reason=$?
set -e
[ "$code" -eq 3 ] || fail "promote of a failing model exited with $code, expected 3"
[ "$code_no_reason" -eq 2 ] || fail "--force without --reason exited with $code_no_reason"
"$APIARY" promote "${bad[@]}" --force --reason "operator test override" > /dev/null 2>&1 ||
    fail "forced promotion failed"
[ "$(champion)" = 2 ] || fail "forced promotion did not move champion"
"$APIARY" registry history -c "$config" "${common[@]}" > "$work/history.out"
grep -q "operator test override" "$work/history.out" || fail "the override reason is not recorded"

# Rollback points champion back to version 1.
"$APIARY" registry rollback -c "$config" "${common[@]}" --reason "undo override" > /dev/null \
    2>&1 || fail "rollback failed"
[ "$(champion)" = 1 ] || fail "rollback did not restore version 1"
echo "PASS"
