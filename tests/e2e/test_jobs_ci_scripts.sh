#!/usr/bin/env bash
# The CI stage scripts that the Jenkinsfile calls, run in order on a temporary
# output folder. scripts/ci-build builds there and ci-unit-tests writes JUnit
# XML. ci-train trains configs/ci.yaml on the wasp-trap images, ci-validate
# passes the gate and copies the reports, and ci-publish collects them. A model
# that fails the gate makes ci-validate exit with code 3 and still leaves its
# reports. Each script checks its arguments, and the Jenkinsfile calls exactly
# these scripts in its stages.
source "$(dirname "$0")/common.sh"
src="$APIARY_SOURCE_DIR"
data=$(data_dir)
export APIARY_DATA_DIR="$data"
work=$(make_work_dir jobs-ci-scripts)
out="$work/ci-out"

# Every stage script names its usage and exits with code 2 without arguments.
for script in ci-build ci-unit-tests ci-train ci-validate ci-publish; do
    set +e
    "$src/scripts/$script" > /dev/null 2> "$work/usage.err"
    code=$?
    set -e
    [ "$code" -eq 2 ] || fail "scripts/$script without arguments exited with $code, expected 2"
    grep -q "^usage: scripts/$script OUT" "$work/usage.err" || fail "scripts/$script printed no usage"
done
set +e
"$src/scripts/ci-train" "$work/not-built" > /dev/null 2> "$work/unbuilt.err"
code=$?
set -e
[ "$code" -eq 2 ] || fail "scripts/ci-train before a build exited with $code, expected 2"
grep -q "run scripts/ci-build" "$work/unbuilt.err" || fail "scripts/ci-train did not say to build first"

"$src/scripts/ci-build" "$out" > "$work/build.log" 2>&1 ||
    { tail -n 30 "$work/build.log"; fail "scripts/ci-build failed"; }
[ -x "$out/build/apiary" ] || fail "scripts/ci-build did not build $out/build/apiary"

APIARY_CI_TESTS='^unit/test_(schedule|gate)$' "$src/scripts/ci-unit-tests" "$out" \
    > "$work/unit.log" 2>&1 || { cat "$work/unit.log"; fail "scripts/ci-unit-tests failed"; }
python3 - "$out/junit.xml" <<'PY' || fail "the JUnit XML does not list the two tests as run"
import sys
import xml.etree.ElementTree as ElementTree
cases = list(ElementTree.parse(sys.argv[1]).getroot().iter("testcase"))
names = sorted(case.get("name") for case in cases)
assert names == ["unit/test_gate", "unit/test_schedule"], names
assert all(case.get("status") == "run" for case in cases), [c.attrib for c in cases]
PY

"$src/scripts/ci-train" "$out" > "$work/train.log" 2>&1 ||
    { tail -n 20 "$work/train.log"; fail "scripts/ci-train failed"; }
[ -f "$out/runs/ci/complete.json" ] || fail "scripts/ci-train left no finished run in $out/runs/ci"

# The bar of configs/ci.yaml checks model quality, which other tests cover, so
# this test sets a bar that every model meets and stays about the scripts.
"$src/scripts/ci-validate" "$out" --set 'gate.rules=wasp.recall >= 0' > "$work/validate.log" 2>&1 ||
    { tail -n 20 "$work/validate.log"; fail "scripts/ci-validate rejected the CI model"; }
for report in report.json report.md report.html; do
    [ -s "$out/$report" ] || fail "scripts/ci-validate did not copy $report to $out"
done
head -n 1 "$out/report.md" | grep -q PASSED || fail "report.md does not start with PASSED"
grep -q "Validation report" "$work/validate.log" || fail "scripts/ci-validate did not print the report"

"$src/scripts/ci-publish" "$out" > "$work/publish.log" 2>&1 ||
    { cat "$work/publish.log"; fail "scripts/ci-publish failed"; }
for file in junit.xml report.md report.html report.json model_card.json train_log.jsonl summary.txt; do
    [ -s "$out/publish/$file" ] || fail "scripts/ci-publish did not collect $file"
done
grep -qx "tests: 2 passed, 0 failed, 0 skipped" "$out/publish/summary.txt" ||
    { cat "$out/publish/summary.txt"; fail "the summary does not count 2 passed tests"; }

# A gate the model cannot pass: exit code 3, and reports that name the failed rule.
set +e
"$src/scripts/ci-validate" "$out" --set 'gate.rules=wasp.recall.lower >= 0.999' \
    > "$work/reject.log" 2>&1
code=$?
set -e
[ "$code" -eq 3 ] || { tail -n 20 "$work/reject.log"; fail "a rejected model exited with $code, expected 3"; }
head -n 1 "$out/report.md" | grep -q FAILED || fail "the report of a rejected model does not say FAILED"
grep -q "validation gate rejected the model" "$work/reject.log" || fail "no rejection message"

# ci-publish fails when an earlier stage left nothing.
mkdir -p "$work/empty"
set +e
"$src/scripts/ci-publish" "$work/empty" > /dev/null 2> "$work/empty.err"
code=$?
set -e
[ "$code" -eq 1 ] || fail "scripts/ci-publish of an empty folder exited with $code, expected 1"
grep -q "missing .*junit.xml" "$work/empty.err" || fail "scripts/ci-publish did not name the missing files"

# The Jenkinsfile runs these stages in this order, each through its script.
python3 - "$src/Jenkinsfile" "$src/scripts" <<'PY' || fail "the Jenkinsfile stages do not match"
import os
import re
import sys
text = open(sys.argv[1]).read()
stages = re.findall(r"stage\('([^']+)'\)\s*\{\s*steps\s*\{\s*sh '([^']+)'", text)
expected = [("Build", "ci-build"), ("Unit tests", "ci-unit-tests"),
            ("Short training", "ci-train"), ("Validation gate", "ci-validate"),
            ("Publish", "ci-publish")]
found = [(name, command.split()[0].rsplit("/", 1)[-1]) for name, command in stages]
assert found == expected, found
for _, script in expected:
    assert os.access(os.path.join(sys.argv[2], script), os.X_OK), script
assert 'junit allowEmptyResults: true, testResults: "${env.CI_OUT}/junit.xml"' in text
assert 'archiveArtifacts artifacts: "${env.CI_OUT}/publish/**"' in text
PY
echo "PASS"
